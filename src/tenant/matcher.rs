//! [`TenantMatch`]: which requests belong to a configured tenant (its `Host`, a path prefix,
//! a header, or the issuer of its JWT RPTs), and the prefix stripping that goes with it.

use http::header::{AUTHORIZATION, HOST};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};

use crate::error::Error;

/// Which requests belong to a tenant of a [`TenantLayer`](super::TenantLayer): every
/// condition set here must hold (a `Host` and a path prefix, say). Set at least one.
///
/// - [`host`](Self::host): the request's host (the `Host` header, or the URI's authority
///   under HTTP/2), compared without letter case; the port is ignored unless the configured
///   host names one. A request with several `Host` lines, or a `Host` (or target authority)
///   that is not `host[:port]` (user info as in `a.test:1@c.test`, an empty or non-numeric
///   port), is refused with `400` whatever the tenants match on (RFC 9112 §3.2); so is an
///   HTTP/1.1 request with no host at all when some tenant matches on the host.
/// - [`path_prefix`](Self::path_prefix): the path as received starts with the prefix, followed
///   by `/` or nothing (`/acme` takes `/acme` and `/acme/albums/1`, not `/acme2`). Compared
///   byte for byte, before any decoding: `/ACME/…` is not `/acme/…`. A prefix holds only
///   unreserved characters (letters, digits, `-`, `.`, `_`, `~`) and `/`. A path that lies under
///   a configured prefix only once normalised (`/%61cme/…`, `//acme/…`) is refused with `400`
///   whatever the other conditions, since another tenant would take it while its inner
///   service may read it as `/acme/…`. With [`strip_prefix`](Self::strip_prefix),
///   the tenant's resource map and the inner service see the path without it (`/acme/albums/1`
///   becomes `/albums/1`, `/acme` becomes `/`).
/// - [`header`](Self::header): a header with exactly this value (only when a proxy in front
///   sets it, and removes the client's: a client can send any header).
/// - [`token_issuer`](Self::token_issuer): the `iss` of the bearer token, when it is a JWT,
///   read **without verifying the token**. It only picks the tenant; that tenant's own
///   checks (introspection at its AS, or local validation against its keys and issuer) then
///   decide, so a forged `iss` gets a token checked by an AS that did not issue it, which
///   refuses it. A token whose `iss` no tenant names (or that is not a JWT, or absent) is
///   unresolved: nothing is fetched for it.
///
/// # Example
///
/// ```
/// use tower_uma::tenant::TenantMatch;
///
/// let by_host = TenantMatch::default().host("acme.api.example.com");
/// let by_prefix = TenantMatch::default().path_prefix("/globex").strip_prefix(true);
/// # let _ = (by_host, by_prefix);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct TenantMatch {
    host: Option<String>,
    path_prefix: Option<String>,
    strip: bool,
    header: Option<(HeaderName, HeaderValue)>,
    issuer: Option<String>,
}

