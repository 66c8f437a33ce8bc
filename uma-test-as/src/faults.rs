//! Per-endpoint request counters, recordings and fault knobs, and the middleware that applies
//! them.
//!
//! Every request to an endpoint goes through [`fault_layer`] first, which
//!
//! 1. counts and records it (body included, up to the 64 KiB limit; a larger body is
//!    answered 400 `invalid_request`);
//! 2. closes the connection without a response if the endpoint is down or a `close_next`
//!    is pending;
//! 3. waits for the configured latency;
//! 4. sends the next canned answer (`fail_next`, `respond_next`, `ticketless_next`) if one is
//!    queued — canned answers are served in the order they were queued;
//! 5. otherwise hands the request to the real handler.
//!
//! `reject_next_pat` acts later, inside PAT authentication, because only a handler knows
//! that a request was authenticated by a valid PAT.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::conn::ConnKill;
use crate::dialect::Endpoint;
use crate::dialect::names::REALM;
use crate::error::{OAuthError, code_for_status, json_response, status_or_500};
use crate::model::RecordedRequest;
use crate::state::Shared;

/// The largest request body the server reads.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// A canned answer.
#[derive(Clone, Debug)]
struct Canned {
    status: StatusCode,
    content_type: Option<String>,
    body: String,
    /// A `fail_next` error: `Cache-Control: no-store` like real errors, and a `Bearer`
    /// challenge on 401. `respond_next` answers are sent exactly as given.
    error_answer: bool,
}

impl Canned {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.remove(header::CONTENT_TYPE);
        if let Some(content_type) = self.content_type
            && let Ok(value) = HeaderValue::from_str(&content_type)
        {
            headers.insert(header::CONTENT_TYPE, value);
        }
        if self.error_answer {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        }
        if self.error_answer && self.status == StatusCode::UNAUTHORIZED {
            let challenge = format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"");
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// The knobs of one endpoint.
#[derive(Debug, Default)]
struct Knobs {
    latency: Duration,
    down: bool,
    close_next: u32,
    canned: VecDeque<(u32, Canned)>,
}

/// All counters and knobs of one server.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    counts: [AtomicU64; Endpoint::COUNT],
    knobs: Mutex<[Knobs; Endpoint::COUNT]>,
    recorded: Mutex<[Vec<RecordedRequest>; Endpoint::COUNT]>,
    reject_pat: AtomicU32,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Faults {
    pub(crate) fn count(&self, endpoint: Endpoint) -> u64 {
        self.counts[endpoint.index()].load(Ordering::SeqCst)
    }

    pub(crate) fn requests(&self, endpoint: Endpoint) -> Vec<RecordedRequest> {
        lock(&self.recorded)[endpoint.index()].clone()
    }

    pub(crate) fn clear_requests(&self) {
        for recorded in lock(&self.recorded).iter_mut() {
            *recorded = Vec::new();
        }
    }

    pub(crate) fn set_latency(&self, endpoint: Endpoint, latency: Duration) {
        lock(&self.knobs)[endpoint.index()].latency = latency;
    }

    pub(crate) fn set_down(&self, endpoint: Endpoint, down: bool) {
        lock(&self.knobs)[endpoint.index()].down = down;
    }

    pub(crate) fn close_next(&self, endpoint: Endpoint, n: u32) {
        let mut knobs = lock(&self.knobs);
        let knob = &mut knobs[endpoint.index()].close_next;
        *knob = knob.saturating_add(n);
    }

    pub(crate) fn fail_next(&self, endpoint: Endpoint, n: u32, status: u16) {
        let status = status_or_500(status);
        let body = json!({
            "error": code_for_status(status),
            "error_description": "injected failure",
        });
        self.push_canned(
            endpoint,
            n,
            Canned {
                status,
                content_type: Some("application/json".to_owned()),
                body: body.to_string(),
                error_answer: true,
            },
        );
    }

    pub(crate) fn respond_next(
        &self,
        endpoint: Endpoint,
        n: u32,
        status: u16,
        content_type: &str,
        body: &str,
    ) {
        let content_type = (!content_type.is_empty()).then(|| content_type.to_owned());
        self.push_canned(
            endpoint,
            n,
            Canned {
                status: status_or_500(status),
                content_type,
                body: body.to_owned(),
                error_answer: false,
            },
        );
    }

    pub(crate) fn ticketless_next(&self, n: u32) {
        self.respond_next(Endpoint::Permission, n, 201, "application/json", "{}");
    }

    pub(crate) fn reject_next_pat(&self, n: u32) {
        let _ = self
            .reject_pat
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| {
                Some(k.saturating_add(n))
            });
    }

