//! The introspection response model: RFC 7662 §2.2 plus the UMA `permissions` extension
//! (FedAuthz §5.1.1), tolerant of the shapes real servers send (uma-wire §13 items 5–8).

use serde::Deserialize;
use serde_json::Value;

/// A parsed introspection answer (or a locally validated RPT), as the access decision sees it.
///
/// Built from the AS's JSON by [`Introspection::from_json`]. Unknown members are ignored;
/// time claims of `0` count as absent; each permission accepts the UMA naming
/// (`resource_id`, `resource_scopes`) and Keycloak's (`rsid`, `scopes`), and a permission that
/// carries both is read once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Introspection {
    /// RFC 7662 `active`.
    pub active: bool,
    /// Token expiry, seconds since the epoch.
    pub exp: Option<i64>,
    /// Token issue time.
    pub iat: Option<i64>,
    /// Token not-before time.
    pub nbf: Option<i64>,
    /// The subject (`sub`), usually the requesting party.
    pub sub: Option<String>,
    /// The client the RPT was issued to (`client_id`).
    pub client_id: Option<String>,
    /// The UMA permissions the RPT carries. A top-level `scope` is deliberately not read:
    /// it never grants UMA access (FedAuthz §5.1.1, uma-wire §13 item 7).
    pub permissions: Vec<Permission>,
}

/// One UMA permission: a resource and the scopes granted on it (FedAuthz §5.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct Permission {
    /// The registered resource id.
    pub resource_id: String,
    /// The granted scopes (zero or more).
    pub resource_scopes: Vec<String>,
    /// Permission expiry, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Permission not-before time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Permission issue time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

impl Permission {
    /// A permission for `resource_id` with `scopes` and no time bounds.
    #[must_use]
    pub fn new<I, S>(resource_id: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            resource_id: resource_id.into(),
            resource_scopes: scopes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
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
}

impl Introspection {
    /// Parses an introspection response body.
    ///
    /// # Errors
    ///
    /// [`ParseError`] when the body is not a JSON object with a boolean `active`. Malformed
    /// permissions (no resource id) are dropped rather than failing the whole answer: a
    /// permission that cannot be read grants nothing.
    pub fn from_json(body: &[u8]) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| ParseError::NotAnObject)?;
        Self::from_value(&value)
    }

    /// Parses an already decoded JSON value; see [`from_json`](Self::from_json).
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json).
    pub fn from_value(value: &Value) -> Result<Self, ParseError> {
        let obj = value.as_object().ok_or(ParseError::NotAnObject)?;
        let active = obj
            .get("active")
            .and_then(Value::as_bool)
            .ok_or(ParseError::NoActive)?;
        if !active {
            return Ok(Self::default());
        }
        // Exact capacities: results live in the cache, where spare capacity is memory.
        let mut permissions: Vec<Permission> = obj
            .get("permissions")
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(parse_permission).collect())
            .unwrap_or_default();
        permissions.shrink_to_fit();
        Ok(Self {
            active,
            exp: time_claim(obj.get("exp")),
            iat: time_claim(obj.get("iat")),
            nbf: time_claim(obj.get("nbf")),
            sub: obj.get("sub").and_then(Value::as_str).map(str::to_owned),
            client_id: obj
                .get("client_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            permissions,
        })
    }

    /// An inactive result, as `{"active":false}` parses.
    #[must_use]
    pub fn inactive() -> Self {
        Self::default()
    }

    /// An active result with the given permissions and expiry; handy in tests.
    #[must_use]
    pub fn active(permissions: Vec<Permission>, exp: Option<i64>) -> Self {
        Self {
            active: true,
            exp,
            permissions,
            ..Self::default()
        }
    }
}

fn parse_permission(item: &Value) -> Option<Permission> {
    let raw = RawPermission::deserialize(item).ok()?;
    let resource_id = [raw.resource_id, raw.rsid, raw.resource_set_id]
        .into_iter()
        .flatten()
        .find_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))?;
    let resource_scopes = match (raw.resource_scopes, raw.scopes) {
        (Some(s), _) if s.is_array() => scope_list(&s),
        (_, Some(s)) => scope_list(&s),
        _ => Vec::new(),
    };
    Some(Permission {
        resource_id,
        resource_scopes,
        exp: time_claim(raw.exp.as_ref()),
        nbf: time_claim(raw.nbf.as_ref()),
        iat: time_claim(raw.iat.as_ref()),
    })
}

/// Scopes as an array of strings or of `{"name": …}` objects; anything else grants nothing.
fn scope_list(v: &Value) -> Vec<String> {
    let Some(items) = v.as_array() else {
        return Vec::new();
    };
    let mut out: Vec<String> = items
        .iter()
        .filter_map(|s| {
            s.as_str()
                .or_else(|| s.get("name").and_then(Value::as_str))
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    out.dedup();
    out.shrink_to_fit();
    out
}

/// A NumericDate; `0`, negative, non-numeric or absent all mean "no constraint".
fn time_claim(v: Option<&Value>) -> Option<i64> {
    let v = v?;
    let n = v
        .as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))?;
    (n > 0).then_some(n)
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
        // uma-wire §7.2, §13 item 8
        let i = Introspection::from_value(&json!({
            "active": true, "exp": 1_767_225_600, "iat": 1_767_222_000, "nbf": 0,
            "sub": "bob", "client_id": "app", "x-extra": {"a": 1}, "scope": "read",
            "permissions": [{"resource_id": "r1", "resource_scopes": ["read", "write"], "exp": 1_767_224_000, "extra": true}]
        }))
        .expect("parses");
        assert!(i.active);
        assert_eq!(i.nbf, None);
        assert_eq!(i.exp, Some(1_767_225_600));
        assert_eq!(i.sub.as_deref(), Some("bob"));
        assert_eq!(i.permissions.len(), 1);
        assert_eq!(i.permissions[0].resource_scopes, ["read", "write"]);
        assert_eq!(i.permissions[0].exp, Some(1_767_224_000));
    }

    #[test]
    fn keycloak_naming_and_both_namings() {
        // uma-wire §7.3, §14 check 20
        let i = Introspection::from_value(&json!({"active": true, "permissions": [
            {"rsid": "r1", "rsname": "Album", "scopes": ["view"]},
            {"rsid": "r2", "rsname": "Other", "scopes": ["a"], "resource_id": "r2", "resource_scopes": ["a"]},
            {"rsid": "r3", "resource_id": "r3", "resource_scopes": []},
            {"resource_scopes": ["orphan"]}
        ]}))
        .expect("parses");
        assert_eq!(i.permissions.len(), 3);
        assert_eq!(i.permissions[0], Permission::new("r1", ["view"]));
        assert_eq!(i.permissions[1], Permission::new("r2", ["a"]));
        assert!(i.permissions[2].resource_scopes.is_empty());
    }

    #[test]
    fn scope_objects_are_read() {
        let i = Introspection::from_value(
            &json!({"active": true, "permissions": [{"resource_id": "r", "resource_scopes": [{"name": "b"}, {"name": "a"}, 3]}]}),
        )
        .expect("parses");
        assert_eq!(i.permissions[0].resource_scopes, ["a", "b"]);
    }
}
