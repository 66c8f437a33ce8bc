//! The introspection response model: RFC 7662 §2.2 plus the UMA `permissions` extension
//! (FedAuthz §5.1.1), tolerant of the shapes real servers send (docs/protocol.md §7.6).
//!
//! # Why it works this way
//!
//! Results live in the cache, one per RPT, so the model is laid out for size rather than
//! exposed as plain `String`/`Vec` fields: the fields are private behind accessors, time
//! claims take 8 bytes instead of 16 (a claim of `0` or less means "absent", so a zero niche
//! is free), lists are boxed slices without spare capacity, `active` lives in the niche of the
//! permission list, and resource ids, scope names, `client_id`s and whole scope lists are
//! `Arc`s shared through bounded interners when parsed (see `intern.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroI64;
use std::sync::Arc;

use serde::Deserialize;
use serde::ser::{SerializeStruct, Serializer};
use serde_json::Value;

use super::intern;

/// The accessors and setters of the NumericDate claims `exp`, `nbf` and `iat`, for the
/// `impl` of a type with `Claim` fields of those names; `$holder` and `$this` name it in the
/// docs.
macro_rules! time_claims {
    ($holder:literal, $this:literal) => {
        #[doc = concat!($holder, " expiry (`exp`), seconds since the epoch.")]
        #[must_use]
        pub fn exp(&self) -> Option<i64> {
            self.exp.get()
        }

        #[doc = concat!($holder, " not-before time (`nbf`), seconds since the epoch.")]
        #[must_use]
        pub fn nbf(&self) -> Option<i64> {
            self.nbf.get()
        }

        #[doc = concat!($holder, " issue time (`iat`), seconds since the epoch.")]
        #[must_use]
        pub fn iat(&self) -> Option<i64> {
            self.iat.get()
        }

        #[doc = concat!("This ", $this, " with its expiry set; `None`, `0` or less means none.")]
        #[must_use]
        pub fn with_exp(mut self, exp: Option<i64>) -> Self {
            self.exp = Claim::new(exp);
            self
        }

        #[doc = concat!("This ", $this, " with its not-before time set; `None`, `0` or less means none.")]
        #[must_use]
        pub fn with_nbf(mut self, nbf: Option<i64>) -> Self {
            self.nbf = Claim::new(nbf);
            self
        }

        #[doc = concat!("This ", $this, " with its issue time set; `None`, `0` or less means none.")]
        #[must_use]
        pub fn with_iat(mut self, iat: Option<i64>) -> Self {
            self.iat = Claim::new(iat);
            self
        }
    };
}

/// A parsed introspection answer (or a locally validated RPT), as the access decision sees it.
///
/// Built from the AS's JSON by [`Introspection::from_json`]. Unknown members are ignored;
/// time claims of `0` (or less) count as absent; each permission accepts the UMA naming
/// (`resource_id`, `resource_scopes`) and Keycloak's (`rsid`, `scopes`), and a permission that
/// carries both is read once.
///
/// Results are kept in the cache, so they are stored compactly and read through accessors.
/// The resource ids, scope names, scope lists and `client_id` of parsed results are shared
/// between results (up to a bounded number of distinct values).
///
/// # Example
///
/// ```
/// use tower_uma::introspect::Introspection;
///
/// let i = Introspection::from_json(
///     br#"{"active": true, "exp": 1767225600, "nbf": 0, "sub": "bob",
///          "permissions": [{"resource_id": "r1", "resource_scopes": ["write", "read"]}]}"#,
/// )?;
/// assert!(i.is_active());
/// assert_eq!(i.exp(), Some(1_767_225_600));
/// assert_eq!(i.nbf(), None, "0 means absent");
/// assert_eq!(i.sub(), Some("bob"));
/// let p = &i.permissions()[0];
/// assert_eq!(p.resource_id(), "r1");
/// assert_eq!(p.resource_scopes().collect::<Vec<_>>(), ["read", "write"]);
/// assert!(p.has_scope("read"));
/// # Ok::<(), tower_uma::introspect::ParseError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Introspection {
    exp: Claim,
    iat: Claim,
    nbf: Claim,
    sub: Option<Box<str>>,
    client_id: Option<Arc<str>>,
    /// `None` when inactive: `active` costs no byte of its own.
    permissions: Option<Box<[Permission]>>,
}

/// One UMA permission: a resource and the scopes granted on it (FedAuthz §5.1.1).
///
/// Serialises as `{"resource_id", "resource_scopes"}` plus `exp`, `nbf` and `iat` when present.
///
/// # Example
///
/// ```
/// use tower_uma::introspect::Permission;
///
/// let p = Permission::new("r1", ["view", "edit"]).with_exp(Some(1_767_225_600));
/// assert_eq!(p.resource_id(), "r1");
/// assert!(p.has_scope("edit") && !p.has_scope("delete"));
/// assert_eq!(p.exp(), Some(1_767_225_600));
/// assert_eq!(
///     serde_json::to_string(&p)?,
///     r#"{"resource_id":"r1","resource_scopes":["view","edit"],"exp":1767225600}"#
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Permission {
    resource_id: Arc<str>,
    resource_scopes: Arc<[Arc<str>]>,
    exp: Claim,
    nbf: Claim,
    iat: Claim,
    /// The claims the permission was granted under (Keycloak's pushed claims), if any.
    claims: Option<Arc<BTreeMap<String, Vec<String>>>>,
}

