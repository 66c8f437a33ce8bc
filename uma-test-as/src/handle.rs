//! The handle of a running server: URLs, counters, fault knobs and shortcuts.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dialect::{Dialect, Endpoint};
use crate::model::{PendingRequest, RecordedRequest, ResourceDescription, RptSpec};
use crate::state::{Ruling, Shared, TokenRecord};

/// How long [`TestAs::shutdown`] waits for open connections before aborting the server task.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running authorization server. Dropping it shuts the server down.
///
/// Fault knobs act per endpoint, in this order: down/close → latency → canned answer
/// (`fail_next`, `respond_next`, `ticketless_next`, served in the order queued) → normal
/// handling; `reject_next_pat` acts inside normal handling. Counters and recordings include
/// faulted requests.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use uma_test_as::{AuthServer, Endpoint, ResourceDescription, RptSpec};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let auth = AuthServer::builder().client("rs", "rs-secret").spawn().await?;
///
/// // Arrange state without HTTP.
/// let id = auth.register_resource(
///     "alice",
///     ResourceDescription {
///         name: Some("album".into()),
///         resource_scopes: vec!["view".into()],
///         ..Default::default()
///     },
/// );
/// assert_eq!(auth.resource_id("album"), Some(id.clone()));
/// let rpt = auth.mint_rpt(RptSpec::active_for(&id, ["view"], 60));
/// assert!(!rpt.is_empty());
///
/// // Break things.
/// auth.set_latency(Endpoint::Introspection, Duration::from_millis(200));
/// auth.fail_next(Endpoint::Token, 1, 503);
/// auth.close_next(Endpoint::Permission, 2);
/// auth.reject_next_pat(1);
/// # Ok(())
/// # }
/// ```
pub struct TestAs {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for TestAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestAs")
            .field("issuer", &self.shared.issuer)
            .field("dialect", &self.shared.dialect)
            .finish_non_exhaustive()
    }
}

impl TestAs {
    pub(crate) const fn new(
        shared: Arc<Shared>,
        addr: SocketAddr,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
    ) -> Self {
        Self {
            shared,
            addr,
            stop,
            task: Some(task),
        }
    }

    /// The issuer URL (no trailing slash): the base URL, e.g. `http://127.0.0.1:41234`, or for
    /// Keycloak `{base}/realms/{realm}`. It is what discovery announces and what a resource
    /// server puts in `as_uri`; the standard and Keycloak discovery documents are at issuer +
    /// `/.well-known/uma2-configuration`. WSO2 has no discovery document and its tokens'
    /// `iss` is different (see [`jwt_issuer`](Self::jwt_issuer)), so for WSO2 this is simply
    /// the base URL.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// `http://` + the bound address, e.g. `http://127.0.0.1:41234` (what the binary prints
    /// after `listening on`). Every path of every dialect is relative to it.
    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    /// The `iss` of the JWTs the server signs (ID tokens, JWT RPTs, Keycloak access tokens
    /// and tickets): the [`issuer`](Self::issuer), except for WSO2, whose tokens name its
    /// token endpoint, `{base}/oauth2/token` (docs/protocol.md §2.3).
    pub fn jwt_issuer(&self) -> String {
        self.shared.token_issuer.clone()
    }

    /// The dialect the server speaks.
    pub fn dialect(&self) -> Dialect {
        self.shared.dialect
    }

    /// The address the server listens on.
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The absolute URL of an endpoint in the server's dialect, e.g. issuer + `/permission`,
    /// or `{base}/realms/{realm}/authz/protection/permission` for Keycloak. For WSO2,
    /// [`Endpoint::Discovery`] names the standard path, which answers 404.
    pub fn endpoint_url(&self, endpoint: Endpoint) -> String {
        self.shared.url(endpoint)
    }

