//! Whom the proxy believes: the peers whose forwarding headers it keeps
//! ([`TrustedProxies`], `trusted_proxies`) and the host names it answers for
//! ([`AllowedHosts`] and the [`HostCheck`] service, `allowed_hosts`).
//!
//! A client that reaches the proxy directly could otherwise pose as a proxy in front of it
//! (`X-Forwarded-For: 10.0.0.1`, `X-Forwarded-Proto: https`, `Forwarded: for=…`) or send a
//! `Host` the upstream builds links or tenant choices from. The forwarding service removes
//! the forwarding headers of any peer not in `trusted_proxies` (see the
//! [`forward`](crate::forward) module), and [`HostCheck`] answers `421 Misdirected Request`
//! (RFC 9110 §15.5.20) to requests for a host not in `allowed_hosts`, and `400` to requests
//! with several `Host` lines (RFC 9112 §3.2), before the UMA layer spends an AS call on them.
//!
//! # Example
//!
//! ```
//! use uma_proxy::trust::{AllowedHosts, TrustedProxies};
//!
//! let trusted = TrustedProxies::parse(["10.0.0.0/8", "fd00::/8", "192.0.2.7"])?;
//! assert!(trusted.contains("10.1.2.3".parse().unwrap()));
//! assert!(trusted.contains("::ffff:192.0.2.7".parse().unwrap()));
//! assert!(!trusted.contains("192.0.2.8".parse().unwrap()));
//!
//! let hosts = AllowedHosts::parse(["api.example.com", "admin.example.com:8443"])?;
//! assert!(hosts.allows("API.example.com:8080"));
//! assert!(hosts.allows("admin.example.com:8443"));
//! assert!(!hosts.allows("admin.example.com"));
//! assert!(!hosts.allows("evil.example"));
//! # Ok::<(), String>(())
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::uri::Authority;
use http::{Request, Response, StatusCode, header};
use tower_service::Service;

use crate::forward::{ProxyBody, error_response};

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `fd00::/8`; a bare address
/// is a single host).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDRESS[/PREFIX]`, IPv4 or IPv6. An IPv4-mapped IPv6 network
    /// (`::ffff:10.0.0.0/104`) is read as the IPv4 network it carries (`10.0.0.0/8`).
    ///
    /// # Errors
    ///
    /// A message saying what is wrong: not an address, a prefix too long for the address
    /// family, or bits set after the prefix (`10.0.0.1/8`: did you mean `10.0.0.0/8`?).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| {
            format!("{text:?} is not an IP address or network (e.g. \"10.0.0.0/8\", \"::1\")")
        })?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        // Peers are matched in their IPv4 form (see `contains`), so an IPv4-mapped network
        // (`::ffff:10.0.0.0/104`) is the IPv4 network it carries (`10.0.0.0/8`).
        let (network, prefix) = match network.to_canonical() {
            IpAddr::V4(v4) if network.is_ipv6() && prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
            _ => (network, prefix),
        };
        let cidr = Self { network, prefix };
        if cidr.masked(network) != network {
            return Err(format!(
                "{text:?} has bits set after the /{prefix} prefix; did you mean \"{}/{prefix}\"?",
                cidr.masked(network)
            ));
        }
        Ok(cidr)
    }

    /// `ip` with the bits after the prefix cleared.
    fn masked(self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::from((u32::from(v4) & mask).to_be_bytes())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::from((u128::from(v6) & mask).to_be_bytes())
            }
        }
    }

    /// Whether `ip` is in the network. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are
    /// read as the IPv4 address they carry.
    #[must_use]
    pub fn contains(self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && self.masked(ip) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({self})")
    }
}

/// The peers whose forwarding headers (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`) the proxy
/// keeps (`trusted_proxies`). Empty by default: every client's are removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses a list of networks (see [`Cidr::parse`]).
    ///
    /// # Errors
    ///
    /// The first entry's message.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        entries
            .into_iter()
            .map(Cidr::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Loopback only: `127.0.0.0/8` and `::1` (the default of `trusted_forwarders`).
    #[must_use]
    pub fn loopback() -> Self {
        Self::parse(["127.0.0.0/8", "::1/128"]).unwrap_or_default()
    }

    /// The list from networks already parsed.
    #[must_use]
    pub fn new(networks: Vec<Cidr>) -> Self {
        Self(networks)
    }

    /// Whether `ip` is in one of the networks.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// Whether the list is empty (nobody is trusted).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The host and port of a `HOST[:PORT]` authority; `None` for user info, an empty host, a
/// port that is not a number, or anything that is not an authority.
fn host_port(text: &str) -> Option<(String, Option<u16>)> {
    let authority: Authority = text.parse().ok()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    let host = authority.host();
    let port = match authority.as_str().get(host.len()..)? {
        "" => None,
        rest => {
            let digits = rest.strip_prefix(':')?;
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse::<u16>().ok()?)
        }
    };
    Some((host.to_ascii_lowercase(), port))
}

