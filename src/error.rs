//! Errors of the set-up APIs (builder, discovery, PAT, registration).
//!
//! The request path never returns these: every failure there becomes a response (see the
//! crate docs), and the service keeps its inner service's error type.
//!
//! # Example
//!
//! ```
//! use tower_uma::{ErrorKind, UmaLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A plain-http issuer is refused unless the builder says `insecure_allow_http()`.
//! let err = UmaLayer::builder("http://as.example", "rs", "secret").build().await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Config);
//! assert!(err.to_string().contains("insecure_allow_http"));
//! # }
//! ```

use std::fmt;

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
/// Messages never contain tokens, PATs or client secrets; AS answers are quoted by status and
/// a bounded snippet of their body.
pub struct Error {
    kind: ErrorKind,
    message: String,
    transient: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
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

    /// The same kind, message and transience, without the source (for repeating an error).
    pub(crate) fn repeat(&self) -> Self {
        Self::new(self.kind, self.message.clone()).transient(self.transient)
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
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

/// Describes a reqwest failure without echoing its URL's query (which we never use for
/// secrets anyway) or any body.
pub(crate) fn describe_transport(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() || e.is_body() {
        "response body unreadable"
    } else {
        "request failed"
    }
}
