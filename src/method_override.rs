//! Method overrides: headers and a query parameter with which a request asks the service
//! behind the layer to run another method than the one on its request line. See
//! [`MethodOverride`] for what is recognised and what the layer does.

use http::header::{HeaderMap, HeaderName};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request};

/// What the layer does with a request that carries a method override.
///
/// Many frameworks honour method overrides: Symfony and Laravel (`X-HTTP-Method-Override`,
/// `_method`), Express's `method-override` (`X-HTTP-Method-Override`, `X-HTTP-Method`,
/// `X-Method-Override`, or a query key), Rails and Rack (`_method`), ASP.NET and several API
/// gateways. Behind such a service, a `POST` the layer authorised under the `POST` rule of a
/// route would run as a `DELETE` that the layer never looked at.
///
/// The signals the layer recognises:
///
/// - the headers `X-HTTP-Method-Override`, `X-HTTP-Method` and `X-Method-Override`, also
///   spelled with `_`, `.` or other punctuation for `-` (CGI-style servers read
///   `X_HTTP_Method` as `HTTP_X_HTTP_METHOD` too, and PHP registers the `HTTP_X.HTTP.METHOD`
///   that Caddy passes on so as well);
/// - a `_method` query parameter, matched on the *decoded* key as frameworks decode it:
///   percent-decoding (`%5Fmethod`, and ASP.NET's `%u005Fmethod`), `+` as a space, then PHP's
///   reading (the name ends at a NUL byte, so `_method%00x` is `_method`; leading spaces
///   dropped, ` ` and `.` read as `_`, `_method[…]` as `_method`), letter case ignored. Pairs
///   are separated by `&` or `;`. The value does not matter for detection;
/// - a query parameter named like one of the headers (`?X-HTTP-Method-Override=DELETE`:
///   ASP.NET MVC reads the header, the form and the query), decoded the same way.
///
/// A `_method` field in the *body* (Rails' and Laravel's HTML forms; Laravel reads it from a
/// JSON body too, and ASP.NET MVC an `X-HTTP-Method-Override` form field) is out of the
/// layer's reach: the layer never reads bodies. A service that honours it must only turn `POST` into
/// methods whose rules are no weaker, or not honour it.
///
/// [`Refuse`](Self::Refuse) (the default) answers any request that carries a signal with
/// `400 Bad Request` ([`Rejection::BadRequest`](crate::Rejection::BadRequest)), whatever the
/// route and the enforcement mode: the check runs before the layer looks at anything else.
/// [`Decide`](Self::Decide) decides on the overridden method and rewrites the request: the
/// signals are removed (see [`strip_method_override`]) and the request's method becomes the
/// overridden one, so the inner service runs exactly what was decided, whether or not it
/// honours overrides. The overridden method must be a method token (RFC 9110 §9.1), not
/// `CONNECT`, and not a case variant of a standard method (`delete`, `Put`: frameworks
/// upper-case the value, so `delete` would run as `DELETE`); when several signals are
/// present, they must name the same method. Anything else is answered with `400`.
///
/// `Decide` needs the layer *around* whatever routes by method: only then does the router
/// route the method the layer rewrote. Added with axum's `Router::layer` (or inside
/// [`UmaRouter`](crate::axum::UmaRouter)), the layer runs after axum chose the handler by the
/// method as sent, so rewriting would decide one method and run another's handler
/// (`DELETE /notes/1?_method=GET` decided as `GET`, run by the `DELETE` handler). With the
/// `axum` feature, the layer refuses with `400` an override that changes the method of a
/// request axum 0.8's router has matched to a route (`MatchedPath`: `Router::layer`,
/// `route_layer`, and, closed rather than open, a layered service mounted with
/// `route_service` or `nest_service` at its exact prefix), and `UmaRouter` refuses `Decide`
/// when it is built. It cannot tell when the method was chosen elsewhere before it: a
/// `MethodRouter::layer` or `Handler::layer` that is not on a route (a fallback, a service
/// served or nested on its own), another major version of axum, another framework. There,
/// keep `Refuse`.
///
/// Why the layer rewrites the method rather than deciding under both rules: once the signal is
/// removed, the inner service can only run the method on the request line, so that line must
/// carry the method the decision was made for. Keeping the signal and requiring both rules
/// instead would leave the choice of method to the inner service, and refuse requests that
/// only the method actually wanted allows.
///
/// # Example
///
/// ```
/// use tower_uma::{UmaLayer, method_override::MethodOverride};
///
/// // HTML forms of this API send `?_method=DELETE`: decide on DELETE, and send DELETE on.
/// let builder = UmaLayer::builder("https://as.example.com", "photo-api", "secret")
///     .method_override(MethodOverride::Decide);
/// # let _ = builder;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MethodOverride {
    /// Answer `400 Bad Request`, whatever the route and the enforcement mode.
    #[default]
    Refuse,
    /// Decide on the overridden method, remove the signals and set the request's method to
    /// the overridden one before the inner service sees it.
    Decide,
}

