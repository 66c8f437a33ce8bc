//! Configuring and starting a server.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::conn::{ConnKill, KillableListener};
use crate::dialect::{Dialect, Layout, valid_realm};
use crate::handle::TestAs;
use crate::jwt::Keys;
use crate::model::RptFormat;
use crate::policy::Policy;
use crate::routes;
use crate::state::{Settings, Shared};

/// Entry point: [`AuthServer::builder`].
#[non_exhaustive]
#[derive(Debug)]
pub struct AuthServer;

impl AuthServer {
    /// A builder with no clients, users or policies, opaque RPTs and 300 s lifetimes.
    pub fn builder() -> AuthServerBuilder {
        AuthServerBuilder::default()
    }
}

/// Configures a server; [`spawn`](Self::spawn) starts it.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use uma_test_as::{AuthServer, Policy, RptFormat};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let auth = AuthServer::builder()
///     .client("photo-api", "photo-api-secret")
///     .client("photo-app", "photo-app-secret")
///     .user("alice", "alice-pw")
///     .user("bob", "bob-pw")
///     .policy(Policy::resource("album").scopes(["view"]).users(["bob"]))
///     .policy(Policy::resource("album").scopes(["edit"]).owner_approval())
///     .rpt_format(RptFormat::Jwt)
///     .ticket_ttl(Duration::from_secs(1))
///     .spawn()
///     .await?;
/// println!("AS at {}", auth.issuer());
/// # Ok(())
/// # }
/// ```
///
/// From a configuration file's contents:
///
/// ```
/// use uma_test_as::{AuthServerBuilder, Config};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_toml_str("[[clients]]\nid = \"rs\"\nsecret = \"s\"\n")?;
/// let auth = AuthServerBuilder::from_config(config).spawn().await?;
/// # let _ = auth;
/// # Ok(())
/// # }
/// ```
#[must_use]
#[derive(Clone, Default)]
pub struct AuthServerBuilder {
    config: Config,
}

impl fmt::Debug for AuthServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Config's Debug leaves secrets out.
        f.debug_struct("AuthServerBuilder")
            .field("config", &self.config)
            .finish()
    }
}

impl AuthServerBuilder {
    /// Adds a confidential client (a resource server or a client acting for requesting
    /// parties); a second call with the same id replaces the secret. Defaults to no clients.
    pub fn client(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        upsert(&mut self.config.clients, id.into(), secret.into());
        self
    }

