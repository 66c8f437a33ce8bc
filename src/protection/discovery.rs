//! The discovery document, `{issuer}/.well-known/uma2-configuration` (Grant §2, FedAuthz §2):
//! the request, the parsing of the answer and the issuer check (RFC 8414 §3.3).

use bytes::Bytes;
use tracing::Instrument;

use super::{Answer, CallError, Caller, Endpoint, Failure, Transport, accept_json};
use crate::discovery::{DiscoveryDocument, WELL_KNOWN_PATH, trim_issuer};
use crate::error::{Error, ErrorKind, snippet};

/// The document's URL: the issuer, without trailing slashes, and the well-known path.
pub(crate) fn url(issuer: &str) -> String {
    format!("{}{WELL_KNOWN_PATH}", trim_issuer(issuer))
}

/// `GET` of the document.
pub(crate) fn request(issuer: &str) -> Result<http::Request<Bytes>, Failure> {
    super::build(
        http::Method::GET,
        &url(issuer),
        [accept_json()],
        Bytes::new(),
    )
}

/// Reads the document from a success; members it does not know are ignored.
pub(crate) fn parse(answer: http::Response<Bytes>) -> Result<DiscoveryDocument, Failure> {
    let (parts, body) = answer.into_parts();
    if !parts.status.is_success() {
        return Err(Failure::Status(Answer::of(parts.status, &body)));
    }
    serde_json::from_slice(&body)
        .map_err(|e| Failure::Unusable(format!("with a document that is not valid: {e}").into()))
}

/// Checks that the document names `issuer` (RFC 8414 §3.3); the layer makes no protection
/// call to an AS that claims to be someone else.
pub(crate) fn check_issuer(doc: &DiscoveryDocument, issuer: &str) -> Result<(), Error> {
    let issuer = trim_issuer(issuer);
    if trim_issuer(&doc.issuer) == issuer {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Discovery,
        format!(
            "the discovery document at {} names issuer \"{}\", not the configured {issuer:?}; \
             configure the issuer exactly as the AS publishes it",
            url(issuer),
            snippet(doc.issuer.as_bytes())
        ),
    ))
}

/// Fetches and checks the discovery document of `issuer`.
///
/// # Errors
///
/// [`ErrorKind::Transport`] when the AS cannot be reached, [`ErrorKind::Discovery`] for a
/// refusal, an unusable document or an issuer mismatch.
pub(crate) async fn fetch(
    transport: &dyn Transport,
    issuer: &str,
) -> Result<DiscoveryDocument, Error> {
    let url = url(issuer);
    let span = tracing::debug_span!("uma.discovery", url.full = %url, http.status_code = tracing::field::Empty);
    let doc = Caller::ungated(transport, Endpoint::Discovery, request(issuer), parse)
        .instrument(span)
        .await
        .map_err(|e: CallError| e.into_error(format!("reading the discovery document at {url}")))?;
    check_issuer(&doc, issuer)?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::canned::Canned;

    #[test]
    fn the_request() {
        let r = request("https://as.test/realms/a/").expect("a request");
        assert_eq!(r.method(), http::Method::GET);
        assert_eq!(
            r.uri(),
            "https://as.test/realms/a/.well-known/uma2-configuration"
        );
        assert_eq!(r.headers()[http::header::ACCEPT], "application/json");
    }

    #[tokio::test]
    async fn a_document_naming_the_issuer_is_read() {
        let canned = Canned::new(|_| {
            (
                200,
                r#"{"issuer":"https://as.test/","permission_endpoint":"https://as.test/perm","x":1}"#
                    .to_owned(),
            )
        });
        let doc = fetch(canned.transport().as_ref(), "https://as.test")
            .await
            .expect("a document");
        assert_eq!(
            doc.permission_endpoint.as_deref(),
            Some("https://as.test/perm")
        );
    }

    #[tokio::test]
    async fn failures_say_what_the_as_answered() {
        let message = |status: u16, body: &'static str| async move {
            let canned = Canned::new(move |_| (status, body.to_owned()));
            let e = fetch(canned.transport().as_ref(), "https://as.test")
                .await
                .expect_err("an error");
            (e.kind(), e.is_transient(), format!("{e:#}"))
        };
        let (kind, transient, text) = message(404, "no such realm").await;
        assert_eq!((kind, transient), (ErrorKind::Discovery, false));
        assert_eq!(
            text,
            "reading the discovery document at \
             https://as.test/.well-known/uma2-configuration: discovery endpoint answered 404 \
             (no such realm)"
        );
        let (kind, transient, _) = message(503, "").await;
        assert_eq!((kind, transient), (ErrorKind::Discovery, true));
        let (kind, transient, text) = message(200, "<html>").await;
        assert_eq!((kind, transient), (ErrorKind::Discovery, false));
        assert!(
            text.ends_with(
                "discovery endpoint answered with a document that is not valid: \
                            expected value at line 1 column 1"
            ),
            "{text}"
        );
        let (kind, _, text) = message(200, r#"{"issuer":"https://evil.test"}"#).await;
        assert_eq!(kind, ErrorKind::Discovery);
        assert!(text.starts_with("the discovery document at https://as.test/.well-known/uma2-configuration names issuer \"https://evil.test\""), "{text}");
    }
}