impl fmt::Debug for Introspection {
    /// Shows `active` rather than how it is stored.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspection")
            .field("active", &self.is_active())
            .field("exp", &self.exp)
            .field("iat", &self.iat)
            .field("nbf", &self.nbf)
            .field("sub", &self.sub)
            .field("client_id", &self.client_id)
            .field("permissions", &self.permissions())
            .finish()
    }
}

/// A NumericDate claim (seconds since the epoch) in 8 bytes: only positive values are stored,
/// since `0` and negative values mean "no constraint" (docs/protocol.md §7.6).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct Claim(Option<NonZeroI64>);

impl Claim {
    /// `secs` when positive, otherwise absent.
    fn new(secs: Option<i64>) -> Self {
        Self(secs.filter(|&s| s > 0).and_then(NonZeroI64::new))
    }

    fn get(self) -> Option<i64> {
        self.0.map(NonZeroI64::get)
    }
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

impl Permission {
    /// A permission for `resource_id` with `scopes` (kept in the order given) and no time
    /// bounds.
    #[must_use]
    pub fn new<I, S>(resource_id: impl Into<Arc<str>>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        Self {
            resource_id: resource_id.into(),
            resource_scopes: scopes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// The registered resource id (`resource_id`, or Keycloak's `rsid`).
    #[must_use]
    pub fn resource_id(&self) -> &str {
        &self.resource_id
    }

    /// The granted scopes (zero or more): sorted and without duplicates when parsed.
    pub fn resource_scopes(
        &self,
    ) -> impl ExactSizeIterator<Item = &str> + DoubleEndedIterator + Clone + '_ {
        self.resource_scopes.iter().map(|s| &**s)
    }

    /// Whether `scope` is among the granted scopes.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.resource_scopes.iter().any(|s| **s == *scope)
    }

    /// The pushed claims the permission was granted under, when the AS wrote them into it
    /// (Keycloak's `claims`: each name and its values). Such a permission grants only
    /// requests whose pushed values it holds (see
    /// [`PushedClaims`](crate::resources::PushedClaims)).
    #[must_use]
    pub fn claims(&self) -> Option<&BTreeMap<String, Vec<String>>> {
        self.claims.as_deref()
    }

    time_claims!("Permission", "permission");
}

impl serde::Serialize for Permission {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let times = [("exp", self.exp), ("nbf", self.nbf), ("iat", self.iat)];
        let present = times.iter().filter(|(_, t)| t.get().is_some()).count();
        let with_claims = usize::from(self.claims.is_some());
        let mut s = serializer.serialize_struct("Permission", 2 + present + with_claims)?;
        s.serialize_field("resource_id", self.resource_id())?;
        s.serialize_field("resource_scopes", &Names(&self.resource_scopes))?;
        match &self.claims {
            Some(claims) => s.serialize_field("claims", &**claims)?,
            None => s.skip_field("claims")?,
        }
        for (name, time) in times {
            match time.get() {
                Some(secs) => s.serialize_field(name, &secs)?,
                None => s.skip_field(name)?,
            }
        }
        s.end()
    }
}

/// Shared names, serialised as a sequence of strings (serde's `Arc` support is opt-in).
struct Names<'a>(&'a [Arc<str>]);

impl serde::Serialize for Names<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|s| &**s))
    }
}

/// Why an introspection body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The body is not a JSON object.
    #[error("introspection response is not a JSON object")]
    NotAnObject,
    /// `active` is missing or not a boolean.
    #[error("introspection response has no boolean `active`")]
    NoActive,
    /// A top-level `exp` or `nbf` (named here) that is neither a number nor a string holding
    /// one. Refused rather than read as "no constraint", so that an unreadable expiry never
    /// becomes "never expires".
    #[error("introspection response has an unreadable `{0}`")]
    BadTimeClaim(&'static str),
}

#[derive(Deserialize)]
struct RawPermission {
    resource_id: Option<Value>,
    rsid: Option<Value>,
    resource_set_id: Option<Value>,
    resource_scopes: Option<Value>,
    scopes: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    claims: Option<Value>,
}