crate::error::named_setting!(MethodOverride { Refuse => "refuse", Decide => "decide" });

/// The override headers, lower case (as [`HeaderName`] stores them).
const OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether `name` is one of [`OVERRIDE_HEADERS`], however its `-` are spelled (see
/// [`is_override_name`]).
fn is_override_header(name: &HeaderName) -> bool {
    is_override_name(name.as_str().as_bytes())
}

/// Whether the lower-case `name` is one of [`OVERRIDE_HEADERS`], with any `-` possibly
/// spelled with another character that is not a letter or digit: CGI gateways write `-` as
/// `_`, and PHP registers the `.` that Caddy or nginx pass on as `_` too.
fn is_override_name(name: &[u8]) -> bool {
    OVERRIDE_HEADERS.iter().any(|canonical| {
        canonical.len() == name.len()
            && canonical
                .bytes()
                .zip(name)
                .all(|(c, &n)| c == n || (c == b'-' && !n.is_ascii_alphanumeric()))
    })
}

/// The value of hexadecimal `digits` (no sign, no prefix).
fn hex_value(digits: &[u8]) -> Option<u32> {
    digits
        .iter()
        .try_fold(0u32, |v, &d| Some(v * 16 + char::from(d).to_digit(16)?))
}

/// Decodes a query component as the most lenient framework would: `+` as a space, `%XX`,
/// and ASP.NET's `%uXXXX` for ASCII characters (a signal has no others); anything else is
/// kept as it is.
fn form_decode(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let (byte, len) = match b {
            b'+' => (b' ', 1),
            b'%' => match bytes.get(i + 1..i + 3).and_then(hex_value) {
                Some(v) => (u8::try_from(v).unwrap_or(b'%'), 3),
                None => match bytes
                    .get(i + 2..i + 6)
                    .filter(|_| bytes.get(i + 1) == Some(&b'u'))
                    .and_then(hex_value)
                    .and_then(|v| u8::try_from(v).ok())
                    .filter(u8::is_ascii)
                {
                    Some(v) => (v, 6),
                    None => (b'%', 1),
                },
            },
            _ => (b, 1),
        };
        out.push(byte);
        i += len;
    }
    out
}

/// Whether a raw query key asks for another method once decoded as frameworks decode it:
/// `_method` as PHP reads it (up to the first NUL byte, leading spaces dropped, ` ` and `.`
/// read as `_`, `_method[…]` as `_method`), or the name of an override header (ASP.NET MVC
/// reads `X-HTTP-Method-Override` from the query too); letter case ignored.
fn is_method_key(raw: &str) -> bool {
    // Cheap test first: every spelling contains "method" in some letter case, or a `%`.
    let bytes = raw.as_bytes();
    if !bytes.contains(&b'%') && !bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"method")) {
        return false;
    }
    let decoded = form_decode(raw);
    // PHP reads the decoded name as a C string: `_method%00x` is `_method`.
    let decoded = decoded.split(|&b| b == 0).next().unwrap_or_default();
    let start = decoded
        .iter()
        .position(|&b| b != b' ')
        .unwrap_or(decoded.len());
    let key = &decoded[start..];
    let key = key
        .iter()
        .position(|&b| b == b'[')
        .map_or(key, |end| &key[..end]);
    let key: Vec<u8> = key
        .iter()
        .map(|&b| match b {
            b' ' | b'.' => b'_',
            b => b.to_ascii_lowercase(),
        })
        .collect();
    key == b"_method" || is_override_name(&key)
}

/// The query's segments (split on `&` and `;`), each with the separator before it (`None`
/// for the first).
fn segments(query: &str) -> impl Iterator<Item = (Option<char>, &str)> {
    let mut rest = Some(query);
    let mut sep = None;
    std::iter::from_fn(move || {
        let text = rest?;
        let this_sep = sep;
        match text.find(['&', ';']) {
            Some(i) => {
                sep = text[i..].chars().next();
                rest = Some(&text[i + 1..]);
                Some((this_sep, &text[..i]))
            }
            None => {
                rest = None;
                Some((this_sep, text))
            }
        }
    })
}

