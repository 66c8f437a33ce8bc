//! The [`Transport`] over reqwest: the only file of the crate that calls reqwest (the
//! builder's `http_client` setter merely hands a `reqwest::Client` over).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::error::Source;
use super::{Failure, Transport};
use crate::error::Error;

/// Sends the layer's AS calls with a `reqwest::Client`.
#[derive(Debug, Clone)]
pub(crate) struct ReqwestTransport {
    client: reqwest::Client,
}

/// What the user does to the layer's `reqwest::ClientBuilder` (the builder's
/// `http_client_builder`): proxies, roots, anything but the redirect policy.
pub(crate) type Configure = dyn Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync;

impl ReqwestTransport {
    /// A transport over `client` (whose timeouts, proxies, roots and redirect policy then
    /// apply; an answer that comes from a followed redirect is refused all the same).
    pub(crate) fn new(client: reqwest::Client) -> Self {
        Self { client }
    }

    /// A transport over a client with these timeouts that follows no redirects.
    ///
    /// # Errors
    ///
    /// A configuration error when a timeout is zero or the TLS backend cannot start.
    pub(crate) fn with_timeouts(connect: Duration, request: Duration) -> Result<Self, Error> {
        Self::configured(connect, request, &|builder| builder)
    }

    /// A transport over a client with these timeouts, then configured by `configure` (which may
    /// change the timeouts), and finally set to follow no redirects, whatever `configure` did.
    ///
    /// # Errors
    ///
    /// A configuration error when a timeout is zero or the client cannot be built (the TLS
    /// backend cannot start, or a setting of `configure` is refused by reqwest).
    pub(crate) fn configured(
        connect: Duration,
        request: Duration,
        configure: &Configure,
    ) -> Result<Self, Error> {
        if connect.is_zero() || request.is_zero() {
            return Err(Error::config(
                "timeouts must be greater than zero; set connect_timeout and request_timeout",
            ));
        }
        let builder = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            .user_agent(concat!("tower-uma/", env!("CARGO_PKG_VERSION")));
        configure(builder)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(Self::new)
            .map_err(|e| Error::config("could not build the HTTP client").with_source(e))
    }

    async fn exchange(
        &self,
        request: http::Request<Bytes>,
        limit: usize,
    ) -> Result<http::Response<Bytes>, Failure> {
        let request = reqwest::Request::try_from(request).map_err(failure)?;
        let asked = request.url().clone();
        let mut answer = self.client.execute(request).await.map_err(failure)?;
        refuse_redirects(&asked, &answer)?;
        let mut out = http::Response::new(Bytes::new());
        *out.status_mut() = answer.status();
        *out.version_mut() = answer.version();
        *out.headers_mut() = std::mem::take(answer.headers_mut());
        *out.body_mut() = read_body(answer, limit).await?;
        Ok(out)
    }
}

/// Refuses an answer that does not come from the URL asked (the client followed a redirect:
/// the request, with whatever token or secret it carried, went to another URL, so its answer
/// is not the AS's) or that is itself a redirect (never followed), as if the AS were
/// unreachable. Logs a warning with both URLs (without their user info, query or fragment).
fn refuse_redirects(asked: &reqwest::Url, answer: &reqwest::Response) -> Result<(), Failure> {
    let status = answer.status();
    let refused = if answer.url() != asked {
        tracing::warn!(
            url = %shown(asked),
            answered_by = %shown(answer.url()),
            status = status.as_u16(),
            "the HTTP client followed a redirect of an authorization server call; its answer is \
             refused. Build the client with reqwest::redirect::Policy::none(), or use \
             UmaLayerBuilder::http_client_builder, which does"
        );
        Redirect::Followed
    } else if status.is_redirection() {
        tracing::warn!(
            url = %shown(asked),
            status = status.as_u16(),
            "an authorization server call was answered with a redirect, which is never \
             followed; configure the endpoint's final URL"
        );
        Redirect::Answered(status.as_u16())
    } else {
        return Ok(());
    };
    Err(Failure::Unreachable(Source::new(refused)))
}