impl Introspection {
    /// Parses an introspection response body.
    ///
    /// # Errors
    ///
    /// [`ParseError`] when the body is not a JSON object with a boolean `active`. Malformed
    /// permissions (no resource id, unreadable time bounds, or scopes that cannot be read)
    /// are dropped rather than failing the whole answer: a permission that cannot be read
    /// grants nothing. Scopes can be read when they are an array of names (strings or
    /// `{"name": "…"}` objects) under `resource_scopes`, `scopes`, or both naming the same
    /// set; a permission with neither, or an empty list, carries no scopes.
    pub fn from_json(body: &[u8]) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| ParseError::NotAnObject)?;
        Self::from_value(&value)
    }

    /// Parses an already decoded JSON value; see [`from_json`](Self::from_json).
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json).
    pub(crate) fn from_value(value: &Value) -> Result<Self, ParseError> {
        let obj = value.as_object().ok_or(ParseError::NotAnObject)?;
        let active = obj
            .get("active")
            .and_then(Value::as_bool)
            .ok_or(ParseError::NoActive)?;
        if !active {
            return Ok(Self::default());
        }
        // A boxed slice: results live in the cache, where spare capacity is memory.
        let permissions: Box<[Permission]> = obj
            .get("permissions")
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(parse_permission).collect())
            .unwrap_or_default();
        Ok(Self {
            exp: expiry(obj.get("exp")).map_err(|BadDate| ParseError::BadTimeClaim("exp"))?,
            iat: informational(obj.get("iat")),
            nbf: not_before(obj.get("nbf")).map_err(|BadDate| ParseError::BadTimeClaim("nbf"))?,
            sub: obj.get("sub").and_then(Value::as_str).map(Box::from),
            client_id: obj
                .get("client_id")
                .and_then(Value::as_str)
                .map(|s| intern::names().intern(s)),
            permissions: Some(permissions),
        })
    }

    /// An inactive result, as `{"active":false}` parses.
    #[must_use]
    pub fn inactive() -> Self {
        Self::default()
    }

    /// An active result with the given permissions and expiry (`None`, `0` or less: none);
    /// handy in tests.
    #[must_use]
    pub fn active(permissions: Vec<Permission>, exp: Option<i64>) -> Self {
        Self {
            exp: Claim::new(exp),
            permissions: Some(permissions.into_boxed_slice()),
            ..Self::default()
        }
    }

    /// This result with its subject set.
    #[must_use]
    pub fn with_sub(mut self, sub: Option<&str>) -> Self {
        self.sub = sub.map(Box::from);
        self
    }

    /// This result with its `client_id` set.
    #[must_use]
    pub fn with_client_id(mut self, client_id: Option<&str>) -> Self {
        self.client_id = client_id.map(Arc::from);
        self
    }

    /// RFC 7662 `active`: whether the token is active. An inactive result carries nothing
    /// else.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.permissions.is_some()
    }

    time_claims!("Token", "result");

    /// The subject (`sub`), usually the requesting party.
    #[must_use]
    pub fn sub(&self) -> Option<&str> {
        self.sub.as_deref()
    }

    /// The client the RPT was issued to (`client_id`).
    #[must_use]
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The UMA permissions the RPT carries. A top-level `scope` is deliberately not read:
    /// it never grants UMA access (FedAuthz §5.1.1, docs/protocol.md §7.6).
    #[must_use]
    pub fn permissions(&self) -> &[Permission] {
        self.permissions.as_deref().unwrap_or_default()
    }

    /// The heap bytes this result holds besides its own struct, counting every string as
    /// if it were its own (shared ones included), for the cache's weigher.
    pub(crate) fn heap_bytes(&self) -> usize {
        let strings = self
            .sub
            .as_deref()
            .map_or(0, str::len)
            .saturating_add(self.client_id.as_deref().map_or(0, arc_str_bytes));
        self.permissions().iter().fold(
            strings.saturating_add(size_of_val::<[Permission]>(self.permissions())),
            |acc, p| acc.saturating_add(p.heap_bytes()),
        )
    }
}

impl Permission {
    /// As [`Introspection::heap_bytes`], for this permission's strings and scope list.
    fn heap_bytes(&self) -> usize {
        self.resource_scopes
            .iter()
            .fold(
                arc_str_bytes(&self.resource_id)
                    .saturating_add(2 * size_of::<usize>())
                    .saturating_add(size_of_val::<[Arc<str>]>(&self.resource_scopes)),
                |acc, s| acc.saturating_add(arc_str_bytes(s)),
            )
            .saturating_add(self.claims.as_deref().map_or(0, |claims| {
                claims
                    .iter()
                    .flat_map(|(k, v)| std::iter::once(k).chain(v))
                    .map(|s| s.len().saturating_add(4 * size_of::<usize>()))
                    .sum()
            }))
    }
}

/// The heap bytes of an `Arc<str>`: its two reference counts and the string.
fn arc_str_bytes(s: &str) -> usize {
    s.len().saturating_add(2 * size_of::<usize>())
}

fn parse_permission(item: &Value) -> Option<Permission> {
    let raw = RawPermission::deserialize(item).ok()?;
    let resource_id = [raw.resource_id, raw.rsid, raw.resource_set_id]
        .into_iter()
        .flatten()
        .find_map(|v| {
            v.as_str()
                .filter(|s| !s.is_empty())
                .map(|s| intern::names().intern(s))
        })?;
    // A permission whose scopes cannot be read grants nothing (it is dropped), rather than
    // being read as "no scopes", which the Keycloak reading would widen to every scope.
    let resource_scopes = permission_scopes(raw.resource_scopes.as_ref(), raw.scopes.as_ref())?;
    // A permission whose time bounds cannot be read grants nothing.
    Some(Permission {
        resource_id,
        resource_scopes,
        exp: expiry(raw.exp.as_ref()).ok()?,
        nbf: not_before(raw.nbf.as_ref()).ok()?,
        iat: informational(raw.iat.as_ref()),
        // Claims that cannot be read: the permission grants nothing.
        claims: match raw.claims {
            None | Some(Value::Null) => None,
            Some(v) => Some(Arc::new(permission_claims(&v)?)),
        },
    })
}