/// The raw values of the query's `_method` pairs (empty for a key without `=`).
fn method_values(query: &str) -> impl Iterator<Item = &str> {
    segments(query).filter_map(|(_, segment)| {
        let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
        is_method_key(key).then_some(value)
    })
}

/// Whether the request carries any method-override signal.
pub(crate) fn has_signal(headers: &HeaderMap, uri: &Uri) -> bool {
    headers.keys().any(is_override_header)
        || uri
            .query()
            .is_some_and(|q| method_values(q).next().is_some())
}

/// The method an override value names, or why it cannot be used.
fn override_method(value: &[u8]) -> Result<Method, &'static str> {
    let method = Method::from_bytes(value)
        .map_err(|_| "the method override is not a method (RFC 9110 §9.1 token)")?;
    if crate::resources::is_case_variant(&method, &[]) {
        return Err("the method override is a case variant of a standard method");
    }
    if method == Method::CONNECT {
        return Err("a request cannot be overridden to CONNECT");
    }
    Ok(method)
}

/// The one method every signal of the request names.
pub(crate) fn overridden_method(headers: &HeaderMap, uri: &Uri) -> Result<Method, &'static str> {
    let from_headers = headers
        .iter()
        .filter(|(name, _)| is_override_header(name))
        .map(|(_, value)| override_method(value.as_bytes()));
    let from_query = uri
        .query()
        .into_iter()
        .flat_map(method_values)
        .map(|value| override_method(&form_decode(value)));
    let mut chosen: Option<Method> = None;
    for method in from_headers.chain(from_query) {
        let method = method?;
        match &chosen {
            Some(c) if *c != method => {
                return Err("the method-override signals name different methods");
            }
            Some(_) => {}
            None => chosen = Some(method),
        }
    }
    chosen.ok_or("no method override")
}

/// Removes every method-override signal from `req`: the `X-HTTP-Method-Override`,
/// `X-HTTP-Method` and `X-Method-Override` headers (also spelled with `_`, `.` or other punctuation for `-`) and every
/// query pair whose decoded key is `_method` or one of those names (the rest of the query is
/// kept byte for byte, and an emptied query is removed with its `?`). The method is left alone.
/// Returns whether there was a signal. See [`MethodOverride`] for which keys count.
///
/// [`UmaLayer`](crate::UmaLayer) does this itself with [`MethodOverride::Decide`]; a proxy
/// can call it to never forward a signal (defence in depth).
///
/// # Errors
///
/// When the rewritten URI cannot be built (not expected: it is the original one with
/// pieces removed); the request may then have lost its headers but not its query.
///
/// # Example
///
/// ```
/// use http::Request;
/// use tower_uma::method_override::strip_method_override;
///
/// let mut req = Request::get("/a?%5Fmethod=PUT").header("X_HTTP_Method", "PUT").body(())?;
/// assert!(strip_method_override(&mut req)?);
/// assert_eq!(req.uri(), "/a");
/// assert!(!strip_method_override(&mut req)?);
/// # Ok::<(), http::Error>(())
/// ```
pub fn strip_method_override<B>(req: &mut Request<B>) -> Result<bool, http::Error> {
    if !has_signal(req.headers(), req.uri()) {
        return Ok(false);
    }
    let names: Vec<HeaderName> = req
        .headers()
        .keys()
        .filter(|n| is_override_header(n))
        .cloned()
        .collect();
    for name in names {
        req.headers_mut().remove(name);
    }
    let Some(query) = req.uri().query() else {
        return Ok(true);
    };
    if method_values(query).next().is_none() {
        return Ok(true);
    }
    let mut kept = String::with_capacity(query.len());
    let mut first = true;
    for (sep, segment) in segments(query) {
        let key = segment.split_once('=').map_or(segment, |(k, _)| k);
        if is_method_key(key) {
            continue;
        }
        if let (false, Some(sep)) = (first, sep) {
            kept.push(sep);
        }
        first = false;
        kept.push_str(segment);
    }
    let path = req.uri().path();
    let pq = if kept.is_empty() {
        PathAndQuery::try_from(path)?
    } else {
        PathAndQuery::try_from(format!("{path}?{kept}"))?
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq);
    *req.uri_mut() = Uri::from_parts(parts)?;
    Ok(true)
}

