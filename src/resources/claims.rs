//! Pushed claims: values taken from the request and sent to the AS with the permission
//! request, so that its policies can decide on them (Keycloak's claim information points,
//! the `claims` provider).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use http::{HeaderMap, HeaderName, Method};

/// The claims a route pushes to the AS, each a name and one or more value templates read
/// from the request.
///
/// A template is literal text, or holds placeholders in Keycloak's syntax:
///
/// | Placeholder | Value |
/// |---|---|
/// | `{request.header['Name']}` | every value of the header (names are case-insensitive) |
/// | `{request.parameter['name']}` | every value of the query parameter, percent-decoded (`+` is a space) |
/// | `{request.path['name']}` | the route's capture `{name}` (a tower-uma addition; Keycloak has none) |
/// | `{request.method}` | the method |
/// | `{request.uri}` | the path and query as received (Keycloak gives the full URL) |
/// | `{request.relativePath}` | the normalised path |
/// | `{request.body['/pointer']}` | the field of the JSON body at that JSON pointer (RFC 6901): a string as it is, a number or boolean as JSON writes it, each of these in an array; needs a [`ClaimBodyLayer`](super::ClaimBodyLayer) outside the layer |
///
/// A template that is one placeholder gives all its values; within text, a placeholder gives
/// its first value. A template whose placeholder has no value gives nothing (so does a
/// `{request.path['name']}` the route's template lacks), and a claim without any value is not
/// sent (as in Keycloak). Other placeholders (`request.body` without a pointer,
/// `request.cookie`, `request.remoteAddr`, `request.secure`, `keycloak.access_token`) are
/// refused, and so are the credential headers `Authorization`, `Proxy-Authorization` and
/// `Cookie`.
///
/// Body fields are read only from requests whose `Content-Type` is JSON, which the
/// [`ClaimBodyLayer`](super::ClaimBodyLayer) has buffered and parsed. On a route whose claims
/// read the body, the layer refuses with `415` a request whose body the claims cannot read
/// as the handler would: compressed, JSON in a charset other than UTF-8, or not labelled
/// JSON and not empty (see [`ClaimBodyLayer`](super::ClaimBodyLayer)); an empty body gives
/// them no value. A JSON request for such a route that no
/// [`ClaimBodyLayer`](super::ClaimBodyLayer) read is refused with `500`.
///
/// A header the templates read must come under that one spelling: a request that also (or
/// only) carries it with `_`, `.` or other punctuation for a `-` (`X_Org` for `X-Org`) is
/// refused with `400`, since CGI-style upstreams (WSGI, Rack, PHP) read all of them as
/// `HTTP_X_ORG`.
///
/// The values travel to the AS with the ticket request (the permission request's `claims`,
/// as Keycloak's permission endpoint reads them) and with a permission exchange
/// (`claim_token`, base64 of their JSON, `claim_token_format` =
/// `urn:ietf:params:oauth:token-type:jwt`, UMA Grant §3.3.1). A permission of a token that
/// carries `claims` (Keycloak writes the claims it decided on into the RPT) grants only a
/// request whose pushed values it holds, claim by claim, and cached exchange answers are kept
/// per set of pushed values.
///
/// # Example
///
/// ```
/// use tower_uma::resources::{PushedClaims, ResourceMap, ResourceRef, Route};
///
/// let claims = PushedClaims::new()
///     .claim("organisation", "{request.header['X-Org']}")?
///     .claim("album", "{request.path['id']}")?;
/// let map = ResourceMap::new().route(
///     Route::new("/albums/{id}")
///         .resource(ResourceRef::Name("albums".to_owned()))
///         .scopes(http::Method::GET, ["view"])
///         .push_claims(claims),
/// );
/// # let _ = map;
/// # Ok::<(), tower_uma::resources::ClaimTemplateError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct PushedClaims {
    claims: Vec<(String, Vec<Template>)>,
}

impl fmt::Debug for PushedClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.claims.iter().map(|(n, t)| (n, t.len())))
            .finish()
    }
}

/// Why a claim template cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimTemplateError {
    template: String,
    reason: String,
}

impl fmt::Display for ClaimTemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.template, self.reason)
    }
}

impl std::error::Error for ClaimTemplateError {}

/// One value template: text and placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Template {
    /// One placeholder and nothing else: all its values.
    Whole(Source),
    /// Text with placeholders, each giving its first value.
    Mixed(Vec<Part>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Source),
}