impl Introspection {
    /// This result with the pushed claims of `token`'s own permissions, when `token` is a JWT
    /// whose payload lists permissions with `claims` (Keycloak's RPTs under
    /// `authorization.permissions`): Keycloak's introspection leaves the claims out, and they
    /// only ever narrow what a permission grants. Read only for a result the AS called active
    /// for this very token, which vouches for its payload. A permission of the result takes
    /// the claims of the token's first permission for the same resource that has any.
    pub(crate) fn with_claims_of(mut self, token: &[u8]) -> Self {
        let Some(permissions) = self.permissions.as_mut() else {
            return self;
        };
        let Some(payload) = crate::token::jwt_payload(token) else {
            return self;
        };
        // Where the JWT check reads them: top-level, else under `authorization`.
        let listed = payload
            .get("permissions")
            .filter(|p| p.is_array())
            .or_else(|| {
                payload
                    .get("authorization")
                    .and_then(|a| a.get("permissions"))
            })
            .and_then(Value::as_array);
        let Some(listed) = listed else {
            return self;
        };
        for p in permissions.iter_mut().filter(|p| p.claims.is_none()) {
            let same = listed.iter().filter(|l| {
                ["rsid", "resource_id"]
                    .iter()
                    .any(|k| l.get(*k).and_then(Value::as_str) == Some(p.resource_id()))
            });
            let claims = same.filter_map(|l| l.get("claims")).next();
            if let Some(claims) = claims {
                // Unreadable claims: nothing is known of what they restrict to; none of the
                // request's values can match.
                let read = permission_claims(claims)
                    .unwrap_or_else(|| BTreeMap::from([(String::new(), Vec::new())]));
                p.claims = Some(Arc::new(read));
            }
        }
        self
    }
}

/// A permission's `claims`: an object of names to strings or arrays of strings.
fn permission_claims(value: &Value) -> Option<BTreeMap<String, Vec<String>>> {
    value
        .as_object()?
        .iter()
        .map(|(name, values)| {
            let values = match values {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()?,
                _ => return None,
            };
            Some((name.clone(), values))
        })
        .collect()
}

/// The scopes of one permission, from the UMA naming (`resource_scopes`), Keycloak's
/// (`scopes`), or both; `None` when they cannot be read.
///
/// Only a list that is absent (or `null`) under both names, or genuinely empty, is "no
/// scopes" (which the Keycloak reading takes as every scope of the resource). A list that is
/// not an array, or holds anything but names (strings or `{"name": "…"}` objects), is
/// unreadable; so is a permission whose two lists name different sets, such as an empty
/// `resource_scopes` beside a non-empty `scopes`: none of these can be told apart from a
/// mistake, so the permission grants nothing.
fn permission_scopes(uma: Option<&Value>, keycloak: Option<&Value>) -> Option<Arc<[Arc<str>]>> {
    let names = match (uma.map(scope_names), keycloak.map(scope_names)) {
        (None, None) => Vec::new(),
        (Some(one), None) | (None, Some(one)) => one?,
        (Some(a), Some(b)) => {
            let (a, b) = (a?, b?);
            if a != b {
                return None;
            }
            a
        }
    };
    let list: Vec<Arc<str>> = names
        .into_iter()
        .map(|s| intern::names().intern(s))
        .collect();
    Some(intern::scope_lists().intern(&list))
}

/// The names in a scope list (an array of strings or of `{"name": …}` objects), sorted and
/// without duplicates so that equal sets compare and intern as one list; `None` for anything
/// else, or a list with any item that is not a name.
fn scope_names(v: &Value) -> Option<Vec<&str>> {
    let mut names = v
        .as_array()?
        .iter()
        .map(|s| s.as_str().or_else(|| s.get("name")?.as_str()))
        .collect::<Option<Vec<&str>>>()?;
    names.sort_unstable();
    names.dedup();
    Some(names)
}

/// A time claim that is neither a number nor a string holding one.
struct BadDate;

/// Reads a NumericDate (seconds since the epoch). Absent, `null` and `0` mean "no constraint"
/// (docs/protocol.md §7.6). A number, or a string holding one (some servers quote them), is read
/// with any fraction dropped; anything else is [`BadDate`].
fn numeric_date(v: Option<&Value>) -> Result<Option<i64>, BadDate> {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "a finite f64 saturates to i64, which is what a date that far out means"
    )]
    let whole = |f: f64| f.is_finite().then(|| f.floor() as i64);
    let secs = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().and_then(whole)),
        Some(Value::String(s)) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(whole))
        }
        Some(_) => None,
    };
    secs.map(|secs| (secs != 0).then_some(secs)).ok_or(BadDate)
}

/// An `exp`. One before the epoch has long passed: it is kept as 1 s after the epoch, so that
/// it never reads as "no expiry".
fn expiry(v: Option<&Value>) -> Result<Claim, BadDate> {
    Ok(Claim::new(numeric_date(v)?.map(|secs| secs.max(1))))
}

/// An `nbf`. One before the epoch has passed: no constraint.
fn not_before(v: Option<&Value>) -> Result<Claim, BadDate> {
    Ok(Claim::new(numeric_date(v)?))
}