    /// Consumes one pending PAT rejection, if any.
    pub(crate) fn take_pat_rejection(&self) -> bool {
        self.reject_pat
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1))
            .is_ok()
    }

    fn push_canned(&self, endpoint: Endpoint, n: u32, canned: Canned) {
        if n > 0 {
            lock(&self.knobs)[endpoint.index()]
                .canned
                .push_back((n, canned));
        }
    }

    fn record(&self, endpoint: Endpoint, request: RecordedRequest) {
        self.counts[endpoint.index()].fetch_add(1, Ordering::SeqCst);
        lock(&self.recorded)[endpoint.index()].push(request);
    }

    fn take_close(&self, endpoint: Endpoint) -> bool {
        let mut knobs = lock(&self.knobs);
        let knob = &mut knobs[endpoint.index()];
        if knob.down {
            return true;
        }
        if knob.close_next > 0 {
            knob.close_next -= 1;
            return true;
        }
        false
    }

    fn latency(&self, endpoint: Endpoint) -> Duration {
        lock(&self.knobs)[endpoint.index()].latency
    }

    fn take_canned(&self, endpoint: Endpoint) -> Option<Canned> {
        let mut knobs = lock(&self.knobs);
        let queue = &mut knobs[endpoint.index()].canned;
        let (left, canned) = queue.front_mut()?;
        let answer = canned.clone();
        *left -= 1;
        if *left == 0 {
            queue.pop_front();
        }
        Some(answer)
    }
}

/// The middleware in front of every endpoint (see the module docs for the order of knobs).
pub(crate) async fn fault_layer(
    State((shared, endpoint)): State<(Arc<Shared>, Endpoint)>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let bytes = to_bytes(body, MAX_BODY).await;
    shared.faults.record(
        endpoint,
        RecordedRequest {
            method: parts.method.as_str().to_owned(),
            uri,
            headers,
            body: bytes.as_ref().map(|b| b.to_vec()).unwrap_or_default(),
        },
    );
    let Ok(bytes) = bytes else {
        tracing::debug!(?endpoint, "request body too large or unreadable");
        return OAuthError::invalid_request(format!(
            "the request body could not be read or exceeds {MAX_BODY} bytes"
        ))
        .into_response();
    };

    if shared.faults.take_close(endpoint) {
        tracing::debug!(?endpoint, "closing the connection (fault knob)");
        if let Some(ConnectInfo(conn)) = parts.extensions.get::<ConnectInfo<ConnKill>>() {
            conn.kill();
        }
        // Never reaches the client: the connection fails before hyper writes it.
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "temporarily_unavailable"}),
        );
    }

    let latency = shared.faults.latency(endpoint);
    if !latency.is_zero() {
        let mut stopping = shared.stopping();
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    }

    if let Some(canned) = shared.faults.take_canned(endpoint) {
        tracing::debug!(?endpoint, status = %canned.status, "canned answer (fault knob)");
        return canned.into_response();
    }

    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_answers_are_served_in_order_and_counted_down() {
        let faults = Faults::default();
        faults.fail_next(Endpoint::Token, 2, 503);
        faults.respond_next(Endpoint::Token, 1, 200, "text/plain", "hi");
        let statuses: Vec<_> = std::iter::from_fn(|| faults.take_canned(Endpoint::Token))
            .map(|c| c.status.as_u16())
            .collect();
        assert_eq!(statuses, [503, 503, 200]);
        assert!(faults.take_canned(Endpoint::Permission).is_none());
    }

    #[test]
    fn close_and_pat_rejection_counters() {
        let faults = Faults::default();
        faults.close_next(Endpoint::Jwks, 1);
        assert!(faults.take_close(Endpoint::Jwks));
        assert!(!faults.take_close(Endpoint::Jwks));
        faults.set_down(Endpoint::Jwks, true);
        assert!(faults.take_close(Endpoint::Jwks));
        assert!(faults.take_close(Endpoint::Jwks));
        faults.reject_next_pat(1);
        assert!(faults.take_pat_rejection());
        assert!(!faults.take_pat_rejection());
    }
}
