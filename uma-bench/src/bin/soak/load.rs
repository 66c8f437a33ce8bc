//! The load: keep-alive connections sending a mix of requests back to back, plus the small
//! one-shot requests of the prober, the scraper and the fault schedule.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, WARNING};
use http::{Method, Request};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;

use crate::report::{Answer, Kind};
use crate::tokens::Slot;
use crate::{BoxError, Run};

/// How long a load request may take before it counts as unanswered.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// The mix, in percent: what each request carries.
const MIX: [(Kind, u32); 7] = [
    (Kind::Valid, 78),
    (Kind::Revoked, 3),
    (Kind::Unknown, 5),
    (Kind::WrongScope, 4),
    (Kind::NoToken, 3),
    (Kind::Public, 4),
    (Kind::Unmapped, 3),
];

/// A token the AS never issued: 43 base64url characters, like its RPTs.
fn unknown_token(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..43)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// The next request: its kind, the RPT's slot if it carries one of ours, path and token.
fn pick(run: &Run, rng: &mut impl Rng) -> (Kind, Option<Arc<Slot>>, String, Option<String>) {
    let mut roll = rng.random_range(0..100);
    let mut kind = Kind::Valid;
    for (k, weight) in MIX {
        if roll < weight {
            kind = k;
            break;
        }
        roll -= weight;
    }
    let album = format!("/albums/{}", rng.random_range(0..1000));
    let slot = match kind {
        Kind::Valid => run.tokens.random_valid(rng),
        Kind::Revoked => run
            .tokens
            .random_revoked(rng)
            .or_else(|| run.tokens.random_valid(rng).inspect(|_| kind = Kind::Valid)),
        Kind::WrongScope => run.tokens.random_wrong_scope(rng),
        _ => None,
    }
    .map(|(_, slot)| slot);
    match kind {
        Kind::Public => (kind, None, "/public/photo".to_owned(), None),
        Kind::Unmapped => (kind, None, "/elsewhere/1".to_owned(), None),
        Kind::NoToken => (kind, None, album, None),
        Kind::Unknown => (kind, None, album, Some(unknown_token(rng))),
        Kind::Valid | Kind::Revoked | Kind::WrongScope => {
            let token = slot.as_ref().map(|s| s.token.clone());
            (kind, slot, album, token)
        }
    }
}

async fn connect<B>(addr: SocketAddr) -> Result<SendRequest<B>, BoxError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request(addr: SocketAddr, path: &str, token: Option<&str>) -> Request<Empty<Bytes>> {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, addr.to_string());
    if let Some(token) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Empty::new()).expect("a valid request")
}

/// One keep-alive connection sending the mix until the run stops; reconnects after an error.
pub(crate) async fn connection(run: Arc<Run>, proxy: SocketAddr) {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
    while !run.stopping() {
        let mut s = match sender.take() {
            Some(s) => s,
            None => match connect(proxy).await {
                Ok(s) => s,
                Err(_) => {
                    let at = (run.phase(), run.now_ms());
                    run.report
                        .answer(&run, Kind::Valid, None, Answer::Failed, at, at);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if s.ready().await.is_err() {
            // The proxy closed this keep-alive connection between two requests.
            continue;
        }
        let (kind, slot, path, token) = pick(&run, &mut rng);
        let req = request(proxy, &path, token.as_deref());
        let sent = (run.phase(), run.now_ms());
        let result = tokio::time::timeout(CLIENT_TIMEOUT, async {
            let resp = s.send_request(req).await?;
            let status = resp.status().as_u16();
            let warning = resp.headers().contains_key(WARNING);
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>((status, warning))
        })
        .await;
        let received = (run.phase(), run.now_ms());
        let answer = match result {
            Ok(Ok((status, warning))) => {
                sender = Some(s);
                Answer::of(status, warning)
            }
            _ => Answer::Failed,
        };
        run.report
            .answer(&run, kind, slot.as_ref(), answer, sent, received);
    }
}

/// One GET on a connection of its own: status and body.
pub(crate) async fn get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), BoxError> {
    tokio::time::timeout(CLIENT_TIMEOUT, async {
        let mut s = connect(addr).await?;
        let resp = s.send_request(request(addr, path, token)).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    })
    .await?
}

/// One form POST without parameters on a connection of its own: the status.
pub(crate) async fn post_empty(addr: SocketAddr, path: &str) -> Result<u16, BoxError> {
    tokio::time::timeout(CLIENT_TIMEOUT, async {
        let mut s = connect(addr).await?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, addr.to_string())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::new()))?;
        let resp = s.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok(status)
    })
    .await?
}

/// Reads `/metrics` every `every` until aborted.
pub(crate) async fn scrape(run: Arc<Run>, admin: SocketAddr, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let ok =
            matches!(get(admin, "/metrics", None).await, Ok((200, body)) if body.contains("uma_"));
        run.report.scrape(ok);
    }
}