    /// Adds a user (a resource owner or requesting party) who can use the password grant and
    /// the admin API; a second call with the same name replaces the password. Defaults to no
    /// users.
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        upsert(&mut self.config.users, name.into(), password.into());
        self
    }

    /// Adds a policy. Defaults to none, so every uma-ticket grant is denied.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.config.policies.push(policy);
        self
    }

    /// How RPTs are encoded. Defaults to [`RptFormat::Opaque`].
    pub fn rpt_format(mut self, format: RptFormat) -> Self {
        self.config.rpt_format = format;
        self
    }

    /// Lifetime of permission tickets. Defaults to 300 s.
    pub fn ticket_ttl(mut self, ttl: Duration) -> Self {
        self.config.ticket_ttl = ttl;
        self
    }

    /// Lifetime of RPTs (`expires_in` and the token-level `exp`). Defaults to 300 s.
    pub fn rpt_ttl(mut self, ttl: Duration) -> Self {
        self.config.rpt_ttl = ttl;
        self
    }

    /// Lifetime of PATs and other access tokens. Defaults to 300 s.
    pub fn pat_ttl(mut self, ttl: Duration) -> Self {
        self.config.pat_ttl = ttl;
        self
    }

    /// The authorization server to imitate (see [`Dialect`] and the crate README). Defaults to
    /// [`Dialect::Standard`].
    ///
    /// ```
    /// use uma_test_as::{AuthServer, Dialect, Endpoint};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let auth = AuthServer::builder()
    ///     .dialect(Dialect::Keycloak)
    ///     .realm("acme")
    ///     .client("photo-api", "photo-api-secret")
    ///     .spawn()
    ///     .await?;
    /// assert_eq!(auth.issuer(), format!("{}/realms/acme", auth.base_url()));
    /// assert_eq!(
    ///     auth.endpoint_url(Endpoint::Permission),
    ///     format!("{}/authz/protection/permission", auth.issuer())
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.config.dialect = dialect;
        self
    }

    /// The Keycloak realm: every path lives under `/realms/{realm}` and the issuer is
    /// `{base}/realms/{realm}`. Ignored by the other dialects. It must be 1 to 64 of `A-Z`,
    /// `a-z`, `0-9`, `-`, `_` and `.` ([`spawn`](Self::spawn) fails otherwise). Defaults to
    /// `uma`.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.config.realm = realm.into();
        self
    }

    /// A builder holding everything a [`Config`] says.
    pub fn from_config(config: Config) -> Self {
        Self { config }
    }

    /// Binds `127.0.0.1:0`, then starts the server on a background task of the current tokio
    /// runtime. The server accepts requests as soon as this returns.
    ///
    /// # Errors
    ///
    /// Binding fails, the realm is not a valid path segment (`InvalidInput`), or the signing
    /// key cannot be generated.
    pub async fn spawn(self) -> io::Result<TestAs> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        self.spawn_on(listener).await
    }

    /// Starts the server on an already bound listener. The base URL is `http://` plus the
    /// listener's address (`127.0.0.1` for an unspecified IPv4 address, `[::1]` for an
    /// unspecified IPv6 one); the issuer is the base URL, or `{base}/realms/{realm}` for
    /// Keycloak.
    ///
    /// # Errors
    ///
    /// The listener has no local address, the realm is not a valid path segment
    /// (`InvalidInput`), or the signing key cannot be generated.
    pub async fn spawn_on(self, listener: TcpListener) -> io::Result<TestAs> {
        let config = self.config;
        if config.dialect == Dialect::Keycloak && !valid_realm(&config.realm) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "invalid realm `{}`: use 1 to 64 of A-Z, a-z, 0-9, `-`, `_` and `.`",
                    config.realm
                ),
            ));
        }
        let addr = listener.local_addr()?;
        let base = format!("http://{}", public_addr(addr));
        let layout = Layout::new(config.dialect, &config.realm);
        let keys = Keys::generate()?;
        let settings = Settings {
            rpt_format: config.rpt_format,
            ticket_ttl: config.ticket_ttl,
            rpt_ttl: config.rpt_ttl,
            pat_ttl: config.pat_ttl,
            clients: config.clients.into_iter().collect::<HashMap<_, _>>(),
            users: config.users.into_iter().collect::<HashMap<_, _>>(),
            policies: config.policies,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(base, layout, settings, keys, stop_rx.clone()));
        let app = routes::router(&shared);
        let mut stop = stop_rx;
        let serve = axum::serve(
            KillableListener::new(listener),
            app.into_make_service_with_connect_info::<ConnKill>(),
        )
        .with_graceful_shutdown(async move {
            // Ends on `true` or when the handle (the sender) is gone.
            let _ = stop.wait_for(|stop| *stop).await;
        });
        let task = tokio::spawn(async move {
            if let Err(error) = serve.await {
                tracing::error!(%error, "the authorization server stopped");
            }
        });
        tracing::debug!(%addr, "authorization server started");
        Ok(TestAs::new(shared, addr, stop_tx, task))
    }
}

fn upsert(list: &mut Vec<(String, String)>, key: String, value: String) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => list.push((key, value)),
    }
}

/// The address clients should use: unspecified addresses become loopback.
fn public_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, v4.port()))
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, v6.port()))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_become_loopback() {
        assert_eq!(
            public_addr("0.0.0.0:80".parse().unwrap()).to_string(),
            "127.0.0.1:80"
        );
        assert_eq!(
            public_addr("[::]:80".parse().unwrap()).to_string(),
            "[::1]:80"
        );
        assert_eq!(
            public_addr("10.0.0.1:80".parse().unwrap()).to_string(),
            "10.0.0.1:80"
        );
    }

    #[tokio::test]
    async fn invalid_realms_are_refused_for_keycloak_only() {
        let error = AuthServer::builder()
            .dialect(Dialect::Keycloak)
            .realm("a/b")
            .spawn()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        let auth = AuthServer::builder().realm("a/b").spawn().await.unwrap();
        assert_eq!(auth.issuer(), auth.base_url());
    }

    #[test]
    fn repeated_clients_replace_and_debug_hides_secrets() {
        let builder = AuthServer::builder()
            .client("a", "one")
            .client("a", "two")
            .user("u", "pw");
        assert_eq!(builder.config.clients, [("a".to_owned(), "two".to_owned())]);
        let debug = format!("{builder:?}");
        assert!(!debug.contains("two") && !debug.contains("pw"), "{debug}");
    }
}