    /// Every request received at the endpoint so far, faulted ones included.
    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.shared.faults.count(endpoint)
    }

    /// The requests received at the endpoint, in arrival order.
    pub fn requests(&self, endpoint: Endpoint) -> Vec<RecordedRequest> {
        self.shared.faults.requests(endpoint)
    }

    /// Forgets the recorded requests of every endpoint (the counters keep counting). Every
    /// request is recorded, body included, so a server under load for a long time (a soak
    /// run) calls this now and then to keep its memory bounded.
    pub fn clear_requests(&self) {
        self.shared.faults.clear_requests();
    }

    /// How many PATs the token endpoint has handed out.
    pub fn pats_issued(&self) -> u64 {
        self.shared.pats_issued()
    }

    /// Adds `latency` before the endpoint answers (also before closing or canned answers
    /// that come later in the order). `Duration::ZERO` clears it.
    pub fn set_latency(&self, endpoint: Endpoint, latency: Duration) {
        self.shared.faults.set_latency(endpoint, latency);
    }

    /// The next `n` requests to the endpoint get `status` with a small JSON error body
    /// (`error` = `invalid_request` for 400, `invalid_token` for 401 — with a `Bearer`
    /// challenge —, `access_denied` for 403, `not_found` for 404,
    /// `temporarily_unavailable` for 503, `server_error` otherwise). An invalid status code
    /// becomes 500.
    pub fn fail_next(&self, endpoint: Endpoint, n: u32, status: u16) {
        self.shared.faults.fail_next(endpoint, n, status);
    }

    /// The next `n` requests to the endpoint get exactly this answer (an empty
    /// `content_type` sends none), e.g. garbage JSON.
    pub fn respond_next(
        &self,
        endpoint: Endpoint,
        n: u32,
        status: u16,
        content_type: &str,
        body: &str,
    ) {
        self.shared
            .faults
            .respond_next(endpoint, n, status, content_type, body);
    }

    /// The next `n` requests to the endpoint see their connection closed without any
    /// response.
    pub fn close_next(&self, endpoint: Endpoint, n: u32) {
        self.shared.faults.close_next(endpoint, n);
    }

    /// The next `n` permission requests get `201 {}` (no ticket), whatever they carry.
    pub fn ticketless_next(&self, n: u32) {
        self.shared.faults.ticketless_next(n);
    }

    /// The next `n` requests authenticated by a valid PAT (resource registration,
    /// permission, or introspection with a bearer PAT) get 401 `invalid_token`, as if the
    /// PAT had expired.
    pub fn reject_next_pat(&self, n: u32) {
        self.shared.faults.reject_next_pat(n);
    }

    /// While `down`, every request to the endpoint has its connection closed without a
    /// response.
    pub fn set_down(&self, endpoint: Endpoint, down: bool) {
        self.shared.faults.set_down(endpoint, down);
    }

    /// Creates an RPT (opaque or JWT per the configured format) whose introspection answer
    /// reflects `spec` exactly; see [`RptSpec`] for what "active" means.
    ///
    /// # Panics
    ///
    /// Only if signing a JWT with the server's own key fails, which would be a bug.
    pub fn mint_rpt(&self, spec: RptSpec) -> String {
        self.shared
            .store_rpt(spec)
            .expect("signing with the server's own P-256 key does not fail")
    }

    /// Signs an ID token for `sub` (audience `client_id`), as the password grant with
    /// `scope=openid` would; usable as a `claim_token`.
    ///
    /// # Panics
    ///
    /// Only if signing with the server's own key fails, which would be a bug.
    pub fn mint_id_token(&self, sub: &str, client_id: &str) -> String {
        self.shared
            .id_token(sub, client_id)
            .expect("signing with the server's own P-256 key does not fail")
    }

    /// Registers a resource owned by `owner` (which replaces `desc.owner`); returns its `_id`.
    pub fn register_resource(&self, owner: &str, mut desc: ResourceDescription) -> String {
        desc.owner = Some(owner.to_owned());
        self.shared.add_resource(desc, None)
    }

    /// Sets the Keycloak `uris` of resource `id` (the paths it stands for, which the Keycloak
    /// dialect's list matches with `uri=…&matchingUri=true`); returns whether it exists.
    pub fn set_resource_uris(&self, id: &str, uris: &[&str]) -> bool {
        let mut store = self.shared.store();
        let Some(resource) = store.resources.iter_mut().find(|r| r.id == id) else {
            return false;
        };
        let uris = uris.iter().map(|u| serde_json::Value::from(*u)).collect();
        resource
            .extra
            .insert("uris".to_owned(), serde_json::Value::Array(uris));
        true
    }

    /// The `_id` of the first resource registered under `name`.
    pub fn resource_id(&self, name: &str) -> Option<String> {
        self.shared
            .store()
            .resources
            .iter()
            .find(|r| r.desc.name.as_deref() == Some(name))
            .map(|r| r.id.clone())
    }

    /// Forgets every registered resource, as a server that keeps them in memory does when it
    /// restarts (or as an admin deleting them all would): reads, permission requests and
    /// grants naming their ids then answer as for ids never registered (400
    /// `invalid_resource_id` at the permission endpoint). Tickets, tokens, approvals and
    /// policies are kept. Returns how many resources were forgotten.
    pub fn forget_resources(&self) -> usize {
        let mut store = self.shared.store();
        let forgotten = store.resources.len();
        store.resources.clear();
        forgotten
    }

    /// The description of a registered resource, `owner` filled in.
    pub fn resource(&self, id: &str) -> Option<ResourceDescription> {
        self.shared.store().resource(id).map(|r| r.desc.clone())
    }

    /// The approval requests waiting for `owner`.
    pub fn pending_requests(&self, owner: &str) -> Vec<PendingRequest> {
        self.shared.pending_for(owner)
    }

    /// Approves a pending request; false if it is unknown or already decided.
    pub fn approve(&self, request_id: &str) -> bool {
        self.shared.decide(request_id, None, true) == Ruling::Done
    }

    /// Denies a pending request; false if it is unknown or already decided.
    pub fn deny(&self, request_id: &str) -> bool {
        self.shared.decide(request_id, None, false) == Ruling::Done
    }

    /// Revokes any token this server issued (RPT, PAT or access token); introspection then
    /// answers `{"active":false}` and a revoked PAT gets 401.
    pub fn revoke(&self, token: &str) {
        self.shared.revoke(token);
    }

    /// Whether a token is known and currently active (not revoked or expired).
    pub fn is_active(&self, token: &str) -> bool {
        let now = crate::model::unix_now_ms();
        match self.shared.store().tokens.get(token) {
            Some(TokenRecord::Access(access)) => access.is_active_at(now),
            Some(TokenRecord::Rpt { spec, revoked, .. }) => !revoked && spec.is_active_at(now),
            None => false,
        }
    }

    /// Generates a new signing key with a new `kid` and publishes it in the JWKS before the
    /// old ones, which stay published (tokens they signed still verify) until
    /// [`retire_old_keys`](Self::retire_old_keys). Every token signed from now on — ID tokens,
    /// JWT RPTs, Keycloak access tokens and tickets — carries the new `kid`. Returns it.
    ///
    /// # Panics
    ///
    /// Only if the system cannot generate a P-256 key, which would be a bug.
    pub fn rotate_signing_key(&self) -> String {
        self.shared
            .keys
            .rotate()
            .expect("generating a P-256 key with aws-lc-rs does not fail")
    }

    /// Removes every key but the current signing key from the JWKS. Tokens signed by the
    /// removed keys no longer verify, here (ID tokens as claim tokens) or for a resource
    /// server that refetches the JWKS; opaque tokens and introspection are unaffected.
    pub fn retire_old_keys(&self) {
        let retired = self.shared.keys.retire_old();
        tracing::debug!(retired, "signing keys retired");
    }

    /// The `kid` of the key that signs new tokens.
    pub fn signing_kid(&self) -> String {
        self.shared.keys.current_kid()
    }

    /// Stops accepting connections, lets open ones finish (at most 5 s), and waits for the
    /// server task.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for TestAs {
    fn drop(&mut self) {
        // The server task sees the signal (or the dropped sender), stops accepting, closes idle
        // connections and cuts injected latencies short.
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TestAs>();
        assert_send_sync::<crate::AuthServerBuilder>();
        assert_send_sync::<crate::Config>();
        assert_send_sync::<crate::ConfigError>();
    }
}