impl TenantMatch {
    /// The request's host must be `host` (no letter case; the port is ignored unless `host`
    /// names one, as in `api.example.com:8443`). `host` must be a `host[:port]`, without a
    /// trailing `.` ([`build`](super::TenantLayerBuilder::build) checks).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into().to_ascii_lowercase());
        self
    }

    /// The request's path must start with `prefix` (`/acme`: a leading `/`, no trailing `/`),
    /// followed by `/` or nothing. See [`strip_prefix`](Self::strip_prefix). The prefix may
    /// hold letters, digits, `-`, `.`, `_`, `~` and `/` only (RFC 3986's unreserved
    /// characters): a reserved one (`+`, `@`, `:`, `!`, …) can be sent escaped (`/b%2Bx`),
    /// a spelling the layer would not find the prefix in, so
    /// [`build`](super::TenantLayerBuilder::build) refuses it.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Whether the path prefix is removed before the tenant's layer and the inner service see
    /// the request. Defaults to `false`: the tenant's resource map then names the prefix.
    pub fn strip_prefix(mut self, strip: bool) -> Self {
        self.strip = strip;
        self
    }

    /// The request must carry header `name` with exactly `value`.
    ///
    /// # Panics
    ///
    /// When `name` is not a valid header name or `value` not a valid header value (both are
    /// written by the programmer, like a route).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a valid header name");
        let value = HeaderValue::from_str(value).expect("a valid header value");
        self.header = Some((name, value));
        self
    }

    /// The bearer token must be a JWT whose (unverified) `iss` is exactly `issuer`.
    pub fn token_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The configured host, if any (for uma-proxy's `--check` and logs).
    #[must_use]
    pub fn host_name(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The configured path prefix, if any.
    #[must_use]
    pub fn prefix(&self) -> Option<&str> {
        self.path_prefix.as_deref()
    }

    /// Whether the path prefix is stripped.
    #[must_use]
    pub fn strips_prefix(&self) -> bool {
        self.strip
    }

    /// Whether every request `later` takes is taken by this match already (each condition set
    /// here holds for `later`'s requests, whatever `strip_prefix` says), so that a tenant
    /// with `later`, tried after this one, would never take a request. `/a` covers `/a` and
    /// `/a/v2`; host `x` covers `x` with a path prefix and `x:8443`.
    #[must_use]
    pub fn covers(&self, later: &Self) -> bool {
        let host = match (&self.host, &later.host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => {
                a == b || ((a.starts_with('[') || !a.contains(':')) && strip_port(b) == a)
            }
        };
        let prefix = match (&self.path_prefix, &later.path_prefix) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => under_prefix(b, a).is_some(),
        };
        host && prefix
            && (self.header.is_none() || self.header == later.header)
            && (self.issuer.is_none() || self.issuer == later.issuer)
    }

    /// Checks the conditions, as [`TenantLayerBuilder::build`](super::TenantLayerBuilder::build)
    /// does for tenant `tenant`: at least one condition, a usable path prefix (`/acme`: a
    /// leading `/`, no trailing `/`, no dot segment, only unreserved characters, RFC 3986
    /// §2.3, and `/`), a `host[:port]` (no user info, a numeric port), `strip_prefix` only
    /// with a prefix.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::error::ErrorKind::Config), saying what to fix.
    pub fn check(&self, tenant: &str) -> Result<(), Error> {
        let none = self.host.is_none()
            && self.path_prefix.is_none()
            && self.header.is_none()
            && self.issuer.is_none();
        if none {
            return Err(Error::config(format!(
                "tenant `{tenant}`: its match names no host, path prefix, header or token issuer, \
                 so it would take every request"
            )));
        }
        if let Some(p) = &self.path_prefix
            && !valid_prefix(p)
        {
            return Err(Error::config(format!(
                "tenant `{tenant}`: the path prefix {p:?} is not one: write it as \"/acme\" (a \
                 leading `/`, no trailing `/`, no dot segment, and only letters, digits, `-`, \
                 `.`, `_`, `~` and `/`: a reserved character such as `+`, `@` or `:` may be sent \
                 escaped, a spelling the prefix is not found in)"
            )));
        }
        if self.strip && self.path_prefix.is_none() {
            return Err(Error::config(format!(
                "tenant `{tenant}`: strip_prefix needs a path_prefix"
            )));
        }
        if let Some(h) = &self.host
            && (!is_host_port(h) || strip_port(h).ends_with('.'))
        {
            return Err(Error::config(format!(
                "tenant `{tenant}`: {h:?} is not a host name with an optional port (write it \
                 as \"api.example.com\" or \"api.example.com:8443\")"
            )));
        }
        if self.issuer.as_deref() == Some("") {
            return Err(Error::config(format!(
                "tenant `{tenant}`: the token issuer is empty"
            )));
        }
        Ok(())
    }

    /// Whether `req` (whose token issuer `issuer` reads, if a condition needs it) meets every
    /// condition.
    #[cfg(test)]
    pub(super) fn matches<B>(&self, req: &Request<B>, issuer: &mut LazyIssuer<'_>) -> bool {
        let host = request_host(req).ok().flatten();
        self.matches_at(req, req.uri().path(), host, issuer)
    }

    /// Whether `req`, whose path is `path` and whose host is `host` (both read once for all
    /// tenants; the host validated by [`request_host`]) and whose token issuer `issuer` reads
    /// if a condition needs it, meets every condition. The issuer is read last, after the
    /// cheaper conditions held.
    #[inline]
    pub(super) fn matches_at<B>(
        &self,
        req: &Request<B>,
        path: &str,
        host: Option<&str>,
        issuer: &mut LazyIssuer<'_>,
    ) -> bool {
        if let Some(want) = &self.host
            && !host_is(host, want)
        {
            return false;
        }
        if let Some(prefix) = &self.path_prefix
            && under_prefix(path, prefix).is_none()
        {
            return false;
        }
        if let Some((name, value)) = &self.header
            && !single_header_is(req.headers(), name, value)
        {
            return false;
        }
        if let Some(want) = &self.issuer
            && issuer.get() != Some(want.as_str())
        {
            return false;
        }
        true
    }

    /// The prefix to strip from a request this match took, if stripping is on.
    #[inline]
    pub(super) fn stripped(&self) -> Option<&str> {
        self.path_prefix.as_deref().filter(|_| self.strip)
    }
}

