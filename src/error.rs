//! Errors of the set-up APIs (builder, discovery, PAT, registration).
//!
//! The request path never returns these: every failure there becomes a response (see the
//! crate docs), and the service keeps its inner service's error type.
//!
//! # Example
//!
//! ```
//! use tower_uma::{UmaLayer, error::ErrorKind};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A plain-http issuer is refused unless the builder says `insecure_allow_http()`.
//! let err = UmaLayer::builder("http://as.example", "rs", "secret").build().await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Config);
//! assert!(err.to_string().contains("insecure_allow_http"));
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

/// What went wrong, broadly. New kinds may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is invalid; the message says what to fix.
    Config,
    /// The discovery document could not be fetched or is unusable (including an `issuer`
    /// mismatch).
    Discovery,
    /// No PAT could be obtained from the token endpoint.
    Pat,
    /// Resource registration at the AS failed.
    Registration,
    /// The AS could not be reached or did not answer in time.
    Transport,
}

/// The error of tower-uma's set-up APIs. Opaque: inspect it with [`kind`](Self::kind) and
/// its message; its source chain carries the underlying cause where there is one.
///
/// Each level of the chain says one thing, once: `Display` prints this error's own message
/// (what the layer was doing, e.g. `listing registered resources`) and
/// [`source`](std::error::Error::source) leads to what went wrong there (e.g. `token endpoint
/// answered 401 invalid_client: check client_id and the client secret`). The alternate form,
/// `{:#}`, prints the whole chain on one line, each cause once, separated by `": "`; so do
/// chain printers such as `anyhow`'s `{:#}`.
///
/// Messages never contain tokens, PATs or client secrets; AS answers are quoted by status,
/// their OAuth `error` code, and a bounded snippet of their description or body.
///
/// # Example
///
/// ```
/// use tower_uma::UmaLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // Nothing listens on port 1: discovery cannot reach the AS.
/// let err = UmaLayer::discover("http://127.0.0.1:1", "rs", "secret")
///     .insecure_allow_http()
///     .build()
///     .await
///     .unwrap_err();
/// assert!(err.is_transient());
/// assert_eq!(
///     err.to_string(),
///     "reading the discovery document at http://127.0.0.1:1/.well-known/uma2-configuration"
/// );
/// // The chain, each cause once.
/// let chain = format!("{err:#}");
/// assert!(chain.starts_with(&format!("{err}: discovery endpoint unreachable: ")), "{chain}");
/// # }
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    transient: bool,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            transient: kind == ErrorKind::Transport,
            source: None,
        }
    }

    pub(crate) fn transient(mut self, transient: bool) -> Self {
        self.transient = transient;
        self
    }

    /// The same kind, message, transience and source (for repeating an error).
    pub(crate) fn repeat(&self) -> Self {
        Self {
            kind: self.kind,
            message: self.message.clone(),
            transient: self.transient,
            source: self.source.clone(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// What kind of failure this is.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether trying again later may succeed: the AS could not be reached, timed out or
    /// answered with a server error. `false` for errors that need a change of configuration
    /// (bad credentials, an issuer mismatch, a refusing AS). A process starting up can retry
    /// transient errors with backoff and exit on the others.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// Whether this is a configuration error.
    #[must_use]
    pub fn is_config(&self) -> bool {
        self.kind == ErrorKind::Config
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind)
            .field("message", &self.message)
            .field("transient", &self.transient);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    /// This error's own message; with `{:#}`, followed by every cause in its source chain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{}", Chain(self))
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// At most this many bytes of an AS body are quoted in an error message.
pub(crate) const BODY_SNIPPET: usize = 200;

/// A printable, bounded snippet of an AS response body for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let end = body.len().min(BODY_SNIPPET);
    let mut s: String = String::from_utf8_lossy(&body[..end])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > BODY_SNIPPET {
        s.push('…');
    }
    s
}

/// Prints an error and every cause in its source chain on one line: `error: cause: cause`.
/// Each level prints only its own message (`{}`, never `{:#}`), so each cause appears once.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The error of parsing a setting from its name: [`EnforcementMode`](crate::EnforcementMode)
/// (`enforcing`, `permissive`, `disabled`), [`Unmapped`](crate::resources::Unmapped) (`deny`,
/// `allow`) or [`MethodOverride`](crate::method_override::MethodOverride) (`refuse`,
/// `decide`). Names are compared exactly, as uma-proxy's configuration writes them.
///
/// # Example
///
/// ```
/// use tower_uma::EnforcementMode;
///
/// assert_eq!("permissive".parse(), Ok(EnforcementMode::Permissive));
/// let e = "strict".parse::<EnforcementMode>().unwrap_err();
/// assert_eq!(e.name(), "strict");
/// assert_eq!(e.expected(), ["enforcing", "permissive", "disabled"]);
/// assert_eq!(
///     e.to_string(),
///     "unknown value `strict`, expected one of `enforcing`, `permissive`, `disabled`"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseSettingError {
    name: String,
    expected: &'static [&'static str],
}

