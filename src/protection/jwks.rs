//! The AS's JSON Web Key Set (RFC 7517 §5), for local validation of JWT RPTs: the request and
//! the status check of the answer. Reading the keys is the JWT module's job (`crate::jwt`).

use bytes::Bytes;

use super::{Failure, ok_body};

/// The largest JWKS document read, in bytes; a larger answer is treated as unparsable.
pub(crate) const MAX_JWKS_BYTES: usize = 256 * 1024;

/// `GET` of the key set at `uri`.
pub(crate) fn request(uri: &str) -> Result<http::Request<Bytes>, Failure> {
    let accept = (
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/jwk-set+json, application/json"),
    );
    super::build(http::Method::GET, uri, [accept], Bytes::new())
}

/// The key set document of a `200` answer.
pub(crate) fn body(answer: http::Response<Bytes>) -> Result<Bytes, Failure> {
    ok_body(answer, &[http::StatusCode::OK])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::canned::answer;

    #[test]
    fn the_request_and_its_answer() {
        let r = request("https://as.test/certs").expect("a request");
        assert_eq!(r.method(), http::Method::GET);
        assert_eq!(
            r.headers()[http::header::ACCEPT],
            "application/jwk-set+json, application/json"
        );
        assert_eq!(body(answer(200, "{}")), Ok(Bytes::from_static(b"{}")));
        assert!(matches!(
            body(answer(204, "")),
            Err(Failure::Status(a)) if a.status() == 204
        ));
    }
}