/// A path prefix as uma-proxy's `path_prefix`: `/x…`, no trailing `/`, no dot segment, and
/// only unreserved characters (RFC 3986 §2.3: letters, digits, `-`, `.`, `_`, `~`) and `/`.
/// A reserved character (`+`, `@`, `:`, `!`, `,`, …) may be sent escaped (`%2B`), which
/// normalisation keeps as it is while a decoding router or upstream reads the character, so
/// the prefix could be reached in a spelling no check recognises.
fn valid_prefix(p: &str) -> bool {
    p.len() >= 2
        && p.starts_with('/')
        && !p.ends_with('/')
        && !p.split('/').any(|s| s == "." || s == "..")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~'))
}

/// The rest of `path` after `prefix` (`""` for the prefix itself), when `path` is under it.
#[inline]
pub(super) fn under_prefix<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Whether `host`, the request's validated `host[:port]` (see [`request_host`]), is `want`
/// (lower case), ignoring the request's port unless `want` names one.
fn host_is(host: Option<&str>, want: &str) -> bool {
    let Some(authority) = host else {
        return false;
    };
    if authority.eq_ignore_ascii_case(want) {
        return true;
    }
    if want.contains(':') && !want.starts_with('[') {
        return false;
    }
    strip_port(authority).eq_ignore_ascii_case(want)
}

/// The request's host (RFC 9112 §3.2, §3.2.2; RFC 9113 §8.3.1): the target's authority
/// (absolute form, HTTP/2's `:authority`) if it has one, else its one `Host` line; `Ok(None)`
/// when it has neither. `Err` (answered `400`) for several `Host` lines, a `Host` or an
/// authority that is not `host[:port]` (user info, an empty or non-numeric port, no host), or
/// a `Host` that differs from the target's authority: the match would read one host, a
/// forwarder or the inner service perhaps another.
#[inline]
pub(super) fn request_host<B>(req: &Request<B>) -> Result<Option<&str>, BadHost> {
    let mut lines = req.headers().get_all(HOST).iter();
    let line = match (lines.next(), lines.next()) {
        (None, _) => None,
        // An empty `Host` is what RFC 9112 §3.2 asks of a client whose target has no
        // authority: no host, as when it is missing.
        (Some(h), None) if h.is_empty() => None,
        (Some(h), None) => Some(h.to_str().map_err(|_| BadHost)?),
        (Some(_), Some(_)) => return Err(BadHost),
    };
    let host = match (req.uri().authority(), line) {
        (Some(target), Some(line)) if !line.eq_ignore_ascii_case(target.as_str()) => {
            return Err(BadHost);
        }
        (Some(target), _) => target.as_str(),
        (None, Some(line)) => line,
        (None, None) => return Ok(None),
    };
    if is_host_port(host) {
        Ok(Some(host))
    } else {
        Err(BadHost)
    }
}

/// A request whose host cannot be read as one `host[:port]` (see [`request_host`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BadHost;

/// Whether `text` is a `host[:port]` authority: a host (a name, an IPv4 address or a bracketed
/// IP literal) and an optional port of 1 to 5 digits up to 65535, with no user info. Plain
/// names (letters, digits, `-`, `.`) are checked in place; anything else is parsed as an
/// [`Authority`](http::uri::Authority), as uma-proxy's `allowed_hosts` reads it.
fn is_host_port(text: &str) -> bool {
    let (host, port) = match text.rfind(':') {
        Some(i) if !text[i..].contains(']') => (&text[..i], Some(&text[i + 1..])),
        _ => (text, None),
    };
    if let Some(port) = port
        && !(port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok())
    {
        // Empty, not digits, or too large (`a.test:`, `a.test:x`, `a.test:1@c.test`).
        return false;
    }
    if host.is_empty() {
        return false;
    }
    if host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
    {
        return true;
    }
    // IP literals and the rarer reg-name characters: what an authority parser reads as a host
    // must be all of `host` (no user info, nothing after it).
    match text.parse::<http::uri::Authority>() {
        Ok(a) => !a.as_str().contains('@') && a.host().len() == host.len(),
        Err(_) => false,
    }
}