/// `url` without its user info, query and fragment: what a log may show of it.
fn shown(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Why an answer was refused as a redirect: the cause behind its [`Failure::Unreachable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redirect {
    /// The client followed a redirect: the answer comes from another URL.
    Followed,
    /// The AS answered with this redirect status.
    Answered(u16),
}

impl std::fmt::Display for Redirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Followed => f.write_str(
                "the HTTP client followed a redirect (build it with redirect::Policy::none())",
            ),
            Self::Answered(status) => write!(f, "answered a redirect ({status}), not followed"),
        }
    }
}

impl std::error::Error for Redirect {}

impl Transport for ReqwestTransport {
    fn send(
        &self,
        request: http::Request<Bytes>,
        limit: usize,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, Failure>> {
        self.exchange(request, limit).boxed()
    }
}

/// A reqwest error as a failure: a timeout, or the AS unreachable. Its URL is dropped (the
/// message names the endpoint) and it stays in the source chain for its cause (refused, DNS,
/// TLS…).
fn failure(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout(Source::new(e.without_url()))
    } else {
        Failure::Unreachable(Source::new(e.without_url()))
    }
}

/// Reads a whole body of at most `limit` bytes. (Written by hand: http-body-util's `Limited`
/// could count the bytes, but its boxed errors would then have to be downcast to tell a
/// timeout from a broken connection.)
async fn read_body(mut answer: reqwest::Response, limit: usize) -> Result<Bytes, Failure> {
    if answer
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(Failure::TooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = answer.chunk().await.map_err(failure)? {
        if body.len() + chunk.len() > limit {
            return Err(Failure::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transport refuses a body over its limit whether the `Content-Length` says so or the
    /// body arrives in chunks with none, and reads one at the limit. (A loopback server: this
    /// tests reqwest's streaming, not a parser.)
    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        const LIMIT: usize = 64 * 1024;
        let chunked = |n: usize| {
            let chunks = (0..n).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024])));
            axum::body::Body::from_stream(futures_util::stream::iter(chunks))
        };
        let app =
            axum::Router::new()
                .route(
                    "/sized/{n}",
                    axum::routing::get(
                        |axum::extract::Path(n): axum::extract::Path<usize>| async move {
                            vec![b'x'; n]
                        },
                    ),
                )
                .route(
                    "/chunked/{n}",
                    axum::routing::get(
                        move |axum::extract::Path(n): axum::extract::Path<usize>| async move {
                            chunked(n)
                        },
                    ),
                );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        let transport = ReqwestTransport::new(reqwest::Client::new());
        let read = |path: String| {
            let request = super::super::build(
                http::Method::GET,
                &format!("{base}{path}"),
                [],
                Bytes::new(),
            )
            .expect("a request");
            transport.send(request, LIMIT)
        };
        let sized = read(format!("/sized/{LIMIT}")).await.expect("at the limit");
        assert_eq!(sized.body().len(), LIMIT);
        let chunked_ok = read("/chunked/64".to_owned()).await.expect("at the limit");
        assert_eq!(chunked_ok.body().len(), LIMIT);
        assert_eq!(
            read(format!("/sized/{}", LIMIT + 1)).await.map(|_| ()),
            Err(Failure::TooLarge)
        );
        assert_eq!(
            read("/chunked/65".to_owned()).await.map(|_| ()),
            Err(Failure::TooLarge)
        );
    }

    /// A refused connection is `Unreachable`, with reqwest's error (without its URL) as the
    /// next cause.
    #[tokio::test]
    async fn a_refused_connection_is_unreachable_with_its_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = format!("http://{}/token?x=1", listener.local_addr().expect("addr"));
        drop(listener);
        let transport = ReqwestTransport::new(reqwest::Client::new());
        let request =
            super::super::build(http::Method::GET, &dead, [], Bytes::new()).expect("a request");
        let failure = transport.send(request, 1024).await.expect_err("refused");
        let Failure::Unreachable(_) = &failure else {
            panic!("{failure:?}");
        };
        let e = super::super::CallError::new(crate::gate::AsEndpoint::Token, failure);
        let chain = crate::error::Chain(&e).to_string();
        assert!(chain.starts_with("token endpoint unreachable: "), "{chain}");
        assert!(!chain.contains("x=1"), "no URL in the chain: {chain}");
    }

    /// A redirect is refused as if the AS were unreachable: answered (the layer's own client
    /// follows none), or followed by a client of the user's (whose answer comes from another
    /// URL). The cause says which; the logged URLs keep no user info or query.
    #[tokio::test]
    async fn redirects_are_refused_whether_followed_or_not() {
        let app = axum::Router::new()
            .route(
                "/moved",
                axum::routing::post(|| async {
                    (
                        http::StatusCode::TEMPORARY_REDIRECT,
                        [(http::header::LOCATION, "/here")],
                    )
                }),
            )
            .route("/here", axum::routing::post(|| async { "{}" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        let send = |transport: ReqwestTransport| {
            let url = format!("{base}/moved");
            async move {
                let request =
                    super::super::build(http::Method::POST, &url, [], Bytes::from_static(b"x"))
                        .expect("a request");
                let failure = transport.send(request, 1024).await.expect_err("refused");
                let Failure::Unreachable(_) = &failure else {
                    panic!("{failure:?}");
                };
                let e =
                    super::super::CallError::new(crate::gate::AsEndpoint::Introspection, failure);
                crate::error::Chain(&e).to_string()
            }
        };
        let layers =
            ReqwestTransport::with_timeouts(Duration::from_secs(2), Duration::from_secs(5))
                .expect("a client");
        let chain = send(layers).await;
        assert!(
            chain.contains("answered a redirect (307), not followed"),
            "{chain}"
        );
        let following = ReqwestTransport::new(
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("a client"),
        );
        let chain = send(following).await;
        assert!(chain.contains("followed a redirect"), "{chain}");
        let url: reqwest::Url = "https://user:pw@as.test:8443/t?token=x#f"
            .parse()
            .expect("a URL");
        assert_eq!(shown(&url), "https://as.test:8443/t");
    }
}
