//! OAuth-style error answers (RFC 6749 §5.2, UMA Grant §3.3.6, FedAuthz §6).
//!
//! Every error the server produces is a JSON object with `error` and, usually,
//! `error_description`, sent with `Cache-Control: no-store` and `Pragma: no-cache` — except
//! where a dialect answers otherwise: WSO2's resource API writes `code`/`description`
//! ([`OAuthError::into_wso2_response`]).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value};

use crate::dialect::names::REALM;

/// An error answer under construction.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: Option<String>,
    extra: Map<String, Value>,
    challenge: Option<String>,
}

impl OAuthError {
    /// An error with the given status and `error` code.
    pub(crate) fn new(status: StatusCode, code: &'static str) -> Self {
        Self {
            status,
            code,
            description: None,
            extra: Map::new(),
            challenge: None,
        }
    }

    /// Adds `error_description` (never put secrets or tokens in it).
    pub(crate) fn describe(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Adds an extra member (for example `ticket` on `need_info`).
    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a `WWW-Authenticate` challenge.
    pub(crate) fn challenge(mut self, challenge: impl Into<String>) -> Self {
        self.challenge = Some(challenge.into());
        self
    }

    /// The `error` code, for logs.
    pub(crate) const fn code(&self) -> &'static str {
        self.code
    }

    /// The `WWW-Authenticate` challenge, if any.
    pub(crate) fn challenge_value(&self) -> Option<String> {
        self.challenge.clone()
    }

    /// The HTTP status, for logs.
    pub(crate) const fn status(&self) -> StatusCode {
        self.status
    }

    /// 400 `invalid_request`.
    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request").describe(description)
    }

    /// 400 `invalid_grant`.
    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant").describe(description)
    }

    /// 400 `invalid_scope`.
    pub(crate) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope").describe(description)
    }

    /// 401 `invalid_client`; `basic` adds the `Basic` challenge RFC 6749 §5.2 asks for.
    pub(crate) fn invalid_client(description: impl Into<String>, basic: bool) -> Self {
        let error = Self::new(StatusCode::UNAUTHORIZED, "invalid_client").describe(description);
        if basic {
            error.challenge(format!("Basic realm=\"{REALM}\""))
        } else {
            error
        }
    }

    /// 401 `invalid_token` with a `Bearer` challenge (RFC 6750 §3); `missing` leaves the
    /// `error` parameter out of the challenge, as RFC 6750 §3.1 asks when no token was sent.
    pub(crate) fn invalid_token(description: impl Into<String>, missing: bool) -> Self {
        let challenge = if missing {
            format!("Bearer realm=\"{REALM}\"")
        } else {
            format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"")
        };
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token")
            .describe(description)
            .challenge(challenge)
    }

    /// 404 `not_found` (FedAuthz §3.2).
    pub(crate) fn not_found(description: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found").describe(description)
    }

    /// 500 `server_error`, for failures that are the server's own fault.
    pub(crate) fn server_error(description: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error").describe(description)
    }

    /// The answer in the shape of WSO2's resource API (its `ErrorDTO`): `{"code": …,
    /// "description": …}` with the same status, headers and challenge.
    pub(crate) fn into_wso2_response(self) -> Response {
        let mut body = Map::new();
        body.insert("code".to_owned(), Value::from(self.code));
        body.insert(
            "description".to_owned(),
            Value::from(self.description.clone().unwrap_or_default()),
        );
        self.respond_with(&Value::Object(body))
    }

    fn respond_with(self, body: &Value) -> Response {
        let mut response = json_response(self.status, body);
        if let Some(challenge) = self.challenge
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    /// The JSON body.
    fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".to_owned(), Value::from(self.code));
        if let Some(description) = &self.description {
            body.insert(
                "error_description".to_owned(),
                Value::from(description.as_str()),
            );
        }
        for (key, value) in &self.extra {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = self.body();
        self.respond_with(&body)
    }
}

/// A JSON answer with `Cache-Control: no-store` and `Pragma: no-cache`.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The status code for fault-injected answers: `status` if it is a valid code, else 500.
pub(crate) fn status_or_500(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The `error` code used in the body of a fault-injected `status` answer.
pub(crate) const fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request",
        401 => "invalid_token",
        403 => "access_denied",
        404 => "not_found",
        503 => "temporarily_unavailable",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_code_description_and_extras() {
        let error = OAuthError::new(StatusCode::FORBIDDEN, "need_info")
            .describe("who are you")
            .with("ticket", "t-1");
        assert_eq!(
            error.body(),
            serde_json::json!({"error": "need_info", "error_description": "who are you", "ticket": "t-1"})
        );
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn dialect_shapes() {
        let wso2 = OAuthError::new(StatusCode::CONFLICT, "conflict")
            .describe("dup")
            .into_wso2_response();
        assert_eq!(wso2.status(), StatusCode::CONFLICT);
        assert_eq!(wso2.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn fault_status_mapping() {
        assert_eq!(status_or_500(503), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_or_500(1000), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(code_for_status(StatusCode::UNAUTHORIZED), "invalid_token");
        assert_eq!(code_for_status(StatusCode::BAD_GATEWAY), "server_error");
    }
}