/// `host:port` without `:port` (IPv6 literals keep their brackets).
fn strip_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    }
}

/// Whether `headers` hold `name` once, with `value`.
fn single_header_is(headers: &HeaderMap, name: &HeaderName, value: &HeaderValue) -> bool {
    let mut all = headers.get_all(name).iter();
    matches!((all.next(), all.next()), (Some(v), None) if v == value)
}

/// The unverified `iss` of the request's bearer token, when it is a JWT. Only picks the
/// tenant whose own validation then checks the token. Only `iss` is kept from the payload
/// (the other claims are skipped, not built).
pub(super) fn token_issuer(headers: &HeaderMap) -> Option<String> {
    /// The one claim read; a non-string `iss` fails the parse (no issuer).
    #[derive(serde::Deserialize)]
    struct Claims {
        iss: Option<String>,
    }
    let crate::token::Bearer::Token(token) = crate::token::bearer_from_headers(headers) else {
        return None;
    };
    let payload = crate::token::jwt_payload_bytes(token.as_bytes())?;
    serde_json::from_slice::<Claims>(&payload).ok()?.iss
}

/// The request's token issuer, read on first need (once per request, and only when a tenant
/// tried before the one that takes the request has an issuer condition).
pub(super) struct LazyIssuer<'h> {
    headers: &'h HeaderMap,
    read: Option<Option<String>>,
}

impl<'h> LazyIssuer<'h> {
    pub(super) fn new(headers: &'h HeaderMap) -> Self {
        Self {
            headers,
            read: None,
        }
    }

    fn get(&mut self) -> Option<&str> {
        let headers = self.headers;
        self.read
            .get_or_insert_with(|| token_issuer(headers))
            .as_deref()
    }
}

/// Whether `path`, normalised as resource maps read it (empty segments, dot segments and
/// needless escapes gone), lies under one of `prefixes` while the path as received does not:
/// `//globex/…` or `/%67lobex/…` would go to another tenant, whose inner service or upstream
/// may read it as `/globex/…`. Also `true` for a path that cannot be normalised.
///
/// It does not look at `\` or `;`: the layer's normalisation refuses those (a resource map
/// answers `400`), and tenants' prefixes cannot contain them; an upstream that reads `\` as
/// `/` must refuse such paths itself.
#[inline]
pub(super) fn hides_a_prefix<'p>(path: &str, prefixes: impl Iterator<Item = &'p str>) -> bool {
    // Without anything normalisation rewrites, the path as received is the normalised one.
    may_normalise(path) && normalised_hides_a_prefix(path, prefixes)
}

/// [`hides_a_prefix`] for a path that normalisation may rewrite.
#[inline(never)]
fn normalised_hides_a_prefix<'p>(path: &str, mut prefixes: impl Iterator<Item = &'p str>) -> bool {
    let Ok(normal) = crate::resources::normalize_path(path) else {
        return true;
    };
    prefixes.any(|p| under_prefix(normal.as_str(), p).is_some() && under_prefix(path, p).is_none())
}

/// Whether `path` holds something normalisation rewrites: `//`, `/.` or `%`. Runs on every
/// request of a layer with path prefixes, so it reads eight bytes at a time (a byte loop, or
/// three `str::contains`, cost several times more).
fn may_normalise(path: &str) -> bool {
    let bytes = path.as_bytes();
    let n = bytes.len();
    if n < 8 {
        return bytes
            .windows(2)
            .any(|pair| pair[0] == b'/' && matches!(pair[1], b'/' | b'.'))
            || bytes.contains(&b'%');
    }
    let mut words = bytes.chunks_exact(8);
    let mut after_slash = false;
    for word in words.by_ref() {
        let (found, ends_with_slash) = word_may_normalise(word, after_slash);
        if found {
            return true;
        }
        after_slash = ends_with_slash;
    }
    // The last eight bytes hold the rest (the bytes read twice found nothing the first time).
    !words.remainder().is_empty() && word_may_normalise(&bytes[n - 8..], bytes[n - 9] == b'/').0
}

