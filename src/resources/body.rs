//! [`ClaimBodyLayer`]: bounded JSON request bodies for claims pushed from the body.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING,
};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tower_layer::Layer;
use tower_service::Service;

use super::{Resolved, ResourceMap};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What [`ClaimBodyLayer`] leaves in a request's extensions: that it saw the request, and the
/// JSON document of its body, if the body is JSON.
#[derive(Clone, Debug)]
pub(crate) struct BodyRead(pub(crate) Option<Arc<serde_json::Value>>);

/// What [`ClaimBodyLayer`] leaves in the extensions of a request whose body it passes on
/// unread: whether that body is known to be empty (the layer decides such a request of a
/// route that reads the body from it, see [`unusable_body`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unread {
    pub(crate) empty: bool,
}

/// Reads JSON request bodies, within a size bound, so that routes can push claims from their
/// fields (`{request.body['/pointer']}`, see [`PushedClaims`]).
///
/// [`UmaLayer`](crate::UmaLayer) never reads bodies: it needs only the request's head, and
/// its inner service gets the body untouched. A route whose claims read the body needs the
/// body before the decision, so this layer, put *outside* the [`UmaLayer`](crate::UmaLayer),
/// buffers it: for a request whose `Content-Type` is JSON (`application/json`, or any
/// `…/…+json`), it reads the whole body (at most the limit), parses it, leaves the parsed
/// document in the request's extensions for the layer, and hands the inner service a body
/// of exactly the same bytes. Other requests pass through unread. With
/// [`only_for`](Self::only_for), only requests whose route reads the body are read: the others,
/// JSON or not, keep their body streamed and unbounded.
///
/// | request | answer |
/// |---|---|
/// | JSON content type, body within the limit and valid JSON | through, the same bytes, the document read by the claims |
/// | JSON content type, empty body | through; claims from the body have no value |
/// | JSON content type, body over the limit (by `Content-Length` or as it arrives) | `413 Payload Too Large`, before the [`UmaLayer`](crate::UmaLayer) sees it |
/// | JSON content type, body not JSON, a key twice in one object, or not readable to its end | `400 Bad Request` |
/// | JSON content type, body not complete within the [read timeout](Self::read_timeout) (30 s by default) | `408 Request Timeout` |
/// | two `Content-Type` headers, one of them JSON | `400 Bad Request` |
/// | JSON content type, with a `Content-Encoding` other than `identity` or a `charset` other than `utf-8` | through unread; the [`UmaLayer`](crate::UmaLayer) refuses it with `415` on a route that reads the body |
/// | another content type, or none | through unread; on a route that reads the body the [`UmaLayer`](crate::UmaLayer) refuses it with `415` unless the body is empty, which this layer tells it |
///
/// A key that appears twice in one object is refused because parsers disagree on which value
/// counts: the claim could say one amount while the handler reads another. So is a key that
/// differs from another of its object only in case (`amount`, `AMOUNT`), as Unicode folds
/// it (`ſ` is `s`, the Kelvin sign is `k`): Go's `encoding/json` and ASP.NET match keys
/// case-insensitively.
///
/// The claims must mean what the handler will parse. On a route whose claims read the body,
/// the [`UmaLayer`](crate::UmaLayer) therefore refuses with `415 Unsupported Media Type` (RFC
/// 9110 §15.5.16), before asking the AS:
///
/// - a `Content-Encoding` other than `identity` (RFC 9110 §8.4): frameworks decompress the
///   body (Express's body-parser: gzip, deflate and br, which has no magic bytes) while the
///   claims would read the compressed bytes;
/// - a JSON content type whose `charset` is not `utf-8` (any case, quoted or not): JSON
///   exchanged between systems is UTF-8 (RFC 8259 §8.1), but body-parser decodes `utf-7` and
///   `utf-16`, and UTF-7 text can hide a second `"amount"` that UTF-8 reads as a string;
/// - a body that is not labelled JSON (another content type, or none) and is not empty: it
///   would push no claim, and many handlers parse it as JSON whatever its type. This layer
///   tells the [`UmaLayer`](crate::UmaLayer) whether such a body it passes on is empty (the
///   body ends at once, without being read); without it, an HTTP/1 request with neither
///   `Content-Length` nor `Transfer-Encoding` is empty, and an HTTP/2 one without
///   `Content-Length: 0` is not.
///
/// Numbers beyond 64-bit integers are pushed as JSON floating-point text
/// (`1.2345678901234568e22`): send such values as strings.
///
/// A route that pushes claims from the body, reached by a JSON request that did not pass
/// through a [`ClaimBodyLayer`], is refused with `500` (and an error in the log): its claims
/// cannot be computed, and deciding without them could grant what a policy on them refuses.
///
/// Like [`RefusalBodyLayer`](crate::refusal::RefusalBodyLayer), it needs a request body that it
/// can rebuild from [`Bytes`] (`From<Bytes>`; axum's `Body` is), which is why it is a layer of
/// its own and not a setting of the [`UmaLayer`](crate::UmaLayer).
///
/// # Example
///
/// ```
/// use axum::{Router, routing::post};
/// use tower_uma::resources::ClaimBodyLayer;
///
/// # fn app(uma: tower_uma::UmaLayer) -> Router {
/// Router::new()
///     .route("/transfers", post(|body: String| async move { body }))
///     .layer(uma)
///     // Outside the UMA layer (axum's last `.layer` is the outermost): 64 KiB at most.
///     .layer(ClaimBodyLayer::new(64 * 1024))
/// # }
/// ```
///
/// [`PushedClaims`]: super::PushedClaims
#[derive(Clone, Debug)]
pub struct ClaimBodyLayer {
    settings: Arc<Settings>,
}