/// An `iat`, which no decision reads: an unreadable one is simply absent.
fn informational(v: Option<&Value>) -> Claim {
    numeric_date(v).map_or(Claim::default(), Claim::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inactive_is_exactly_inactive() {
        let i = Introspection::from_json(br#"{"active":false,"sub":"x"}"#).expect("parses");
        assert_eq!(i, Introspection::inactive());
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(
            Introspection::from_json(b"<html>"),
            Err(ParseError::NotAnObject)
        );
        assert_eq!(
            Introspection::from_json(b"[]"),
            Err(ParseError::NotAnObject)
        );
        assert_eq!(Introspection::from_json(b"{}"), Err(ParseError::NoActive));
        assert_eq!(
            Introspection::from_json(br#"{"active":"true"}"#),
            Err(ParseError::NoActive)
        );
    }

    #[test]
    fn uma_shape_with_unknown_fields_and_zero_nbf() {
        // FedAuthz §5.1.1, docs/protocol.md §7.2 and §7.6
        let i = Introspection::from_value(&json!({
            "active": true, "exp": 1_767_225_600, "iat": 1_767_222_000, "nbf": 0,
            "sub": "bob", "client_id": "app", "x-extra": {"a": 1}, "scope": "read",
            "permissions": [{"resource_id": "r1", "resource_scopes": ["read", "write"], "exp": 1_767_224_000, "extra": true}]
        }))
        .expect("parses");
        assert!(i.is_active());
        assert_eq!(i.nbf(), None);
        assert_eq!(i.exp(), Some(1_767_225_600));
        assert_eq!(i.iat(), Some(1_767_222_000));
        assert_eq!(i.sub(), Some("bob"));
        assert_eq!(i.client_id(), Some("app"));
        assert_eq!(i.permissions().len(), 1);
        assert_eq!(scopes(&i.permissions()[0]), ["read", "write"]);
        assert_eq!(i.permissions()[0].exp(), Some(1_767_224_000));
    }

    #[test]
    fn keycloak_naming_and_both_namings() {
        // docs/protocol.md §7.3, §11 check 20
        let i = Introspection::from_value(&json!({"active": true, "permissions": [
            {"rsid": "r1", "rsname": "Album", "scopes": ["view"]},
            {"rsid": "r2", "rsname": "Other", "scopes": ["a"], "resource_id": "r2", "resource_scopes": ["a"]},
            {"rsid": "r3", "resource_id": "r3", "resource_scopes": []},
            {"resource_scopes": ["orphan"]}
        ]}))
        .expect("parses");
        assert_eq!(i.permissions().len(), 3);
        assert_eq!(i.permissions()[0], Permission::new("r1", ["view"]));
        assert_eq!(i.permissions()[1], Permission::new("r2", ["a"]));
        assert_eq!(i.permissions()[2].resource_scopes().len(), 0);
    }

    #[test]
    fn scope_objects_are_read() {
        let i = Introspection::from_value(
            &json!({"active": true, "permissions": [{"resource_id": "r", "resource_scopes": [{"name": "b"}, "a", {"name": "a"}]}]}),
        )
        .expect("parses");
        assert_eq!(scopes(&i.permissions()[0]), ["a", "b"]);
    }

    /// A scope list that cannot be read drops its permission, so that the Keycloak reading
    /// ("no scopes" grants every scope) never applies to it; only an absent, `null` or empty
    /// list means "no scopes".
    #[test]
    fn unreadable_scope_lists_drop_the_permission() {
        let kept = |permission: Value| {
            let body = json!({"active": true, "permissions": [permission]});
            let i = Introspection::from_value(&body).expect("parses");
            i.permissions()
                .first()
                .map(|p| p.resource_scopes().map(str::to_owned).collect::<Vec<_>>())
        };
        for unreadable in [
            json!({"rsid": "r", "scopes": "view"}),
            json!({"rsid": "r", "scopes": [{"id": "1"}]}),
            json!({"rsid": "r", "scopes": [{"name": 7}]}),
            json!({"rsid": "r", "scopes": [7]}),
            json!({"rsid": "r", "scopes": ["view", null]}),
            json!({"rsid": "r", "scopes": {"name": "view"}}),
            json!({"rsid": "r", "scopes": true}),
            json!({"resource_id": "r", "resource_scopes": "view"}),
            json!({"resource_id": "r", "resource_scopes": [{"name": "a"}, 3]}),
            json!({"resource_id": "r", "resource_scopes": [], "scopes": ["view"]}),
            json!({"resource_id": "r", "resource_scopes": ["view"], "scopes": []}),
            json!({"resource_id": "r", "resource_scopes": ["view"], "scopes": ["edit"]}),
            json!({"resource_id": "r", "resource_scopes": ["view"], "scopes": "view"}),
            json!({"resource_id": "r", "resource_scopes": 0, "scopes": ["view"]}),
        ] {
            assert_eq!(kept(unreadable.clone()), None, "{unreadable}");
        }
        let none: Vec<String> = Vec::new();
        for empty in [
            json!({"rsid": "r"}),
            json!({"rsid": "r", "scopes": []}),
            json!({"rsid": "r", "scopes": null}),
            json!({"resource_id": "r", "resource_scopes": []}),
            json!({"resource_id": "r", "resource_scopes": null, "scopes": []}),
            json!({"resource_id": "r", "resource_scopes": [], "scopes": []}),
        ] {
            assert_eq!(kept(empty.clone()), Some(none.clone()), "{empty}");
        }
        for both in [
            json!({"resource_id": "r", "resource_scopes": ["b", "a"], "scopes": ["a", "b", "a"]}),
            json!({"resource_id": "r", "resource_scopes": ["a", "b"], "scopes": [{"name": "b"}, "a"]}),
            json!({"resource_id": "r", "resource_scopes": null, "scopes": ["a", "b"]}),
        ] {
            assert_eq!(
                kept(both.clone()),
                Some(vec!["a".to_owned(), "b".to_owned()]),
                "{both}"
            );
        }
        // The other permissions of the answer are kept.
        let i = Introspection::from_value(&json!({"active": true, "permissions": [
            {"rsid": "r1", "scopes": "view"},
            {"rsid": "r2", "scopes": ["view"]},
        ]}))
        .expect("parses");
        assert_eq!(i.permissions(), [Permission::new("r2", ["view"])]);
    }

    fn scopes(p: &Permission) -> Vec<&str> {
        p.resource_scopes().collect()
    }

    #[test]
    fn compact_layout() {
        assert_eq!(size_of::<Claim>(), size_of::<i64>());
        // One per cached result: 72 bytes keep `Arc<Introspection>` in a 96-byte allocation.
        assert!(
            size_of::<Introspection>() <= 72,
            "{}",
            size_of::<Introspection>()
        );
        // 56, and the pointer to pushed claims.
        assert!(size_of::<Permission>() <= 64, "{}", size_of::<Permission>());
    }

    #[test]
    fn the_claims_of_a_jwts_permissions_narrow_its_introspection() {
        use base64::Engine as _;
        let payload = serde_json::json!({"authorization": {"permissions": [
            {"rsid": "r1", "scopes": ["view"], "claims": {"org": ["acme"]}},
            {"rsid": "r2", "scopes": ["view"], "claims": {"org": 7}},
            {"rsid": "r3", "scopes": ["view"]}
        ]}});
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!("{}.{}.sig", b64("{}"), b64(&payload.to_string()));
        let intro = Introspection::active(
            ["r1", "r2", "r3", "r4"]
                .map(|r| Permission::new(r, ["view"]))
                .to_vec(),
            None,
        )
        .with_claims_of(jwt.as_bytes());
        let claims: Vec<_> = intro.permissions().iter().map(Permission::claims).collect();
        let acme = BTreeMap::from([("org".to_owned(), vec!["acme".to_owned()])]);
        assert_eq!(claims[0], Some(&acme));
        // Unreadable claims match no request.
        let nothing = BTreeMap::from([(String::new(), Vec::new())]);
        assert_eq!(claims[1], Some(&nothing));
        assert_eq!(claims[2..], [None, None]);
        // Not a JWT, or inactive: as it was.
        let opaque = Introspection::active(vec![Permission::new("r1", ["view"])], None)
            .with_claims_of(b"opaque");
        assert_eq!(opaque.permissions()[0].claims(), None);
        assert!(
            !Introspection::inactive()
                .with_claims_of(jwt.as_bytes())
                .is_active()
        );
    }

    #[test]
    fn debug_shows_active() {
        let i = Introspection::active(vec![Permission::new("r", ["a"])], Some(9));
        let shown = format!("{i:?}");
        assert!(shown.starts_with("Introspection { active: true, exp: Some(9), iat: None"));
        assert!(
            shown.contains(r#"permissions: [Permission { resource_id: "r""#),
            "{shown}"
        );
        assert!(format!("{:?}", Introspection::inactive()).contains("active: false"));
    }

    #[test]
    fn active_is_kept_with_or_without_permissions() {
        let empty = Introspection::from_json(br#"{"active":true}"#).expect("parses");
        assert!(empty.is_active() && empty.permissions().is_empty());
        assert_ne!(empty, Introspection::inactive());
        assert!(!Introspection::inactive().is_active());
        assert!(!Introspection::default().is_active());
        assert!(Introspection::active(vec![], None).is_active());
    }

    #[test]
    fn time_claims_absent_present_and_not_positive() {
        assert_eq!(Claim::new(None).get(), None);
        assert_eq!(Claim::default().get(), None);
        assert_eq!(Claim::new(Some(1)).get(), Some(1));
        assert_eq!(Claim::new(Some(i64::MAX)).get(), Some(i64::MAX));
        for not_positive in [0, -1, i64::MIN] {
            assert_eq!(Claim::new(Some(not_positive)), Claim::new(None));
        }
        assert_eq!(format!("{:?}", Claim::new(Some(7))), "Some(7)");
        assert_eq!(format!("{:?}", Claim::new(Some(0))), "None");

        // As parsed (docs/protocol.md §7.6): 0, null and absent are "no constraint"; numbers
        // and numeric strings are read; an `exp` before the epoch has passed; anything else is
        // unreadable.
        let exp = |v: Value| expiry(Some(&v)).ok().map(Claim::get);
        let nbf = |v: Value| not_before(Some(&v)).ok().map(Claim::get);
        assert_eq!(exp(json!(1_767_225_600)), Some(Some(1_767_225_600)));
        assert_eq!(exp(json!(1_767_225_600.9)), Some(Some(1_767_225_600)));
        assert_eq!(exp(json!("1767225600")), Some(Some(1_767_225_600)));
        assert_eq!(exp(json!(" 1767225600.5 ")), Some(Some(1_767_225_600)));
        assert_eq!(exp(json!(u64::MAX)), Some(Some(i64::MAX)));
        assert_eq!(exp(json!(0)), Some(None));
        assert_eq!(exp(json!(null)), Some(None));
        assert_eq!(expiry(None).ok().map(Claim::get), Some(None));
        assert_eq!(exp(json!(-5)), Some(Some(1)));
        assert_eq!(exp(json!(-0.5)), Some(Some(1)));
        assert_eq!(nbf(json!(-0.5)), Some(None));
        assert_eq!(nbf(json!(-5)), Some(None));
        assert_eq!(nbf(json!(5)), Some(Some(5)));
        for unreadable in [
            json!("soon"),
            json!(""),
            json!("inf"),
            json!(true),
            json!([1]),
            json!({}),
        ] {
            assert_eq!(exp(unreadable.clone()), None, "{unreadable}");
            assert_eq!(nbf(unreadable.clone()), None, "{unreadable}");
            assert_eq!(informational(Some(&unreadable)).get(), None, "{unreadable}");
        }

        // And as set by hand.
        let i = Introspection::active(vec![], Some(0))
            .with_nbf(Some(-3))
            .with_iat(Some(9));
        assert_eq!((i.exp(), i.nbf(), i.iat()), (None, None, Some(9)));
        let p = Permission::new("r", ["a"])
            .with_exp(Some(-1))
            .with_nbf(Some(5));
        assert_eq!((p.exp(), p.nbf(), p.iat()), (None, Some(5), None));
    }

    #[test]
    fn unreadable_time_claims_never_mean_no_expiry() {
        // docs/protocol.md §7.6: only 0 and absent mean "no constraint": an unreadable
        // top-level `exp` or `nbf` makes the whole answer unusable, an unreadable permission
        // bound drops that permission, and an unreadable `iat` is ignored.
        for (claim, name) in [("exp", "exp"), ("nbf", "nbf")] {
            let body = json!({"active": true, claim: "soon", "permissions": []});
            assert_eq!(
                Introspection::from_value(&body),
                Err(ParseError::BadTimeClaim(name))
            );
        }
        let body = json!({"active": true, "exp": "1767225600", "iat": "yesterday",
            "permissions": [
                {"resource_id": "a", "resource_scopes": ["view"], "exp": {"at": 1}},
                {"resource_id": "b", "resource_scopes": ["view"], "nbf": false},
                {"resource_id": "c", "resource_scopes": ["view"], "exp": -1},
                {"resource_id": "d", "resource_scopes": ["view"], "exp": "1767225600"}]});
        let i = Introspection::from_value(&body).expect("parses");
        assert_eq!((i.exp(), i.iat()), (Some(1_767_225_600), None));
        let kept: Vec<(&str, Option<i64>)> = i
            .permissions()
            .iter()
            .map(|p| (p.resource_id(), p.exp()))
            .collect();
        assert_eq!(kept, [("c", Some(1)), ("d", Some(1_767_225_600))]);
    }

    #[test]
    fn names_are_shared_between_results() {
        let body = br#"{"active": true, "client_id": "app-7c1e", "sub": "bob",
            "permissions": [{"resource_id": "r-7c1e", "resource_scopes": ["view-7c1e"]}]}"#;
        let a = Introspection::from_json(body).expect("parses");
        let b = Introspection::from_json(body).expect("parses");
        let (pa, pb) = (&a.permissions()[0], &b.permissions()[0]);
        assert!(Arc::ptr_eq(&pa.resource_id, &pb.resource_id));
        assert!(Arc::ptr_eq(&pa.resource_scopes, &pb.resource_scopes));
        assert!(Arc::ptr_eq(&pa.resource_scopes[0], &pb.resource_scopes[0]));
        let (ca, cb) = (a.client_id.as_ref(), b.client_id.as_ref());
        assert!(ca.zip(cb).is_some_and(|(ca, cb)| Arc::ptr_eq(ca, cb)));
        assert_eq!(a, b);
    }

    #[test]
    fn permissions_serialise_as_before() {
        let p = Permission::new("r1", ["read", "write"]);
        assert_eq!(
            serde_json::to_value(&p).expect("serialises"),
            json!({"resource_id": "r1", "resource_scopes": ["read", "write"]})
        );
        let p = p.with_exp(Some(20)).with_nbf(Some(10)).with_iat(Some(5));
        assert_eq!(
            serde_json::to_value(&p).expect("serialises"),
            json!({"resource_id": "r1", "resource_scopes": ["read", "write"],
                   "exp": 20, "nbf": 10, "iat": 5})
        );
    }

    #[test]
    fn subject_and_client_id_are_set_and_cleared() {
        let i = Introspection::active(vec![], None)
            .with_sub(Some("bob"))
            .with_client_id(Some("app-1"));
        assert_eq!((i.sub(), i.client_id()), (Some("bob"), Some("app-1")));
        assert!(i.is_active(), "the rest is kept");
        let i = i.with_sub(None).with_client_id(None);
        assert_eq!((i.sub(), i.client_id()), (None, None));
    }

    #[test]
    fn heap_bytes_count_every_string_and_list() {
        // An `Arc`'s allocation holds two counts besides the value.
        let counts = 2 * size_of::<usize>();
        let p = Permission::new("r", ["a", "bc"]);
        let list = counts + 2 * size_of::<Arc<str>>();
        assert_eq!(
            p.heap_bytes(),
            (1 + counts) + list + (1 + counts) + (2 + counts)
        );
        let i = Introspection::active(vec![p.clone()], None)
            .with_sub(Some("bob"))
            .with_client_id(Some("app"));
        assert_eq!(
            i.heap_bytes(),
            3 + (3 + counts) + size_of::<Permission>() + p.heap_bytes()
        );
    }

    #[test]
    fn heap_bytes_count_a_permissions_pushed_claims() {
        let bare = Permission::new("r", ["a"]);
        let mut p = bare.clone();
        p.claims = Some(Arc::new(BTreeMap::from([(
            "org".to_owned(),
            vec!["acme".to_owned(), "beta".to_owned()],
        )])));
        // Each name and value: its bytes, and a `String`'s pointer, length and capacity plus
        // its share of the map's or the list's slot, counted as four words.
        let string = 4 * size_of::<usize>();
        assert_eq!(
            p.heap_bytes(),
            bare.heap_bytes() + (3 + string) + (4 + string) + (4 + string)
        );
    }

    /// A serializer for one struct that checks the field count announced to
    /// `serialize_struct`, which formats such as CBOR or bincode write before the fields.
    struct FieldCount;

    struct Fields {
        announced: usize,
        written: usize,
    }

    #[derive(Debug)]
    struct Refused(String);

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Refused {}

    impl serde::ser::Error for Refused {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Self(msg.to_string())
        }
    }

    impl serde::ser::SerializeStruct for Fields {
        type Ok = usize;
        type Error = Refused;

        fn serialize_field<T: ?Sized + serde::Serialize>(
            &mut self,
            _: &'static str,
            _: &T,
        ) -> Result<(), Refused> {
            self.written += 1;
            Ok(())
        }

        fn end(self) -> Result<usize, Refused> {
            if self.announced == self.written {
                Ok(self.written)
            } else {
                Err(Refused(format!(
                    "{} fields announced, {} written",
                    self.announced, self.written
                )))
            }
        }
    }

    /// The methods of `FieldCount` for everything but a struct: refused.
    macro_rules! not_a_struct {
        ($($name:ident($($arg:ty),*) -> $ok:ty;)*) => {$(
            fn $name(self, $(_: $arg),*) -> Result<$ok, Refused> {
                Err(Refused("not a struct".to_owned()))
            }
        )*};
    }

    impl Serializer for FieldCount {
        type Ok = usize;
        type Error = Refused;
        type SerializeSeq = serde::ser::Impossible<usize, Refused>;
        type SerializeTuple = serde::ser::Impossible<usize, Refused>;
        type SerializeTupleStruct = serde::ser::Impossible<usize, Refused>;
        type SerializeTupleVariant = serde::ser::Impossible<usize, Refused>;
        type SerializeMap = serde::ser::Impossible<usize, Refused>;
        type SerializeStruct = Fields;
        type SerializeStructVariant = serde::ser::Impossible<usize, Refused>;

        fn serialize_struct(self, _: &'static str, len: usize) -> Result<Fields, Refused> {
            Ok(Fields {
                announced: len,
                written: 0,
            })
        }

        fn serialize_some<T: ?Sized + serde::Serialize>(self, _: &T) -> Result<usize, Refused> {
            Err(Refused("not a struct".to_owned()))
        }

        fn serialize_newtype_struct<T: ?Sized + serde::Serialize>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<usize, Refused> {
            Err(Refused("not a struct".to_owned()))
        }

        fn serialize_newtype_variant<T: ?Sized + serde::Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<usize, Refused> {
            Err(Refused("not a struct".to_owned()))
        }

        not_a_struct! {
            serialize_bool(bool) -> usize;
            serialize_i8(i8) -> usize;
            serialize_i16(i16) -> usize;
            serialize_i32(i32) -> usize;
            serialize_i64(i64) -> usize;
            serialize_u8(u8) -> usize;
            serialize_u16(u16) -> usize;
            serialize_u32(u32) -> usize;
            serialize_u64(u64) -> usize;
            serialize_f32(f32) -> usize;
            serialize_f64(f64) -> usize;
            serialize_char(char) -> usize;
            serialize_str(&str) -> usize;
            serialize_bytes(&[u8]) -> usize;
            serialize_none() -> usize;
            serialize_unit() -> usize;
            serialize_unit_struct(&'static str) -> usize;
            serialize_unit_variant(&'static str, u32, &'static str) -> usize;
            serialize_seq(Option<usize>) -> Self::SerializeSeq;
            serialize_tuple(usize) -> Self::SerializeTuple;
            serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
            serialize_tuple_variant(&'static str, u32, &'static str, usize)
                -> Self::SerializeTupleVariant;
            serialize_map(Option<usize>) -> Self::SerializeMap;
            serialize_struct_variant(&'static str, u32, &'static str, usize)
                -> Self::SerializeStructVariant;
        }
    }

    #[test]
    fn permissions_announce_the_fields_they_write() {
        let p = Permission::new("r1", ["read"]);
        assert_eq!(serde::Serialize::serialize(&p, FieldCount).expect("2"), 2);
        let p = p.with_nbf(Some(10));
        assert_eq!(serde::Serialize::serialize(&p, FieldCount).expect("3"), 3);
        let p = p.with_exp(Some(20)).with_iat(Some(5));
        assert_eq!(serde::Serialize::serialize(&p, FieldCount).expect("5"), 5);
        let mut p = p;
        p.claims = Some(Arc::new(BTreeMap::from([(
            "org".to_owned(),
            vec!["acme".to_owned()],
        )])));
        assert_eq!(serde::Serialize::serialize(&p, FieldCount).expect("6"), 6);
    }
}