/// [`may_normalise`] for eight bytes, `after_slash` when the byte before them is `/`; also
/// whether their last byte is `/`.
#[inline]
fn word_may_normalise(word: &[u8], after_slash: bool) -> (bool, bool) {
    /// Eight copies of byte `b`.
    const fn splat(b: u8) -> u64 {
        u64::from_le_bytes([b; 8])
    }
    /// The top bit of each byte of `v` that is zero, and nothing else (no carry crosses a
    /// byte: each byte's sum is at most 0xfe).
    fn zero_bytes(v: u64) -> u64 {
        const LOW7: u64 = splat(0x7f);
        !(((v & LOW7) + LOW7) | v | LOW7)
    }
    let mut bytes = [0; 8];
    bytes.copy_from_slice(word);
    // Byte i is byte i of a little-endian word: the byte after it is 8 bits up.
    let word = u64::from_le_bytes(bytes);
    // `.` (0x2e) and `/` (0x2f) differ in the lowest bit only: `/` is the one with it set
    // (moved to the top bit of its byte).
    let slash_or_dot = zero_bytes((word | splat(1)) ^ splat(b'/'));
    let slash = slash_or_dot & (word << 7);
    let percent = zero_bytes(word ^ splat(b'%'));
    let before = (slash << 8) | if after_slash { 0x80 } else { 0 };
    let found = percent != 0 || before & slash_or_dot != 0;
    (found, slash >> 63 != 0)
}

/// Removes `prefix` from `req`'s path (`/acme/x?q` → `/x?q`, `/acme` → `/`); `false` when the
/// path is not under it (nothing removed).
pub(super) fn strip<B>(req: &mut Request<B>, prefix: &str) -> bool {
    let uri = req.uri();
    let Some(rest) = under_prefix(uri.path(), prefix) else {
        return false;
    };
    let path = if rest.is_empty() { "/" } else { rest };
    let rebuilt = match uri.query() {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
        None => PathAndQuery::try_from(path),
    };
    let mut parts = uri.clone().into_parts();
    // The rest of a valid path and query is valid.
    if let Ok(pq) = rebuilt {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
            return true;
        }
    }
    false
}