#[derive(Debug)]
struct Settings {
    limit: usize,
    timeout: Duration,
    /// With [`ClaimBodyLayer::only_for`]: the map whose body-reading routes are read.
    map: Option<ResourceMap>,
}

impl ClaimBodyLayer {
    /// A layer that reads JSON bodies of at most `limit` bytes and refuses longer ones (`413`).
    pub fn new(limit: usize) -> Self {
        Self {
            settings: Arc::new(Settings {
                limit,
                timeout: Duration::from_secs(30),
                map: None,
            }),
        }
    }

    /// How long the whole body may take to arrive (`408` after that); 30 s by default.
    #[must_use]
    pub fn read_timeout(self, timeout: Duration) -> Self {
        self.with(|s| s.timeout = timeout)
    }

    /// Reads only the requests whose route in `map` (the layer's map) pushes claims from the
    /// body (for a request with a method override, the route of the method it names, as the
    /// layer decides it with `MethodOverride::Decide`); every other request keeps its body
    /// streamed, whatever its size or type.
    #[must_use]
    pub fn only_for(self, map: &ResourceMap) -> Self {
        let map = map.clone();
        self.with(|s| s.map = Some(map))
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Arc::unwrap_or_clone(self.settings);
        change(&mut settings);
        Self {
            settings: Arc::new(settings),
        }
    }
}

impl Clone for Settings {
    fn clone(&self) -> Self {
        Self {
            limit: self.limit,
            timeout: self.timeout,
            map: self.map.clone(),
        }
    }
}

impl<S> Layer<S> for ClaimBodyLayer {
    type Service = ClaimBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClaimBody {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

/// The service of [`ClaimBodyLayer`].
#[derive(Clone, Debug)]
pub struct ClaimBody<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl Settings {
    /// Whether the body of this JSON request is to be read.
    fn reads<B>(&self, req: &Request<B>) -> bool {
        let Some(map) = &self.map else {
            return true;
        };
        // With a method override the layer decides the request as the method it names
        // (`MethodOverride::Decide`), or refuses it (`Refuse`, or signals it cannot use):
        // the body is read when that method's route reads it.
        let overridden;
        let method = if crate::method_override::has_signal(req.headers(), req.uri()) {
            match crate::method_override::overridden_method(req.headers(), req.uri()) {
                Ok(method) => {
                    overridden = method;
                    &overridden
                }
                Err(_) => return false,
            }
        } else {
            req.method()
        };
        // A request whose path does not resolve is left to the layer, which refuses it.
        matches!(
            map.resolve_raw(method, req.uri().path(), req.headers()),
            Ok(Resolved::Protected(need)) if need.claims.as_ref().is_some_and(|p| p.claims.reads_body())
        )
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ClaimBody<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Not JSON, JSON this layer cannot read as the upstream would (compressed, or in
        // another charset than UTF-8), or a route that does not read the body: untouched. For
        // a route that reads the body, the layer refuses such a request (see
        // `unusable_body`), knowing from here whether its body is empty.
        if !is_json(req.headers())
            || unreadable_json(req.headers()).is_some()
            || !self.settings.reads(&req)
        {
            let body = req.body();
            let empty = body.is_end_stream() || body.size_hint().exact() == Some(0);
            req.extensions_mut().insert(Unread { empty });
            return Box::pin(self.inner.call(req));
        }
        if req.headers().get_all(CONTENT_TYPE).iter().count() > 1 {
            tracing::debug!("two Content-Type headers on a JSON request: 400");
            return Box::pin(async { Ok(refused(StatusCode::BAD_REQUEST)) });
        }
        // The ready service goes into the future; this one keeps a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (limit, timeout) = (self.settings.limit, self.settings.timeout);
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let read = tokio::time::timeout(timeout, read(&parts.headers, body, limit));
            let bytes = match read.await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(status)) => return Ok(refused(status)),
                Err(_) => {
                    tracing::debug!("the JSON request body did not arrive in time: 408");
                    return Ok(refused(StatusCode::REQUEST_TIMEOUT));
                }
            };
            let document = if bytes.is_empty() {
                None
            } else {
                match parse_unique(&bytes) {
                    Ok(document) => Some(Arc::new(document)),
                    Err(e) => {
                        tracing::debug!(error = %e, "the JSON request body is refused: 400");
                        return Ok(refused(StatusCode::BAD_REQUEST));
                    }
                }
            };
            parts.extensions.insert(BodyRead(document));
            inner
                .call(Request::from_parts(parts, ReqBody::from(bytes)))
                .await
        })
    }
}