/// The layer's check, before anything else looks at the request: `Ok` when there is no
/// signal, or (with [`MethodOverride::Decide`]) once the request has been rewritten to the
/// overridden method; `Err(reason)` when it must be refused with `400`.
pub(crate) fn apply<B>(mode: MethodOverride, req: &mut Request<B>) -> Result<(), &'static str> {
    if !has_signal(req.headers(), req.uri()) {
        return Ok(());
    }
    // A refusal is recorded by the pipeline, with the request's outcome.
    match mode {
        MethodOverride::Refuse => Err("the request carries a method override (refused)"),
        MethodOverride::Decide => overridden_method(req.headers(), req.uri()).and_then(|method| {
            if method != *req.method() && routed_by_axum(req) {
                // Once per process: clients choose how often this happens.
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(
                        "a method override reached the layer after axum's router had matched \
                         a route (the layer was added with Router::layer or route_layer, or \
                         the service it wraps was mounted with route_service): overrides that \
                         change the method are refused with 400; put the layer around the \
                         whole router to decide them (logged once)"
                    );
                }
                return Err("the method override came after a router matched a route");
            }
            strip_method_override(req).map_err(|_| "the query cannot be rewritten")?;
            *req.method_mut() = method;
            Ok(())
        }),
    }
}

/// Whether axum's router (0.8) matched a route for the request before the layer runs: it puts
/// [`MatchedPath`](axum::extract::MatchedPath) in the extensions of a request it routed to a
/// route, before the layers added with `Router::layer` or `route_layer` (which wrap each
/// method's handler, chosen by the method and path as sent) run. Rewriting the method there
/// would decide one method and run another's handler; stripping a tenant's path prefix there
/// (`tenant/`) would decide one path while axum serves the route of another. It is also there
/// when the layer wraps a service mounted with `route_service`, or with `nest_service` and
/// requested at the exact prefix: refused too (closed, not open).
#[cfg(feature = "axum")]
pub(crate) fn routed_by_axum<B>(req: &Request<B>) -> bool {
    req.extensions()
        .get::<axum::extract::MatchedPath>()
        .is_some()
}