/// Where a placeholder's values come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Header(String),
    Parameter(String),
    Path(String),
    Method,
    Uri,
    RelativePath,
    /// A JSON pointer into the body.
    Body(String),
}

/// The request as claims read it.
pub(crate) struct ClaimRequest<'a> {
    pub(crate) method: &'a Method,
    /// The path and query as received.
    pub(crate) uri: &'a http::Uri,
    /// The normalised path.
    pub(crate) path: &'a str,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) params: &'a [(String, String)],
    /// The JSON body, when a [`ClaimBodyLayer`](super::ClaimBodyLayer) read one.
    pub(crate) body: Option<&'a serde_json::Value>,
}

/// The pushed values: each claim's name and values, in name order.
pub(crate) type ClaimValues = BTreeMap<String, Vec<String>>;

/// No pushed claims.
pub(crate) static NO_CLAIMS: ClaimValues = ClaimValues::new();

impl PushedClaims {
    /// No claims.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value template to the claim `name` (a claim may have several).
    ///
    /// # Errors
    ///
    /// A [`ClaimTemplateError`] for an empty name, an unclosed or unknown placeholder.
    pub fn claim(
        mut self,
        name: impl Into<String>,
        template: &str,
    ) -> Result<Self, ClaimTemplateError> {
        let name = name.into();
        if name.is_empty() {
            return Err(ClaimTemplateError {
                template: template.to_owned(),
                reason: "the claim's name is empty".to_owned(),
            });
        }
        let parsed = parse(template)?;
        match self.claims.iter_mut().find(|(n, _)| *n == name) {
            Some((_, templates)) => templates.push(parsed),
            None => self.claims.push((name, vec![parsed])),
        }
        Ok(self)
    }