/// `bytes` as one JSON document, refusing an object that has a key twice.
fn parse_unique(bytes: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    use serde::de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Unique.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Builds a [`serde_json::Value`] like its own `Deserialize`, but refuses duplicate keys.
struct Unique;

impl<'de> serde::de::DeserializeSeed<'de> for Unique {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Unique {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        serde_json::Number::from_f64(v)
            .map(serde_json::Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Self)? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        // The folded forms (see `folded`) of the keys that are not their own folded form;
        // the others are the object's keys themselves.
        let mut folds = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let twice = match folded(&key) {
                Cow::Borrowed(same) => object.contains_key(same) || folds.contains(same),
                Cow::Owned(fold) => object.contains_key(&fold) || !folds.insert(fold),
            };
            if twice {
                return Err(serde::de::Error::custom(
                    "a key appears twice in one object (perhaps in another case)",
                ));
            }
            let value = map.next_value_seed(Self)?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// `key` as parsers that match object keys case-insensitively see it: Go's `encoding/json`
/// folds case (and reads `ſ` U+017F as `s`, the Kelvin sign U+212A as `k`), and so do
/// ASP.NET's web defaults. Lower-, upper- then lower-casing folds every such pair (`ß` and
/// `ẞ` too, which upper-casing alone keeps apart); ASCII keys, the usual case, are only
/// lower-cased.
fn folded(key: &str) -> Cow<'_, str> {
    if key.is_ascii() {
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            key.to_ascii_lowercase().into()
        } else {
            key.into()
        }
    } else {
        key.to_lowercase().to_uppercase().to_lowercase().into()
    }
}

/// The body, whole: `413` when it is (or announces itself) longer than `limit`, `400` when
/// it cannot be read to its end.
async fn read<B>(headers: &HeaderMap, body: B, limit: usize) -> Result<Bytes, StatusCode>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => {
            tracing::debug!(error = %e, "the request body could not be read: 400");
            Err(StatusCode::BAD_REQUEST)
        }
    }
}

/// Whether the request says its body is JSON: some `Content-Type` header is
/// `application/json` or a `+json` type, any parameters (whatever bytes they hold), any case.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_TYPE).iter().any(|value| {
        let bytes = value.as_bytes();
        let essence = bytes
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii()
            .to_ascii_lowercase();
        let Some(slash) = essence.iter().position(|&b| b == b'/') else {
            return false;
        };
        let (kind, sub) = (&essence[..slash], &essence[slash + 1..]);
        kind == b"application" && (sub == b"json" || sub.ends_with(b"+json"))
    })
}

/// Why the body of `req`, a request of a route that pushes claims from its JSON body, cannot
/// be read so that the claims mean what the upstream will read (the layer then refuses it
/// with `415 Unsupported Media Type`, RFC 9110 §15.5.16), or `None` when it can:
///
/// - a `Content-Encoding` other than `identity` (RFC 9110 §8.4): the claims would be read
///   from the encoded bytes, while frameworks (Express's body-parser with gzip, deflate or
///   br, which has no magic bytes to tell it apart) decode it first;
/// - a JSON content type with a `charset` other than UTF-8, the only encoding of JSON
///   exchanged between systems (RFC 8259 §8.1): body-parser decodes `utf-7` or `utf-16`
///   bytes, which read as one document in UTF-8 and as another once decoded;
/// - a body that is not labelled JSON (no `Content-Type`, or another type) and is not known
///   to be empty: it would give the claims no value, while many handlers parse it as JSON
///   whatever its type.
pub(crate) fn unusable_body<B>(req: &Request<B>) -> Option<&'static str> {
    let headers = req.headers();
    if is_json(headers) {
        unreadable_json(headers)
    } else if encoded(headers) {
        Some("a Content-Encoding other than identity")
    } else if body_known_empty(req) {
        None
    } else {
        Some("a body not labelled JSON")
    }
}

