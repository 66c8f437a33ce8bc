//! The upstream behind the proxy: answers `200 ok` to everything and checks, for every request
//! it receives, that the proxy had the right to forward it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use http::StatusCode;
use http::header::AUTHORIZATION;

use crate::report::Check;
use crate::tokens::Class;
use crate::{BoxError, Run};

/// Starts the upstream on a loopback port.
pub(crate) async fn start(run: Arc<Run>) -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().fallback(receive).with_state(run);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

async fn receive(State(run): State<Arc<Run>>, req: Request) -> StatusCode {
    let now = run.now_ms();
    let path = req.uri().path();
    if path.starts_with("/public/") {
        run.report.forwarded_public();
        return StatusCode::OK;
    }
    let problem = if path.starts_with("/albums/") {
        protected_problem(&run, &req, now)
    } else {
        Some(format!(
            "a request for the unmapped path {path} was forwarded"
        ))
    };
    match problem {
        None => run.report.forwarded_protected(),
        Some(problem) => run.report.violation(Check::Forwarded, problem),
    }
    StatusCode::OK
}

/// Why a request for the album should not have been forwarded, if it should not.
fn protected_problem(run: &Run, req: &Request, now: u64) -> Option<String> {
    let Some(token) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Some("a request without an RPT was forwarded".to_owned());
    };
    let Some(slot) = run.tokens.find(token) else {
        return Some("a token the AS never issued was forwarded".to_owned());
    };
    if slot.class == Class::WrongScope {
        return Some("an RPT without the `view` scope was forwarded".to_owned());
    }
    if let Some(revoked) = slot.revoked_ms()
        && now.saturating_sub(revoked) > run.revoke_bound_ms
    {
        return Some(format!(
            "an RPT revoked {:.1} s earlier was forwarded (bound {:.1} s)",
            (now - revoked) as f64 / 1e3,
            run.revoke_bound_ms as f64 / 1e3
        ));
    }
    let permissions = req
        .headers()
        .get("x-uma-permissions")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !permissions.contains(&run.resource_id) || !permissions.contains("\"view\"") {
        return Some(format!(
            "forwarded with X-Uma-Permissions {permissions:?}, not the album's `view`"
        ));
    }
    None
}