    /// Whether no claim is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// Every placeholder of every template.
    fn sources(&self) -> impl Iterator<Item = &Source> {
        self.claims
            .iter()
            .flat_map(|(_, t)| t)
            .flat_map(|t| match t {
                Template::Whole(s) => std::slice::from_ref(s).iter().collect::<Vec<_>>(),
                Template::Mixed(parts) => parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::Value(s) => Some(s),
                        Part::Text(_) => None,
                    })
                    .collect(),
            })
    }

    /// A header of `headers` that CGI-style upstreams read as one the templates read, under
    /// another spelling: the same name with `_`, `.` or other punctuation for a `-` (or the
    /// other way round). WSGI, Rack and PHP read `X-Org` and `X_Org` both as `HTTP_X_ORG`,
    /// so the claim could say one value while the handler reads the other.
    pub(crate) fn respelled_header<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let claimed = || {
            self.sources().filter_map(|s| match s {
                Source::Header(name) => Some(name.as_str()),
                _ => None,
            })
        };
        // Most header names have only letters, digits and `-`: nothing to compare then.
        let punctuated = |n: &str| n.bytes().any(|b| b != b'-' && !b.is_ascii_alphanumeric());
        if !headers.keys().any(|n| punctuated(n.as_str())) && !claimed().any(punctuated) {
            return None;
        }
        headers
            .keys()
            .map(HeaderName::as_str)
            .find(|&name| claimed().any(|claim| name != claim && same_but_punctuation(name, claim)))
    }

    /// A query parameter the templates read whose value an upstream may read otherwise than
    /// the claim does, by its name as the query spells it (percent-decoded): the name in
    /// another spelling that some frameworks bind to it (ASP.NET matches names in any case,
    /// PHP turns `.` and spaces into `_`, drops leading spaces, ends a name at a NUL byte and
    /// reads `org[]` as `org`), or a pair that splitting the query on `;` as well as `&` (Rack
    /// before 3.0, Python before 3.9.2) reads otherwise: a claimed pair hidden in another's
    /// value (`x=1;org=acme`), or a claimed value holding a `;`.
    pub(crate) fn respelled_parameter(&self, query: Option<&str>) -> Option<String> {
        let query = query.filter(|q| !q.is_empty())?;
        let claimed: Vec<&str> = self
            .sources()
            .filter_map(|s| match s {
                Source::Parameter(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        if claimed.is_empty() {
            return None;
        }
        // The pair's name, percent-decoded (borrowed unless it holds an escape or a `+`).
        fn name(pair: &str) -> Cow<'_, str> {
            let raw = pair.split('=').next().unwrap_or_default();
            url::form_urlencoded::parse(raw.as_bytes())
                .next()
                .map_or(Cow::Borrowed(""), |(name, _)| name)
        }
        // Each pair as `&` and `;` split the query: a respelled name, or a claimed name.
        let mut exact_by_both = 0_usize;
        for pair in query.split(['&', ';']) {
            let name = name(pair);
            let mut exact = false;
            for claim in &claimed {
                if same_parameter(&name, claim) {
                    if *name != **claim {
                        return Some(name.into_owned());
                    }
                    exact = true;
                }
            }
            exact_by_both += usize::from(exact);
        }
        // The same pairs as `&` alone splits the query: a claimed pair whose text holds a `;`,
        // or fewer claimed pairs than the split on both found (one hid in another's value).
        let mut exact_by_ampersand = 0_usize;
        for pair in query.split('&') {
            let name = name(pair);
            if let Some(claim) = claimed.iter().find(|c| **c == &*name) {
                if pair.contains(';') {
                    return Some((*claim).to_owned());
                }
                exact_by_ampersand += 1;
            }
        }
        (exact_by_both != exact_by_ampersand).then(|| claimed[0].to_owned())
    }

    /// The names of the route captures the templates read.
    pub(crate) fn path_names(&self) -> impl Iterator<Item = &str> {
        self.sources().filter_map(|s| match s {
            Source::Path(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether a template reads the request body.
    pub(crate) fn reads_body(&self) -> bool {
        self.sources().any(|s| matches!(s, Source::Body(_)))
    }

    /// Renames the captures the templates read (`rename` gives the new name, if any).
    pub(crate) fn rename_paths(&mut self, rename: impl Fn(&str) -> Option<String>) {
        let fix = |s: &mut Source| {
            if let Source::Path(name) = s
                && let Some(new) = rename(name)
            {
                *name = new;
            }
        };
        for (_, templates) in &mut self.claims {
            for t in templates {
                match t {
                    Template::Whole(s) => fix(s),
                    Template::Mixed(parts) => {
                        for p in parts {
                            if let Part::Value(s) = p {
                                fix(s);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The values for one request.
    pub(crate) fn resolve(&self, req: &ClaimRequest<'_>) -> ClaimValues {
        let mut out = ClaimValues::new();
        for (name, templates) in &self.claims {
            let mut values = Vec::new();
            for t in templates {
                match t {
                    Template::Whole(source) => values.extend(source.values(req)),
                    Template::Mixed(parts) => {
                        let mut text = String::new();
                        let complete = parts.iter().all(|p| match p {
                            Part::Text(t) => {
                                text.push_str(t);
                                true
                            }
                            Part::Value(s) => match s.values(req).into_iter().next() {
                                Some(v) => {
                                    text.push_str(&v);
                                    true
                                }
                                None => false,
                            },
                        });
                        if complete {
                            values.push(text);
                        }
                    }
                }
            }
            if !values.is_empty() {
                out.insert(name.clone(), values);
            }
        }
        out
    }
}

/// A query parameter's name as the frameworks that bind names loosely see it, one character
/// at a time: from its first non-blank character to its first NUL, up to a `[` that a `]`
/// follows (PHP's array syntax, `q[]`, `q[x]`), with `.`, spaces and an unmatched `[` as `_`
/// (PHP), in lower case (ASP.NET).
fn fold_parameter(name: &str) -> impl Iterator<Item = char> + '_ {
    let name = name.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let name = &name[..name.find('\0').unwrap_or(name.len())];
    let name = match name.find('[') {
        Some(i) if name[i + 1..].contains(']') => &name[..i],
        _ => name,
    };
    name.chars().map(|c| match c {
        '.' | ' ' | '[' => '_',
        c => c.to_ascii_lowercase(),
    })
}

/// Whether some framework binds the query parameter names `a` and `b` to one name.
fn same_parameter(a: &str, b: &str) -> bool {
    fold_parameter(a).eq(fold_parameter(b))
}

/// Whether the lower-case header names `a` and `b` are the same but for the punctuation in
/// some places (`x-org`, `x_org`, `x.org`).
fn same_but_punctuation(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(a, b)| a == b || (!a.is_ascii_alphanumeric() && !b.is_ascii_alphanumeric()))
}

impl Source {
    fn values(&self, req: &ClaimRequest<'_>) -> Vec<String> {
        match self {
            Self::Header(name) => req
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_owned)
                .collect(),
            Self::Parameter(name) => req
                .uri
                .query()
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .filter(|(k, _)| k == name)
                        .map(|(_, v)| v.into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            Self::Path(name) => req
                .params
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect(),
            Self::Method => vec![req.method.as_str().to_owned()],
            Self::Uri => vec![
                req.uri
                    .path_and_query()
                    .map_or_else(|| req.uri.path().to_owned(), ToString::to_string),
            ],
            Self::RelativePath => vec![req.path.to_owned()],
            Self::Body(pointer) => match req.body.and_then(|b| b.pointer(pointer)) {
                Some(serde_json::Value::Array(items)) => items.iter().filter_map(scalar).collect(),
                Some(value) => scalar(value).into_iter().collect(),
                None => Vec::new(),
            },
        }
    }
}

/// A JSON string as it is, a number or a boolean as JSON writes it; nothing for `null`, an
/// object or an array.
fn scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse(template: &str) -> Result<Template, ClaimTemplateError> {
    let fail = |reason: &str| ClaimTemplateError {
        template: template.to_owned(),
        reason: reason.to_owned(),
    };
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| fail("a placeholder is not closed with `}`"))?;
        let source = source(&after[..close]).map_err(|why| fail(&why))?;
        parts.push(Part::Value(source));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(match parts.as_slice() {
        [Part::Value(source)] => Template::Whole(source.clone()),
        _ => Template::Mixed(parts),
    })
}

fn source(inner: &str) -> Result<Source, String> {
    let keyed = |prefix: &str| -> Option<Result<String, String>> {
        let rest = inner.strip_prefix(prefix)?;
        let key = rest
            .strip_prefix("['")
            .and_then(|r| r.strip_suffix("']"))
            .filter(|k| !k.is_empty());
        Some(key.map(str::to_owned).ok_or_else(|| {
            format!("`{{{prefix}}}` needs a name in brackets: `{{{prefix}['name']}}`")
        }))
    };
    if let Some(name) = keyed("request.header") {
        let name = name?;
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        // Credentials would travel to the AS and into the exchange cache's keys.
        let secret = [
            http::header::AUTHORIZATION,
            http::header::PROXY_AUTHORIZATION,
            http::header::COOKIE,
        ];
        if secret.contains(&header) {
            return Err(format!(
                "the {header} header carries credentials, which are never pushed to the AS"
            ));
        }
        return Ok(Source::Header(name.to_ascii_lowercase()));
    }
    if let Some(name) = keyed("request.parameter") {
        return name.map(Source::Parameter);
    }
    if let Some(name) = keyed("request.path") {
        return name.map(Source::Path);
    }
    if let Some(pointer) = keyed("request.body") {
        let pointer = pointer.map_err(|_| {
            "`{request.body}` without a JSON pointer is not supported: name a field, as in \
             `{request.body['/field']}`"
                .to_owned()
        })?;
        if !pointer.starts_with('/') {
            return Err(format!(
                "{pointer:?} is not a JSON pointer (RFC 6901): it starts with `/`"
            ));
        }
        return Ok(Source::Body(pointer));
    }
    match inner {
        "request.method" => Ok(Source::Method),
        "request.uri" => Ok(Source::Uri),
        "request.relativePath" => Ok(Source::RelativePath),
        _ => Err(format!(
            "`{{{inner}}}` is not a placeholder tower-uma supports (request.header, \
             request.parameter, request.path, request.method, request.uri, request.relativePath, \
             request.body)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(claims: &PushedClaims, uri: &str, headers: &[(&str, &str)]) -> ClaimValues {
        let uri: http::Uri = uri.parse().expect("a uri");
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("a name"),
                v.parse().expect("a value"),
            );
        }
        let params = [("id".to_owned(), "7".to_owned())];
        let body = serde_json::json!({
            "amount": 120, "currency": "EUR", "urgent": true, "note": null,
            "tags": ["a", 2, {"x": 1}], "to": {"iban": "DE00"}, "a/b": "slash",
        });
        claims.resolve(&ClaimRequest {
            method: &Method::POST,
            uri: &uri,
            path: uri.path(),
            headers: &map,
            params: &params,
            body: Some(&body),
        })
    }

    fn one(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn placeholders_read_the_request() -> Result<(), ClaimTemplateError> {
        let claims = PushedClaims::new()
            .claim("org", "{request.header['X-Org']}")?
            .claim("q", "{request.parameter['q']}")?
            .claim("album", "{request.path['id']}")?
            .claim("what", "{request.method} {request.relativePath}")?
            .claim("uri", "{request.uri}")?
            .claim("fixed", "yes")?
            .claim("fixed", "{request.header['x-missing']}")?
            .claim("missing", "a {request.parameter['nope']}")?;
        let got = values(
            &claims,
            "/albums/7?q=a+b&q=c%2Fd",
            &[("x-org", "acme"), ("X-Org", "beta")],
        );
        assert_eq!(got["org"], one(&["acme", "beta"]));
        assert_eq!(got["q"], one(&["a b", "c/d"]));
        assert_eq!(got["album"], one(&["7"]));
        assert_eq!(got["what"], one(&["POST /albums/7"]));
        assert_eq!(got["uri"], one(&["/albums/7?q=a+b&q=c%2Fd"]));
        assert_eq!(got["fixed"], one(&["yes"]));
        // No value at all: not sent.
        assert!(!got.contains_key("missing"));
        Ok(())
    }

    #[test]
    fn a_claimed_header_under_another_spelling_is_found() -> Result<(), ClaimTemplateError> {
        let claims = PushedClaims::new()
            .claim("org", "a {request.header['X-Org']}")?
            .claim("trace", "{request.header['x_trace']}")?;
        let headers = |names: &[&str]| {
            let mut map = HeaderMap::new();
            for name in names {
                map.append(
                    HeaderName::from_bytes(name.as_bytes()).expect("a name"),
                    "v".parse().expect("a value"),
                );
            }
            map
        };
        for (names, found) in [
            (&["x-org", "x_trace", "accept"][..], None),
            (&["x-trace"], Some("x-trace")),
            (&["x-org", "x_org"], Some("x_org")),
            (&["x.org"], Some("x.org")),
            (&["x_trace", "x-trace"], Some("x-trace")),
            (&["x_orgs", "y_org", "x__org"], None),
        ] {
            assert_eq!(claims.respelled_header(&headers(names)), found, "{names:?}");
        }
        let none = PushedClaims::new().claim("m", "{request.method}")?;
        assert_eq!(none.respelled_header(&headers(&["x_org"])), None);
        Ok(())
    }

    #[test]
    fn a_claimed_parameter_an_upstream_may_read_otherwise_is_found()
    -> Result<(), ClaimTemplateError> {
        let claims = PushedClaims::new()
            .claim("amount", "{request.parameter['amount']}")?
            .claim("org", "x {request.parameter['o_rg']}")?;
        for (query, found) in [
            // As the claims read them: one or several exact pairs, other parameters.
            ("amount=1&o_rg=acme&page=2", None),
            ("amount=1&amount=2", None),
            ("amounts=1&AMOUNTx=2&o_rgs=3&page=a;b", None),
            ("", None),
            // Another case (ASP.NET binds it).
            ("AMOUNT=9000&amount=120", Some("AMOUNT")),
            ("Amount=9000", Some("Amount")),
            // PHP: `.` and spaces for `_`, leading spaces, a NUL, brackets.
            ("o.rg=globex", Some("o.rg")),
            ("o+rg=globex", Some("o rg")),
            ("%20amount=9000", Some(" amount")),
            ("amount%00=9000&amount=1", Some("amount\0")),
            ("amount[]=9000", Some("amount[]")),
            ("amount%5Bx%5D=9000", Some("amount[x]")),
            // An unmatched `[` is a `_` to PHP (`o[rg` is `o_rg`), and so are later ones.
            ("o_rg=acme&o[rg=globex", Some("o[rg")),
            ("o_rg=acme&o%5Brg=globex", Some("o[rg")),
            ("o[rg=globex", Some("o[rg")),
            ("o_rg[]=globex", Some("o_rg[]")),
            ("o[rg]=x", None),
            // Split on `;` too (Rack before 3.0, Python before 3.9.2).
            ("x=1;amount=9000&amount=1", Some("amount")),
            ("amount=1;x=2", Some("amount")),
            ("x=1;AMOUNT=9000", Some("AMOUNT")),
        ] {
            assert_eq!(
                claims.respelled_parameter(Some(query)).as_deref(),
                found,
                "{query:?}"
            );
        }
        assert_eq!(claims.respelled_parameter(None), None);
        let none = PushedClaims::new().claim("m", "{request.header['X-Org']}")?;
        assert_eq!(none.respelled_parameter(Some("AMOUNT=1;x=2")), None);
        Ok(())
    }

    #[test]
    fn body_fields_are_read_by_json_pointer() -> Result<(), ClaimTemplateError> {
        let claims = PushedClaims::new()
            .claim("amount", "{request.body['/amount']}")?
            .claim(
                "line",
                "{request.body['/currency']} {request.body['/amount']}",
            )?
            .claim("urgent", "{request.body['/urgent']}")?
            .claim("tags", "{request.body['/tags']}")?
            .claim("first", "{request.body['/tags/0']}")?
            .claim("iban", "{request.body['/to/iban']}")?
            .claim("escaped", "{request.body['/a~1b']}")?
            .claim("object", "{request.body['/to']}")?
            .claim("null", "{request.body['/note']}")?
            .claim("missing", "{request.body['/nope']}")?;
        assert!(claims.reads_body());
        let got = values(&claims, "/albums/7", &[]);
        assert_eq!(got["amount"], one(&["120"]));
        assert_eq!(got["line"], one(&["EUR 120"]));
        assert_eq!(got["urgent"], one(&["true"]));
        // An array gives its strings, numbers and booleans; objects in it give nothing.
        assert_eq!(got["tags"], one(&["a", "2"]));
        assert_eq!(got["first"], one(&["a"]));
        assert_eq!(got["iban"], one(&["DE00"]));
        assert_eq!(got["escaped"], one(&["slash"]));
        for none in ["object", "null", "missing"] {
            assert!(!got.contains_key(none), "{none}");
        }
        // Without a body (not JSON, or not read): no value.
        let uri: http::Uri = "/albums/7".parse().expect("a uri");
        let without = claims.resolve(&ClaimRequest {
            method: &Method::POST,
            uri: &uri,
            path: "/albums/7",
            headers: &HeaderMap::new(),
            params: &[],
            body: None,
        });
        assert!(without.is_empty());
        let route = |claims: PushedClaims| {
            crate::ResourceMap::new().route(
                crate::Route::new("/t")
                    .resource_id("t")
                    .any_method(["s"])
                    .push_claims(claims),
            )
        };
        assert!(route(claims).reads_body());
        assert!(!route(PushedClaims::new().claim("a", "{request.method}")?).reads_body());
        assert!(!crate::ResourceMap::new().reads_body());
        Ok(())
    }

    #[test]
    fn claims_are_empty_until_one_is_added() -> Result<(), ClaimTemplateError> {
        assert!(PushedClaims::new().is_empty());
        assert!(!PushedClaims::new().claim("org", "acme")?.is_empty());
        Ok(())
    }

    #[test]
    fn debug_shows_each_claims_name_and_template_count_only() -> Result<(), ClaimTemplateError> {
        let claims = PushedClaims::new()
            .claim("org", "{request.header['X-Org']}")?
            .claim("org", "fixed")?
            .claim("album", "{request.path['id']}")?;
        assert_eq!(format!("{claims:?}"), r#"{"org": 2, "album": 1}"#);
        Ok(())
    }

    #[test]
    fn what_cannot_be_read_is_refused() {
        for (template, says) in [
            ("{request.body}", "JSON pointer"),
            ("{request.body['amount']}", "not a JSON pointer"),
            ("{request.bodyx}", "JSON pointer"),
            ("{request.cookie['a']}", "not a placeholder"),
            ("{keycloak.access_token['/sub']}", "not a placeholder"),
            ("{request.header}", "needs a name"),
            ("{request.header['']}", "needs a name"),
            ("{request.header['a b']}", "not a header name"),
            ("{request.header['Authorization']}", "credentials"),
            ("{request.header['cookie']}", "credentials"),
            ("{request.method", "not closed"),
        ] {
            let e = PushedClaims::new()
                .claim("c", template)
                .expect_err(template);
            assert!(e.to_string().contains(says), "{template}: {e}");
        }
        assert!(PushedClaims::new().claim("", "x").is_err());
    }
}