/// One `allowed_hosts` entry: a host name or IP literal, with or without a port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPattern {
    /// Lower case; IPv6 literals keep their brackets.
    host: String,
    /// `None`: any port (or none).
    port: Option<u16>,
}

/// The host names the proxy answers for (`allowed_hosts`); see [`HostCheck`].
///
/// An entry without a port (`api.example.com`) allows that host on any port, and without
/// one; an entry with a port (`api.example.com:8443`) allows exactly that port. Names are
/// compared without regard to letter case, and nothing else: no wildcards, and a trailing dot
/// (`api.example.com.`) is another name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHosts(Vec<HostPattern>);

impl AllowedHosts {
    /// Parses a list of `HOST[:PORT]` entries.
    ///
    /// # Errors
    ///
    /// A message naming the first entry that is not a `HOST[:PORT]` authority (user info,
    /// a path, an empty host), or the empty list.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let patterns = entries
            .into_iter()
            .map(|text| {
                let (host, port) = host_port(text).ok_or_else(|| {
                    format!(
                        "{text:?} is not a host name with an optional port \
                         (e.g. \"api.example.com\" or \"api.example.com:8443\")"
                    )
                })?;
                Ok(HostPattern { host, port })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if patterns.is_empty() {
            return Err("the list is empty: leave the key out to answer for every host".to_owned());
        }
        Ok(Self(patterns))
    }

    /// Whether `authority` (a `Host` value, `HOST[:PORT]`) is allowed.
    #[must_use]
    pub fn allows(&self, authority: &str) -> bool {
        let Some((host, port)) = host_port(authority) else {
            return false;
        };
        self.0
            .iter()
            .any(|p| p.host == host && p.port.is_none_or(|w| port == Some(w)))
    }

    /// Whether some entry allows host `host` (no port) on some port: a `[[tenants]]` host
    /// without a port takes requests for it on any port.
    #[must_use]
    pub fn allows_name(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.0.iter().any(|p| p.host == host)
    }

    /// Whether a request is for an allowed host: its `Host` header (every one, and at least
    /// one unless the target is in absolute form) and its absolute-form authority, if any.
    fn admits<B>(&self, req: &Request<B>) -> bool {
        let hosts = req.headers().get_all(header::HOST);
        let mut seen = false;
        for value in hosts {
            seen = true;
            if !value.to_str().is_ok_and(|v| self.allows(v)) {
                return false;
            }
        }
        match req.uri().authority() {
            Some(target) => self.allows(target.as_str()),
            None => seen,
        }
    }
}

/// A service that answers `400 Bad Request` to requests with several `Host` lines (RFC 9112
/// §3.2: the proxy, its tenant match and the upstream could each read another), `421
/// Misdirected Request` to requests whose `Host` header (or absolute-form target,
/// `GET http://host/ HTTP/1.1`) names a host that [`AllowedHosts`] does not allow, and hands
/// every other request to the inner service. Without a list it hands on every request with at
/// most one `Host` line.
#[derive(Clone, Debug)]
pub struct HostCheck<S> {
    allowed: Option<Arc<AllowedHosts>>,
    inner: S,
}

/// Whether `req` carries more than one `Host` line.
fn several_hosts<B>(req: &Request<B>) -> bool {
    req.headers().get_all(header::HOST).iter().nth(1).is_some()
}

impl<S> HostCheck<S> {
    /// Wraps `inner`; `None` allows every host (requests with several `Host` lines are refused
    /// all the same).
    pub fn new(allowed: Option<AllowedHosts>, inner: S) -> Self {
        Self {
            allowed: allowed.map(Arc::new),
            inner,
        }
    }
}

impl<S, B> Service<Request<B>> for HostCheck<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response<ProxyBody>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if several_hosts(&req) {
            tracing::debug!("refusing a request with several Host lines");
            return Either::Left(ready(Ok(error_response(StatusCode::BAD_REQUEST))));
        }
        if let Some(allowed) = &self.allowed
            && !allowed.admits(&req)
        {
            tracing::debug!(
                host = ?req.headers().get(header::HOST),
                target = ?req.uri().authority().map(Authority::as_str),
                "refusing a request for a host not in allowed_hosts"
            );
            return Either::Left(ready(Ok(error_response(StatusCode::MISDIRECTED_REQUEST))));
        }
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.255.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(
            !c.contains("::a00:1".parse().unwrap()),
            "not IPv4-compatible"
        );
        assert!(
            c.contains("::ffff:10.0.0.1".parse().unwrap()),
            "IPv4-mapped"
        );
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let host = Cidr::parse("::1").unwrap();
        assert_eq!(host.to_string(), "::1/128");
        assert!(host.contains("::1".parse().unwrap()));
        assert!(
            Cidr::parse("::/0")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "localhost",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        let e = Cidr::parse("10.0.0.1/8").unwrap_err();
        assert!(e.contains("\"10.0.0.0/8\""), "{e}");

        // An IPv4-mapped network is the IPv4 network it carries, as peers are.
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(mapped, Cidr::parse("10.0.0.0/8").unwrap());
        assert!(mapped.contains("10.1.2.3".parse().unwrap()));
        assert!(mapped.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
        let host = Cidr::parse("::ffff:192.0.2.7").unwrap();
        assert!(host.contains("192.0.2.7".parse().unwrap()));
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(
            Cidr::parse("::ffff:0:0/96")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert!(Cidr::parse("::ffff:10.0.0.1/104").is_err());
        let wider = Cidr::parse("::/80").unwrap();
        assert!(wider.contains("::1".parse().unwrap()));
        assert!(!wider.contains("10.0.0.1".parse().unwrap()), "not all IPv4");
    }

    #[test]
    fn hosts() {
        let h = AllowedHosts::parse(["api.example.com", "[::1]:8080", "127.0.0.1"]).unwrap();
        assert!(h.allows("api.example.com"));
        assert!(h.allows("API.EXAMPLE.COM:1234"));
        assert!(h.allows("[::1]:8080"));
        assert!(!h.allows("[::1]"));
        assert!(h.allows("127.0.0.1:9"));
        for other in [
            "api.example.com.",
            "example.com",
            "xapi.example.com",
            "u@api.example.com",
            "",
            "api.example.com/x",
            "api.example.com:http",
            "api.example.com:+80",
            "api.example.com:",
            "api.example.com:99999",
        ] {
            assert!(!h.allows(other), "{other}");
        }
        for bad in ["", "u@h", "h/p", "h:port"] {
            assert!(AllowedHosts::parse([bad]).is_err(), "{bad}");
        }
        assert!(AllowedHosts::parse([]).is_err());
    }

    #[test]
    fn requests_need_every_host_allowed() {
        let h = AllowedHosts::parse(["good.test"]).unwrap();
        let req = |uri: &str, hosts: &[&str]| {
            let mut b = Request::get(uri);
            for v in hosts {
                b = b.header(header::HOST, *v);
            }
            b.body(()).unwrap()
        };
        assert!(h.admits(&req("/", &["good.test"])));
        assert!(h.admits(&req("http://good.test/", &[])));
        assert!(!h.admits(&req("/", &[])));
        assert!(!h.admits(&req("/", &["evil.test"])));
        assert!(!h.admits(&req("/", &["good.test", "evil.test"])));
        assert!(!h.admits(&req("http://evil.test/", &["good.test"])));
        assert!(!h.admits(&req("http://good.test/", &["evil.test"])));
        assert!(!several_hosts(&req("/", &["good.test"])));
        assert!(!several_hosts(&req("/", &[])));
        assert!(several_hosts(&req("/", &["good.test", "good.test"])));
    }

    /// Several `Host` lines get `400` (RFC 9112 §3.2), with `allowed_hosts` or without, even
    /// when each line names an allowed host; one line is handed on.
    #[tokio::test]
    async fn several_host_lines_are_refused() {
        use tower::ServiceExt as _;
        let inner = tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(error_response(StatusCode::OK))
        });
        for allowed in [None, Some(AllowedHosts::parse(["good.test"]).unwrap())] {
            let check = HostCheck::new(allowed, inner);
            let mut two = Request::get("/").header(header::HOST, "good.test");
            two = two.header(header::HOST, "good.test");
            let resp = check.clone().oneshot(two.body(()).unwrap()).await.unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            let one = Request::get("/").header(header::HOST, "good.test");
            let resp = check.oneshot(one.body(()).unwrap()).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
    }
}