/// Whether an `Authorization` header is present (for the debug event of unresolved requests).
pub(super) fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(AUTHORIZATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> &'static HeaderMap {
        static EMPTY: std::sync::OnceLock<HeaderMap> = std::sync::OnceLock::new();
        EMPTY.get_or_init(HeaderMap::new)
    }

    fn none() -> LazyIssuer<'static> {
        LazyIssuer::new(empty())
    }

    fn issued(iss: &str) -> LazyIssuer<'static> {
        LazyIssuer {
            headers: empty(),
            read: Some(Some(iss.to_owned())),
        }
    }

    #[test]
    fn the_issuer_is_read_only_when_a_condition_needs_it() {
        let r = req(Some("a.test"), "/x");
        let mut issuer = none();
        assert!(
            TenantMatch::default()
                .host("a.test")
                .matches(&r, &mut issuer)
        );
        let other_host = TenantMatch::default()
            .host("b.test")
            .token_issuer("https://a");
        assert!(!other_host.matches(&r, &mut issuer));
        assert!(issuer.read.is_none(), "not read");
        let by_issuer = TenantMatch::default()
            .host("a.test")
            .token_issuer("https://a");
        assert!(!by_issuer.matches(&r, &mut issuer));
        assert_eq!(issuer.read, Some(None), "read once");
    }

    fn req(host: Option<&str>, uri: &str) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn the_quick_scan_finds_what_normalisation_rewrites() {
        let slow = |p: &str| p.contains("//") || p.contains('%') || p.contains("/.");
        // Every path of up to 9 bytes over `/`, `.`, `%`, `a` (a word ends after 8).
        let alphabet = ['/', '.', '%', 'a'];
        for len in 0..=9 {
            for n in 0..4_usize.pow(len) {
                let path: String = (0..len).map(|i| alphabet[n / 4_usize.pow(i) % 4]).collect();
                assert_eq!(may_normalise(&path), slow(&path), "{path:?}");
            }
        }
        // Each pattern at every place of longer paths, across word boundaries and in the last
        // partial word of every length.
        for part in ["//", "/.", "%", "/a", "./", "a.", "/é/", "é."] {
            for total in 17..=32 {
                for at in 0..=(total - part.len()) {
                    let path = format!(
                        "{}{part}{}",
                        "a".repeat(at),
                        "a".repeat(total - at - part.len())
                    );
                    assert_eq!(may_normalise(&path), slow(&path), "{path:?}");
                }
            }
        }
    }

    #[test]
    fn hosts_match_without_case_and_port() {
        let m = TenantMatch::default().host("Acme.Example.com");
        assert!(m.matches(&req(Some("acme.example.COM"), "/x"), &mut none()));
        assert!(m.matches(&req(Some("acme.example.com:8443"), "/x"), &mut none()));
        assert!(!m.matches(&req(Some("acme.example.com.evil"), "/x"), &mut none()));
        assert!(!m.matches(&req(None, "/x"), &mut none()));
        assert!(m.matches(&req(None, "http://acme.example.com:1/x"), &mut none()));
        let with_port = TenantMatch::default().host("acme.example.com:8443");
        assert!(with_port.matches(&req(Some("acme.example.com:8443"), "/x"), &mut none()));
        assert!(!with_port.matches(&req(Some("acme.example.com"), "/x"), &mut none()));
        let mut two = req(Some("acme.example.com"), "/x");
        two.headers_mut()
            .append(HOST, HeaderValue::from_static("acme.example.com"));
        assert!(!m.matches(&two, &mut none()));
    }

    #[test]
    fn hosts_are_one_host_and_port() {
        for ok in [
            "a.test",
            "A.Test:8443",
            "a.test:1",
            "a.test:65535",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "a_b.test",
        ] {
            assert!(is_host_port(ok), "{ok}");
        }
        for bad in [
            "",
            ":80",
            "a.test:",
            "a.test:x",
            "a.test:+80",
            "a.test:65536",
            "a.test:000080",
            "a.test:1@c.test",
            "a.test:@c.test",
            "u@a.test",
            "a.test/x",
            "a b",
            "[::1]:",
            "[::1]x",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
        let mut two = req(Some("a.test"), "/x");
        two.headers_mut()
            .append(HOST, HeaderValue::from_static("a.test"));
        assert_eq!(request_host(&two), Err(BadHost));
        assert_eq!(request_host(&req(Some("a.test:x"), "/x")), Err(BadHost));
        assert_eq!(request_host(&req(None, "/x")), Ok(None));
        // An empty `Host` (RFC 9112 §3.2) is no host.
        assert_eq!(request_host(&req(Some(""), "/x")), Ok(None));
        assert_eq!(
            request_host(&req(Some(""), "http://a.test/x")),
            Ok(Some("a.test"))
        );
        assert_eq!(
            request_host(&req(Some("A.test:1"), "/x")),
            Ok(Some("A.test:1"))
        );
        assert_eq!(
            request_host(&req(Some("a.TEST"), "http://a.test/x")),
            Ok(Some("a.test"))
        );
        assert_eq!(
            request_host(&req(Some("b.test"), "http://a.test/x")),
            Err(BadHost)
        );
    }

    #[test]
    fn prefixes_end_at_a_segment_and_strip() {
        let m = TenantMatch::default().path_prefix("/acme");
        assert!(m.matches(&req(None, "/acme"), &mut none()));
        assert!(m.matches(&req(None, "/acme/albums/1"), &mut none()));
        assert!(!m.matches(&req(None, "/acme2/albums/1"), &mut none()));
        assert!(!m.matches(&req(None, "/%61cme/albums/1"), &mut none()));
        assert!(!m.matches(&req(None, "//acme/albums/1"), &mut none()));
        let mut r = req(None, "/acme/albums/1?x=1");
        strip(&mut r, "/acme");
        assert_eq!(r.uri(), "/albums/1?x=1");
        let mut r = req(None, "/acme");
        strip(&mut r, "/acme");
        assert_eq!(r.uri(), "/");
    }

    #[test]
    fn a_match_covers_the_narrower_ones_after_it() {
        let m = TenantMatch::default;
        let covered = [
            (
                m().path_prefix("/a"),
                m().path_prefix("/a").strip_prefix(true),
            ),
            (m().path_prefix("/a"), m().path_prefix("/a/v2")),
            (m().host("x.test"), m().host("x.test").path_prefix("/b")),
            (m().host("x.test"), m().host("x.test:8443")),
            (
                m().host("x.test"),
                m().host("x.test").token_issuer("https://as"),
            ),
        ];
        for (a, b) in &covered {
            assert!(a.covers(b), "{a:?} covers {b:?}");
        }
        let apart = [
            (m().path_prefix("/a"), m().path_prefix("/ab")),
            (m().path_prefix("/a/v2"), m().path_prefix("/a")),
            (m().host("x.test:8443"), m().host("x.test")),
            (m().host("x.test").path_prefix("/b"), m().host("x.test")),
            (m().host("x.test"), m().path_prefix("/b")),
            (m().header("x-t", "a"), m().header("x-t", "b")),
        ];
        for (a, b) in &apart {
            assert!(!a.covers(b), "{a:?} does not cover {b:?}");
        }
    }

    #[test]
    fn headers_and_issuers_must_be_exact() {
        let m = TenantMatch::default().header("x-tenant", "acme");
        let mut r = req(None, "/");
        assert!(!m.matches(&r, &mut none()));
        r.headers_mut()
            .insert("x-tenant", HeaderValue::from_static("acme"));
        assert!(m.matches(&r, &mut none()));
        r.headers_mut()
            .append("x-tenant", HeaderValue::from_static("acme"));
        assert!(!m.matches(&r, &mut none()), "two values are not one tenant");
        let m = TenantMatch::default().token_issuer("https://as/realms/a");
        assert!(m.matches(&r, &mut issued("https://as/realms/a")));
        assert!(!m.matches(&r, &mut issued("https://as/realms/b")));
        assert!(!m.matches(&r, &mut none()));
    }

    #[test]
    fn matches_are_validated() {
        assert!(TenantMatch::default().check("t").is_err());
        assert!(
            TenantMatch::default()
                .strip_prefix(true)
                .check("t")
                .is_err()
        );
        for bad in [
            "acme", "/", "/acme/", "/a%2e", "/a/../b", "/a?b", "/b+x", "/a@b", "/a:b", "/a!b",
            "/a,b", "/a;b", "/a=b", "/a$b", "/a&b", "/a'b", "/a(b", "/a*b", "/a\\b", "/é",
        ] {
            let m = TenantMatch::default().path_prefix(bad);
            assert!(m.check("t").is_err(), "{bad}");
        }
        for ok in ["/acme/v1", "/a-b_c.d~e", "/A9"] {
            assert!(
                TenantMatch::default().path_prefix(ok).check("t").is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "a.test:1@c.test",
            "a.test:",
            "a.test:x",
            "u@a.test",
            "a b",
            "",
        ] {
            assert!(
                TenantMatch::default().host(bad).check("t").is_err(),
                "{bad}"
            );
        }
        for ok in ["a.test", "a.test:8443", "[::1]:8080", "127.0.0.1"] {
            assert!(TenantMatch::default().host(ok).check("t").is_ok(), "{ok}");
        }
        assert!(TenantMatch::default().host("a/b").check("t").is_err());
        assert!(TenantMatch::default().host("a.test.").check("t").is_err());
        assert!(TenantMatch::default().token_issuer("").check("t").is_err());
    }

    #[test]
    fn the_issuer_is_read_from_a_jwt_bearer_only() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"iss":"https://a"}"#)
        );
        let mut h = HeaderMap::new();
        assert_eq!(token_issuer(&h), None);
        h.insert(
            AUTHORIZATION,
            format!("Bearer {jwt}").parse().expect("value"),
        );
        assert_eq!(token_issuer(&h).as_deref(), Some("https://a"));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer opaque-token"),
        );
        assert_eq!(token_issuer(&h), None);
        let numeric = format!("{}.{}.sig", b64("{}"), b64(r#"{"iss":1}"#));
        h.insert(
            AUTHORIZATION,
            format!("Bearer {numeric}").parse().expect("value"),
        );
        assert_eq!(token_issuer(&h), None);
    }
}
