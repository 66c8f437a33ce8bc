//! Log hygiene: a whole grant, errors included, logs no token, secret or password.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;
use uma_test_as::Endpoint;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// The default #[tokio::test] runtime is single-threaded, so the server's tasks run on this
// thread and see the thread-local subscriber.
#[tokio::test]
async fn a_whole_grant_logs_no_secrets() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let need_info = json(grant(&auth, &ticket, None, &[]).await).await;
    let next = need_info["ticket"].as_str().unwrap().to_owned();
    let bob = id_token(&auth, BOB).await;
    let rpt = rpt(grant(&auth, &next, Some(&bob), &[]).await).await;
    introspect(&auth, &pat, &rpt).await;
    // Failures log too.
    let _ = grant(&auth, &ticket, Some(&bob), &[]).await;
    let _ = http()
        .post(auth.endpoint_url(Endpoint::Token))
        .basic_auth(RS.0, Some("wrong-secret-value"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let _ = http()
        .post(auth.endpoint_url(Endpoint::Permission))
        .bearer_auth("bogus-pat-value")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    auth.reject_next_pat(1);
    let _ = introspect_status(&auth, &pat, &rpt).await;
    drop(auth);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("uma_test_as"), "the capture works: {logs}");
    for secret in [
        pat.as_str(),
        ticket.as_str(),
        next.as_str(),
        bob.as_str(),
        rpt.as_str(),
        RS.1,
        APP.1,
        BOB.1,
        "wrong-secret-value",
        "bogus-pat-value",
    ] {
        assert!(
            !logs.contains(secret),
            "`{secret}` leaked into the logs:\n{logs}"
        );
    }
}

async fn introspect_status(auth: &uma_test_as::TestAs, pat: &str, token: &str) -> u16 {
    http()
        .post(auth.endpoint_url(Endpoint::Introspection))
        .bearer_auth(pat)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