impl ParseSettingError {
    /// The name that did not parse.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The names that parse, in the order the setting documents them.
    #[must_use]
    pub fn expected(&self) -> &'static [&'static str] {
        self.expected
    }
}

impl fmt::Display for ParseSettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown value `{}`, expected ", self.name)?;
        match self.expected {
            [a, b] => write!(f, "`{a}` or `{b}`"),
            names => {
                f.write_str("one of ")?;
                for (i, name) in names.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}`{name}`")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ParseSettingError {}

/// Implements `Display` and `FromStr` (with [`ParseSettingError`]) for a setting whose values
/// have names: `named_setting!(Type { Variant => "name", … })`.
macro_rules! named_setting {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The values and their names, in the order the setting documents them.
            const NAMED: $crate::error::Named<$ty> = $crate::error::Named {
                values: &[$($ty::$variant),+],
                names: &[$($name),+],
            };
        }

        impl std::fmt::Display for $ty {
            /// The value's name, as uma-proxy's configuration writes it.
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(Self::NAMED.name(*self))
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::error::ParseSettingError;

            /// Parses a value's name, compared exactly.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::NAMED.parse(s)
            }
        }
    };
}
pub(crate) use named_setting;

/// A setting with a name per value: `names[i]` names `values[i]`.
pub(crate) struct Named<T: 'static> {
    pub(crate) values: &'static [T],
    pub(crate) names: &'static [&'static str],
}

impl<T: Copy + PartialEq> Named<T> {
    /// The value named `name`, compared exactly.
    pub(crate) fn parse(&self, name: &str) -> Result<T, ParseSettingError> {
        self.names
            .iter()
            .position(|n| *n == name)
            .map(|i| self.values[i])
            .ok_or_else(|| ParseSettingError {
                name: name.to_owned(),
                expected: self.names,
            })
    }

    /// The name of `value`.
    pub(crate) fn name(&self, value: T) -> &'static str {
        self.values
            .iter()
            .position(|v| *v == value)
            .map_or("", |i| self.names[i])
    }
}

/// `url` as tower-uma's errors and logs quote a configured URL: with its user info
/// (`scheme://user:password@`) replaced by `***`, also where a lenient parser finds user info
/// the text hides (`https:///user:pw@host`) or a password holds an unescaped `/`, `?` or `#`.
/// For messages of your own that name a URL from configuration.
///
/// ```
/// use tower_uma::error::url_without_user_info;
///
/// assert_eq!(
///     url_without_user_info("redis://default:s3cret@cache.internal:6379/0"),
///     "redis://***@cache.internal:6379/0"
/// );
/// assert_eq!(url_without_user_info("https://as.test/x"), "https://as.test/x");
/// ```
#[must_use]
pub fn url_without_user_info(url: &str) -> String {
    crate::layer::url_check::without_user_info(url)
}

#[cfg(test)]
mod setting_tests {
    use crate::EnforcementMode;
    use crate::method_override::MethodOverride;
    use crate::resources::Unmapped;

    #[test]
    fn every_setting_round_trips_by_name_and_nothing_else_parses() {
        for mode in [
            EnforcementMode::Enforcing,
            EnforcementMode::Permissive,
            EnforcementMode::Disabled,
        ] {
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
        for unmapped in [Unmapped::Deny, Unmapped::Allow] {
            assert_eq!(unmapped.to_string().parse(), Ok(unmapped));
        }
        for m in [MethodOverride::Refuse, MethodOverride::Decide] {
            assert_eq!(m.to_string().parse(), Ok(m));
        }
        assert_eq!(EnforcementMode::Permissive.to_string(), "permissive");
        assert_eq!(Unmapped::Allow.to_string(), "allow");
        assert_eq!(MethodOverride::Decide.to_string(), "decide");
        let e = "Deny".parse::<Unmapped>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown value `Deny`, expected `deny` or `allow`"
        );
        assert!("".parse::<MethodOverride>().is_err());
    }
}