/// Why a JSON request cannot be read as its upstream reads it: an encoding or a charset.
fn unreadable_json(headers: &HeaderMap) -> Option<&'static str> {
    if encoded(headers) {
        Some("a Content-Encoding other than identity")
    } else if !utf8_only(headers) {
        Some("a charset other than UTF-8")
    } else {
        None
    }
}

/// Whether a `Content-Encoding` header names a coding other than `identity`.
fn encoded(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|coding| {
            let coding = coding.trim_ascii();
            !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity")
        })
    })
}

/// Whether every `charset` parameter of every `Content-Type` is `utf-8` (any case, quoted or
/// not). Parameters are split at every `;`, even within a quoted string: a `charset` that
/// one parser would read inside a quoted value is refused too, not skipped.
fn utf8_only(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_TYPE).iter().all(|value| {
        value.as_bytes().split(|&b| b == b';').skip(1).all(|param| {
            let (name, value) = match param.iter().position(|&b| b == b'=') {
                Some(eq) => (&param[..eq], &param[eq + 1..]),
                None => (param, &b""[..]),
            };
            if !name.trim_ascii().eq_ignore_ascii_case(b"charset") {
                return true;
            }
            let value = value.trim_ascii();
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            value.eq_ignore_ascii_case(b"utf-8")
        })
    })
}