/// Without the `axum` feature no router is known to have routed the request.
#[cfg(not(feature = "axum"))]
pub(crate) fn routed_by_axum<B>(_: &Request<B>) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn method_keys_are_matched_decoded() {
        for key in [
            "_method",
            "%5Fmethod",
            "%5f%6D%65%74%68%6f%64",
            "_METHOD",
            "_Method",
            "+_method",
            "%20_method",
            ".method",
            "+.method",
            "_method[]",
            "_method[x]",
            "%5Fmethod%5B%5D",
            // PHP reads the decoded name up to its first NUL byte.
            "_method%00",
            "_method%00x",
            "%20_method%00%5B",
            // ASP.NET MVC reads the override header's name as a query key too, and decodes
            // `%uXXXX`.
            "X-HTTP-Method-Override",
            "x-http-method-override",
            "X-HTTP-Method",
            "x-method-override",
            "X-HTTP-Method-%u004Fverride",
            "%u005Fmethod",
        ] {
            assert!(is_method_key(key), "{key}");
        }
        for key in [
            "method",
            "__method",
            "_methods",
            "x_method",
            "_meth",
            "%255Fmethod",
            "%00_method",
            "_method%01",
            "%u05Fmethod",
            "x-http-method-overrides",
            "",
        ] {
            assert!(!is_method_key(key), "{key}");
        }
    }

    #[test]
    fn query_components_are_decoded_leniently() {
        for (raw, decoded) in [
            ("a+b%20c", &b"a b c"[..]),
            ("%5f%5F", b"__"),
            ("%u005F%u004d", b"_M"),
            ("%00", b"\0"),
            ("%FF", b"\xff"),
            ("%u00e9", b"%u00e9"),
            ("%U005F", b"%U005F"),
            ("%u005", b"%u005"),
            ("%u+05F", b"%u 05F"),
            ("%+5F", b"% 5F"),
            ("%", b"%"),
            ("%4", b"%4"),
            ("%ZZ", b"%ZZ"),
            ("%%5F", b"%_"),
        ] {
            assert_eq!(form_decode(raw), decoded, "{raw}");
        }
    }

    #[test]
    fn override_headers_in_any_spelling() {
        for name in [
            "x-http-method-override",
            "X-HTTP-Method",
            "x-method-override",
            "x_http_method_override",
            "X_HTTP-Method",
            "x-method_override",
            // PHP registers `HTTP_X.HTTP.METHOD` (Caddy and nginx pass `.` on) with `_`.
            "x.http.method.override",
            "X-HTTP.Method",
        ] {
            let r = req("POST", "/", &[(name, "DELETE")]);
            assert!(has_signal(r.headers(), r.uri()), "{name}");
        }
        for name in [
            "x-http-method-overrides",
            "x-method",
            "x-http-methodoverride",
        ] {
            let r = req("POST", "/", &[(name, "DELETE")]);
            assert!(!has_signal(r.headers(), r.uri()), "{name}");
        }
    }

    #[test]
    fn the_query_keeps_everything_but_the_method_pairs() {
        for (uri, want) in [
            ("/a?_method=DELETE", "/a"),
            ("/a?x=1&_method=DELETE", "/a?x=1"),
            ("/a?_method=DELETE&x=1", "/a?x=1"),
            ("/a?x=1;_method=PUT&y=%20", "/a?x=1&y=%20"),
            ("/a?x=1;y=2&_method", "/a?x=1;y=2"),
            ("/a?x=1&&%5Fmethod=PUT&y", "/a?x=1&&y"),
            ("http://h.test/a?_method=PUT&z", "http://h.test/a?z"),
        ] {
            let mut r = req("POST", uri, &[]);
            assert!(strip_method_override(&mut r).unwrap(), "{uri}");
            assert_eq!(r.uri(), want, "{uri}");
        }
        let mut r = req("POST", "/a?methodical=1&x=%5F", &[]);
        assert!(!strip_method_override(&mut r).unwrap());
        assert_eq!(r.uri(), "/a?methodical=1&x=%5F");
    }

    #[test]
    fn override_values() {
        assert_eq!(override_method(b"DELETE"), Ok(Method::DELETE));
        assert_eq!(override_method(b"PURGE").unwrap().as_str(), "PURGE");
        for bad in [
            &b"delete"[..],
            b"Put",
            b"gEt",
            b"patch",
            b"",
            b"DE LETE",
            b"DELETE,PUT",
            b"CONNECT",
        ] {
            assert!(override_method(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refuse_leaves_plain_requests_alone() {
        let mut r = req("POST", "/a?x=1", &[("x-other", "1")]);
        assert_eq!(apply(MethodOverride::Refuse, &mut r), Ok(()));
        assert_eq!(r.uri(), "/a?x=1");
        let mut r = req("POST", "/a?_method=DELETE", &[]);
        assert!(apply(MethodOverride::Refuse, &mut r).is_err());
    }

    #[test]
    fn decide_rewrites_to_the_one_method_named() {
        let mut r = req(
            "POST",
            "/a?_method=DELETE&q=1",
            &[
                ("X-HTTP-Method-Override", "DELETE"),
                ("x_method_override", "DELETE"),
            ],
        );
        assert_eq!(apply(MethodOverride::Decide, &mut r), Ok(()));
        assert_eq!(r.method(), Method::DELETE);
        assert_eq!(r.uri(), "/a?q=1");
        assert!(r.headers().is_empty());

        let mut r = req("GET", "/a?_method=PUT", &[("x-http-method", "DELETE")]);
        assert!(apply(MethodOverride::Decide, &mut r).is_err());
        let mut r = req(
            "POST",
            "/a",
            &[("x-http-method", "DELETE"), ("x-http-method", "PUT")],
        );
        assert!(apply(MethodOverride::Decide, &mut r).is_err());
        let mut r = req("POST", "/a?_method=delete", &[]);
        assert!(apply(MethodOverride::Decide, &mut r).is_err());
        let mut r = req("POST", "/a?_method=DE%20LETE", &[]);
        assert!(apply(MethodOverride::Decide, &mut r).is_err());
        let mut r = req("POST", "/a?_method=%44ELETE", &[]);
        assert_eq!(apply(MethodOverride::Decide, &mut r), Ok(()));
        assert_eq!(r.method(), Method::DELETE);
        let mut r = req(
            "POST",
            "/a?_method%00=PUT&X-HTTP-Method-Override=%u0050UT&b",
            &[],
        );
        assert_eq!(apply(MethodOverride::Decide, &mut r), Ok(()));
        assert_eq!(r.method(), Method::PUT);
        assert_eq!(r.uri(), "/a?b");
    }
}
