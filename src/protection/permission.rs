//! The permission endpoint (FedAuthz §4): the ticket request and the parsing of the answer.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::{Answer, Failure, accept_json, bearer, json_body};
use crate::resources::ClaimValues;
use crate::token::Pat;
use std::collections::BTreeMap;

/// The JSON shape of a permission request (FedAuthz §4.1 allows both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PermissionBody {
    /// An array of one or more request objects; Keycloak, WSO2 and PingAM need it.
    #[default]
    Array,
    /// A single request object.
    Object,
}

#[derive(Serialize)]
struct PermissionRequest<'a> {
    resource_id: &'a str,
    resource_scopes: &'a [String],
    /// Pushed claims, as Keycloak's permission endpoint reads them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    claims: &'a ClaimValues,
}

/// The JSON body asking for one ticket covering `resource_id` and `scopes`, in `shape`, with
/// the request's pushed `claims` when there are any.
pub(crate) fn body(
    resource_id: &str,
    scopes: &[String],
    claims: &ClaimValues,
    shape: PermissionBody,
) -> Result<Bytes, Failure> {
    let one = PermissionRequest {
        resource_id,
        resource_scopes: scopes,
        claims,
    };
    match shape {
        PermissionBody::Array => serde_json::to_vec(&[&one]),
        PermissionBody::Object => serde_json::to_vec(&one),
    }
    .map(Bytes::from)
    .map_err(|_| Failure::Unsendable("the permission request cannot be written"))
}

/// A `POST` of `body` (see [`body`]) to `url` with the PAT as bearer (FedAuthz §4.1).
pub(crate) fn request(url: &str, body: Bytes, pat: &Pat) -> Result<http::Request<Bytes>, Failure> {
    super::build(
        http::Method::POST,
        url,
        [bearer(pat.secret())?, json_body(), accept_json()],
        body,
    )
}

/// Reads the answer: `201` (or `200`) with a `ticket` (FedAuthz §4.2). A ticket that could
/// not be sent in a challenge (empty, a control or non-ASCII character) is as unusable as none.
///
/// An error answer keeps what the AS wrote (its `error_description`): the request carries no
/// token in its body, the PAT is withheld from any echo by the caller, and the description is
/// what says which resource an `invalid_resource_id` (FedAuthz §4.3) is about.
pub(crate) fn parse(answer: http::Response<Bytes>) -> Result<String, Failure> {
    let ok = [http::StatusCode::CREATED, http::StatusCode::OK];
    if !ok.contains(&answer.status()) {
        return Err(Failure::Status(Answer::read(&answer)));
    }
    let body = answer.into_body();
    let no_ticket = || Failure::Unusable("without a usable ticket".into());
    let value: Value = serde_json::from_slice(&body).map_err(|_| no_ticket())?;
    match value.get("ticket").and_then(Value::as_str) {
        Some(t) if !t.is_empty() && t.bytes().all(|b| matches!(b, b' '..=b'~')) => Ok(t.to_owned()),
        _ => Err(no_ticket()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::canned::answer;

    #[test]
    fn the_request_is_an_array_by_default() {
        let scopes = ["view".to_owned()];
        let r = request(
            "https://as.test/perm",
            body("r1", &scopes, &ClaimValues::new(), PermissionBody::Array).expect("a body"),
            &Pat::new("pat-1"),
        )
        .expect("a request");
        assert_eq!(r.method(), http::Method::POST);
        assert_eq!(r.headers()[http::header::AUTHORIZATION], "Bearer pat-1");
        assert_eq!(r.headers()[http::header::CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[http::header::ACCEPT], "application/json");
        assert_eq!(
            r.body(),
            r#"[{"resource_id":"r1","resource_scopes":["view"]}]"#
        );
        assert_eq!(
            body("r1", &[], &ClaimValues::new(), PermissionBody::Object).expect("a body"),
            r#"{"resource_id":"r1","resource_scopes":[]}"#
        );
    }

    #[test]
    fn pushed_claims_go_with_the_permission() {
        let claims = ClaimValues::from([("org".to_owned(), vec!["acme".to_owned()])]);
        assert_eq!(
            body("r1", &[], &claims, PermissionBody::Array).expect("a body"),
            r#"[{"resource_id":"r1","resource_scopes":[],"claims":{"org":["acme"]}}]"#
        );
    }

    #[test]
    fn tickets_are_read_exactly_or_refused() {
        assert_eq!(
            parse(answer(201, r#"{"ticket":"a.b-c_d"}"#)),
            Ok("a.b-c_d".to_owned())
        );
        assert_eq!(parse(answer(200, r#"{"ticket":"t"}"#)), Ok("t".to_owned()));
        for body in [
            r#"{"ticket":""}"#,
            r#"{"ticket":"a\u0001b"}"#,
            r#"{"ticket":"é"}"#,
            r#"{"ticket":5}"#,
            "{}",
            "not json",
        ] {
            assert!(
                matches!(parse(answer(201, body)), Err(Failure::Unusable(_))),
                "{body}"
            );
        }
        assert!(matches!(
            parse(answer(400, r#"{"error":"invalid_resource_id"}"#)),
            Err(Failure::Status(a)) if a.status() == 400 && a.code() == Some("invalid_resource_id")
        ));
        // The description says which resource: it is kept.
        let said = r#"{"error":"invalid_resource_id","error_description":"Resource with id [r1] does not exist."}"#;
        assert!(matches!(
            parse(answer(400, said)),
            Err(Failure::Status(a)) if a.said() == Some("Resource with id [r1] does not exist.")
        ));
    }
}