/// Whether the body of `req` is known to be empty: as the [`ClaimBodyLayer`] that passed it
/// on unread saw it, or else from its head: no `Transfer-Encoding`, and `Content-Length: 0`
/// or, in HTTP/1 (RFC 9112 §6.3), no `Content-Length` at all. An HTTP/2 or HTTP/3 request
/// without `Content-Length` may have a body: not known empty without the layer.
fn body_known_empty<B>(req: &Request<B>) -> bool {
    if let Some(unread) = req.extensions().get::<Unread>() {
        return unread.empty;
    }
    let headers = req.headers();
    if headers.contains_key(TRANSFER_ENCODING) {
        return false;
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter().peekable();
    if lengths.peek().is_none() {
        return req.version() <= Version::HTTP_11;
    }
    lengths.all(|v| v.as_bytes().trim_ascii() == b"0")
}

/// The layer's own answer: `status`, an empty body, `Cache-Control: no-store`.
fn refused<R: Default>(status: StatusCode) -> Response<R> {
    let mut resp = Response::new(R::default());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        h
    }

    #[test]
    fn json_content_types_are_recognised() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
            " application/json ",
        ] {
            assert!(is_json(&headers(yes)), "{yes}");
        }
        for no in [
            "text/plain",
            "application/jsonp",
            "text/json",
            "multipart/form-data; boundary=x",
            "application",
        ] {
            assert!(!is_json(&headers(no)), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
        // Parameters do not change the type, whatever bytes they hold (the charset is
        // checked apart, by `unusable_body`).
        let mut odd = HeaderMap::new();
        odd.insert(
            CONTENT_TYPE,
            HeaderValue::from_bytes(b"application/json; x=\"\xff\"").unwrap(),
        );
        assert!(is_json(&odd));
        // Any of several Content-Type headers.
        let mut two = headers("text/plain");
        two.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(is_json(&two));
    }

    fn request(version: Version, pairs: &[(&'static str, &[u8])]) -> Request<()> {
        let mut req = Request::new(());
        *req.version_mut() = version;
        for (name, value) in pairs {
            let value = HeaderValue::from_bytes(value).unwrap();
            req.headers_mut().append(*name, value);
        }
        req
    }

    #[test]
    fn json_is_read_in_utf8_alone_and_uncompressed() {
        let json = |ct: &str| request(Version::HTTP_11, &[("content-type", ct.as_bytes())]);
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json;CHARSET=\"UTF-8\"",
            "application/json; x=y",
        ] {
            assert_eq!(unusable_body(&json(ok)), None, "{ok}");
        }
        for no in [
            "application/json; charset=utf-7",
            "application/json; charset=\"utf-16\"",
            "application/json; charset =utf8",
            "application/json; charset",
            "application/json; charset=\"utf-8",
            "application/json; charset=utf-8; charset=latin1",
            "application/json; x=\"; charset=utf-7\"",
        ] {
            assert!(unusable_body(&json(no)).is_some(), "{no}");
        }
        let mut odd = json("application/json");
        odd.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_bytes(b"application/json; charset=\xffutf-8").unwrap(),
        );
        assert!(unusable_body(&odd).is_some());
        for coding in ["gzip", "br", "identity, gzip", "x-gzip"] {
            let mut req = json("application/json");
            req.headers_mut()
                .insert(CONTENT_ENCODING, HeaderValue::from_str(coding).unwrap());
            assert!(unusable_body(&req).is_some(), "{coding}");
        }
        let mut req = json("application/json");
        req.headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("Identity"));
        assert_eq!(unusable_body(&req), None);
    }

    #[test]
    fn a_body_not_labelled_json_is_usable_only_when_known_empty() {
        let text: &[u8] = b"text/plain";
        for empty in [
            request(Version::HTTP_11, &[]),
            request(Version::HTTP_10, &[("content-type", text)]),
            request(Version::HTTP_2, &[("content-length", b"0")]),
        ] {
            assert_eq!(unusable_body(&empty), None, "{empty:?}");
        }
        for full in [
            request(Version::HTTP_11, &[("content-length", b"2")]),
            request(
                Version::HTTP_11,
                &[("content-length", b"0"), ("content-length", b"2")],
            ),
            request(Version::HTTP_11, &[("transfer-encoding", b"chunked")]),
            request(Version::HTTP_2, &[("content-type", text)]),
        ] {
            assert!(unusable_body(&full).is_some(), "{full:?}");
        }
        // A ClaimBodyLayer that passed the request on knows, whatever the head says.
        let mut seen = request(Version::HTTP_2, &[]);
        seen.extensions_mut().insert(Unread { empty: true });
        assert_eq!(unusable_body(&seen), None);
        let mut seen = request(Version::HTTP_11, &[]);
        seen.extensions_mut().insert(Unread { empty: false });
        assert!(unusable_body(&seen).is_some());
    }

    #[test]
    fn a_key_twice_in_one_object_is_refused() {
        let ok = parse_unique(br#"{"a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}], "d": null}"#)
            .unwrap();
        assert_eq!(
            ok,
            serde_json::json!({"a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}], "d": null})
        );
        for twice in [
            r#"{"amount": 1, "amount": 1000000}"#,
            r#"{"to": {"iban": "A", "iban": "B"}}"#,
            r#"[{"x": true, "x": false}]"#,
            // Go's encoding/json and ASP.NET match keys case-insensitively.
            r#"{"amount": 1, "AMOUNT": 1000000}"#,
            r#"{"AMOUNT": 1, "amount": 1000000}"#,
            r#"{"Amount": 1, "aMOUNT": 1000000}"#,
            r#"{"AMOUNT": 1, "AMOUNT": 1000000}"#,
            // Go folds U+017F (long s) to s and U+212A (Kelvin sign) to k.
            "{\"mask\": 1, \"ma\u{17f}k\": 2}",
            "{\"ma\u{17f}k\": 1, \"MASK\": 2}",
            "{\"kind\": 1, \"\u{212a}ind\": 2}",
            "{\"\u{212a}ind\": 1, \"KIND\": 2}",
            "{\"\u{e9}t\u{e9}\": 1, \"\u{c9}T\u{c9}\": 2}",
            // Go folds U+00DF (sharp s) and U+1E9E (capital sharp s), which upper-casing
            // alone keeps apart.
            "{\"stra\u{df}e\": 1, \"STRA\u{1e9e}E\": 2}",
        ] {
            assert!(parse_unique(twice.as_bytes()).is_err(), "{twice}");
        }
        // Keys that differ other than in case are distinct.
        assert!(
            parse_unique(
                "{\"a\": 1, \"b\": 2, \"A1\": 3, \"a_\": 4, \"\u{e9}\": 5, \"e\": 6}".as_bytes()
            )
            .is_ok()
        );
        assert!(parse_unique(b"{} {}").is_err());
        assert!(parse_unique(b"{\"a\": ").is_err());
        assert_eq!(parse_unique(b"1.5e3").unwrap(), serde_json::json!(1500.0));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_whether_announced_or_not() {
        let body = http_body_util::Full::new(Bytes::from_static(b"[1,2,3]"));
        assert_eq!(
            read(&HeaderMap::new(), body.clone(), 7).await,
            Ok(Bytes::from_static(b"[1,2,3]"))
        );
        assert_eq!(
            read(&HeaderMap::new(), body.clone(), 6).await,
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        );
        let mut announced = HeaderMap::new();
        announced.insert(CONTENT_LENGTH, HeaderValue::from_static("100"));
        assert_eq!(
            read(&announced, body, 50).await,
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }
}
