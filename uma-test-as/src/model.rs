//! The public data types: resource descriptions, RPT specifications, pending approval
//! requests, recorded requests and the RPT format switch.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How the token endpoint encodes RPTs.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RptFormat {
    /// A random, URL-safe string of 256 bits; its meaning is known only through introspection.
    #[default]
    Opaque,
    /// An ES256-signed JWT (header `kid` and `typ: at+jwt`) with the claims `iss`, `sub`, `aud`,
    /// `exp`, `iat`, `jti`, `client_id` and `permissions`, verifiable with the key at
    /// `jwks_uri`. JWT RPTs are answered by introspection exactly like opaque ones.
    Jwt,
}

/// A resource description (FedAuthz §3.1), as registered at the resource registration
/// endpoint or with [`TestAs::register_resource`](crate::TestAs::register_resource).
///
/// On input `resource_scopes` may hold strings or Keycloak-style `{"name": "…"}` objects;
/// unknown members are ignored. `owner` is an extension member: the user (or client) whose
/// approval `Policy::owner_approval` asks for.
///
/// # Example
///
/// ```
/// use uma_test_as::ResourceDescription;
///
/// let album = ResourceDescription {
///     name: Some("album".into()),
///     resource_scopes: vec!["view".into(), "edit".into()],
///     ..Default::default()
/// };
/// let json = serde_json::to_value(&album).unwrap();
/// assert_eq!(json, serde_json::json!({"name": "album", "resource_scopes": ["view", "edit"]}));
///
/// let parsed: ResourceDescription =
///     serde_json::from_str(r#"{"resource_scopes":[{"name":"view"},"edit"]}"#).unwrap();
/// assert_eq!(parsed.resource_scopes, ["view", "edit"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDescription {
    /// Human-readable name; policies may name a resource by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A string identifying the semantics of the resource.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// A URI of an icon for the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_uri: Option<String>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The scopes the resource offers (REQUIRED on registration).
    #[serde(deserialize_with = "scope_list")]
    pub resource_scopes: Vec<String>,
    /// The resource owner (extension member). Defaults to the subject of the registering PAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Deserializes an array of scope strings or `{"name": …}` objects.
fn scope_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct ScopeList;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scope {
        Plain(String),
        Object { name: String },
    }

    impl<'de> Visitor<'de> for ScopeList {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of scope strings or {\"name\": …} objects")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut scopes = Vec::new();
            while let Some(scope) = seq.next_element::<Scope>()? {
                let (Scope::Plain(name) | Scope::Object { name }) = scope;
                scopes.push(name);
            }
            Ok(scopes)
        }
    }

    deserializer.deserialize_seq(ScopeList)
}

/// What an RPT minted with [`TestAs::mint_rpt`](crate::TestAs::mint_rpt) stands for, and
/// exactly what introspection answers for it.
///
/// Every `None` is left out of the introspection answer. The server decides only `active`:
/// an RPT is active unless it was revoked or its token-level `exp` has passed; with
/// `exp: None` it is active forever. A token-level `nbf` in the future does **not** make it
/// inactive: it is reported as given, so a resource server's own `nbf` check can be tested.
/// Per-permission `exp`/`nbf`/`iat` are likewise reported verbatim and never filtered.
/// `extra` members are added at the top level last and may replace any member except
/// `active` (use it for a forbidden top-level `scope`, an `aud`, …).
///
/// RPTs issued by the uma-ticket grant are stored the same way.
///
/// # Example
///
/// ```
/// use uma_test_as::{RptPermission, RptSpec};
///
/// // An RPT for resource "r1" with scope "view", expiring in 60 seconds.
/// let spec = RptSpec::active_for("r1", ["view"], 60);
/// assert!(spec.exp.is_some());
///
/// // An RPT whose only permission has already expired, although the token has not.
/// let mut stale = RptSpec::active_for("r1", ["view"], 60);
/// stale.permissions[0].exp = Some(1);
///
/// // Hand-written, never-expiring RPT with a top-level scope UMA forbids.
/// let odd = RptSpec {
///     sub: Some("bob".into()),
///     permissions: vec![RptPermission::new("r1", ["view"])],
///     extra: serde_json::json!({"scope": "view"}).as_object().unwrap().clone(),
///     ..Default::default()
/// };
/// assert_eq!(odd.exp, None);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RptSpec {
    /// `sub`: the requesting party.
    pub sub: Option<String>,
    /// `client_id`: the client the RPT was issued to.
    pub client_id: Option<String>,
    /// Token-level `exp` (Unix seconds); `None` = no expiry, left out of introspection.
    pub exp: Option<i64>,
    /// Token-level `iat` (Unix seconds).
    pub iat: Option<i64>,
    /// Token-level `nbf` (Unix seconds); reported, never enforced by the server.
    pub nbf: Option<i64>,
    /// The `permissions` array (FedAuthz §5.1.1); may be empty.
    pub permissions: Vec<RptPermission>,
    /// Extra top-level introspection members, e.g. `"scope"`.
    pub extra: Map<String, Value>,
}

impl RptSpec {
    /// An RPT for one resource with the given scopes: `iat` = now, `exp` = now +
    /// `ttl_secs`, no `sub`/`client_id`, and a permission without its own `exp`.
    pub fn active_for(
        resource_id: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
        ttl_secs: i64,
    ) -> Self {
        let now = unix_now_secs();
        Self {
            exp: Some(now.saturating_add(ttl_secs)),
            iat: Some(now),
            permissions: vec![RptPermission::new(resource_id, scopes)],
            ..Self::default()
        }
    }

    /// Whether the RPT is active at `now_ms` (Unix milliseconds): `exp` has not passed.
    pub(crate) fn is_active_at(&self, now_ms: i64) -> bool {
        self.exp.is_none_or(|exp| now_ms < exp.saturating_mul(1000))
    }

    /// The introspection answer of an active RPT (FedAuthz §5.1.1).
    pub(crate) fn introspection(&self) -> Map<String, Value> {
        let mut body = self.common_claims();
        for (key, value) in &self.extra {
            body.insert(key.clone(), value.clone());
        }
        body.insert("active".to_owned(), Value::Bool(true));
        body
    }

    /// The claims of a Keycloak JWT RPT, without `iss`, `jti`, `aud` and `extra`: `exp`,
    /// `iat`, `nbf`, `sub`, `typ: Bearer`, `azp` (the client) and
    /// `authorization.permissions` with `rsid`, `rsname` (looked up by `name_of`) and `scopes`
    /// (left out when empty), plus any per-permission `exp`/`nbf`/`iat` of a minted spec.
    pub(crate) fn keycloak_claims(
        &self,
        name_of: impl Fn(&str) -> Option<String>,
    ) -> Map<String, Value> {
        let mut claims = Map::new();
        insert_opt(&mut claims, "exp", self.exp.map(Value::from));
        insert_opt(&mut claims, "iat", self.iat.map(Value::from));
        insert_opt(&mut claims, "nbf", self.nbf.map(Value::from));
        insert_opt(&mut claims, "sub", self.sub.clone().map(Value::from));
        claims.insert("typ".to_owned(), Value::from("Bearer"));
        insert_opt(&mut claims, "azp", self.client_id.clone().map(Value::from));
        let permissions: Vec<Value> = self
            .permissions
            .iter()
            .map(|p| p.keycloak_json(name_of(&p.resource_id).as_deref(), false))
            .collect();
        claims.insert(
            "authorization".to_owned(),
            serde_json::json!({ "permissions": permissions }),
        );
        claims
    }

    /// The members shared by introspection and JWT claims, without `active` and `extra`.
    pub(crate) fn common_claims(&self) -> Map<String, Value> {
        let mut body = Map::new();
        insert_opt(&mut body, "sub", self.sub.clone().map(Value::from));
        insert_opt(
            &mut body,
            "client_id",
            self.client_id.clone().map(Value::from),
        );
        insert_opt(&mut body, "exp", self.exp.map(Value::from));
        insert_opt(&mut body, "iat", self.iat.map(Value::from));
        insert_opt(&mut body, "nbf", self.nbf.map(Value::from));
        body.insert(
            "permissions".to_owned(),
            Value::Array(
                self.permissions
                    .iter()
                    .map(RptPermission::to_json)
                    .collect(),
            ),
        );
        body
    }
}

/// One permission of an RPT (FedAuthz §5.1.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RptPermission {
    /// `resource_id`.
    pub resource_id: String,
    /// `resource_scopes` (zero or more).
    pub resource_scopes: Vec<String>,
    /// Per-permission `exp` (Unix seconds), reported verbatim.
    pub exp: Option<i64>,
    /// Per-permission `nbf` (Unix seconds), reported verbatim.
    pub nbf: Option<i64>,
    /// Per-permission `iat` (Unix seconds), reported verbatim.
    pub iat: Option<i64>,
}

impl RptPermission {
    /// A permission without `exp`, `nbf` or `iat`.
    pub fn new(
        resource_id: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            resource_id: resource_id.into(),
            resource_scopes: scopes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// A Keycloak permission: `rsid`, `rsname` (when known), `scopes` (left out when empty),
    /// and with `uma_names` also `resource_id` and `resource_scopes` (always present), as
    /// Keycloak's RPT introspection answers (docs/protocol.md §7.3). Per-permission
    /// `exp`/`nbf`/`iat` of a minted spec are kept.
    pub(crate) fn keycloak_json(&self, name: Option<&str>, uma_names: bool) -> Value {
        let mut permission = Map::new();
        permission.insert("rsid".to_owned(), Value::from(self.resource_id.as_str()));
        insert_opt(&mut permission, "rsname", name.map(Value::from));
        if !self.resource_scopes.is_empty() {
            permission.insert(
                "scopes".to_owned(),
                Value::from(self.resource_scopes.clone()),
            );
        }
        if uma_names {
            permission.insert(
                "resource_id".to_owned(),
                Value::from(self.resource_id.as_str()),
            );
            permission.insert(
                "resource_scopes".to_owned(),
                Value::from(self.resource_scopes.clone()),
            );
        }
        insert_opt(&mut permission, "exp", self.exp.map(Value::from));
        insert_opt(&mut permission, "nbf", self.nbf.map(Value::from));
        insert_opt(&mut permission, "iat", self.iat.map(Value::from));
        Value::Object(permission)
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut permission = Map::new();
        permission.insert(
            "resource_id".to_owned(),
            Value::from(self.resource_id.as_str()),
        );
        permission.insert(
            "resource_scopes".to_owned(),
            Value::from(self.resource_scopes.clone()),
        );
        insert_opt(&mut permission, "exp", self.exp.map(Value::from));
        insert_opt(&mut permission, "nbf", self.nbf.map(Value::from));
        insert_opt(&mut permission, "iat", self.iat.map(Value::from));
        Value::Object(permission)
    }
}

fn insert_opt(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), value);
    }
}

/// A request waiting for its resource owner's approval (created when a policy says
/// `approval = "owner"`); see [`TestAs::pending_requests`](crate::TestAs::pending_requests) and
/// `GET /admin/requests`.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingRequest {
    /// The request id, for approve/deny.
    pub id: String,
    /// The resource owner who decides.
    pub owner: String,
    /// Who asks: the subject of the requesting party's ID token when one was given, else the
    /// client id.
    pub requester: String,
    /// The client that presented the ticket.
    pub client_id: String,
    /// The resource asked for.
    pub resource_id: String,
    /// The scopes that need approval.
    pub scopes: Vec<String>,
}

/// One HTTP request as the server received it (before any fault knob acted).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The method, e.g. `"POST"`.
    pub method: String,
    /// Path and query, e.g. `"/resource_set?name=album"`.
    pub uri: String,
    /// Headers in arrival order, names in lower case (values decoded lossily as UTF-8).
    pub headers: Vec<(String, String)>,
    /// The body (empty when it exceeded the 64 KiB limit).
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body parsed as `application/x-www-form-urlencoded` pairs (empty if it is not).
    pub fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_bytes(&self.body).unwrap_or_default()
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now_secs() -> i64 {
    unix_now_ms().div_euclid(1000)
}

/// Milliseconds since the Unix epoch (the server's only wall-clock reading).
pub(crate) fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn introspection_omits_none_and_applies_extra_but_not_active() {
        let mut spec = RptSpec {
            sub: Some("bob".into()),
            permissions: vec![RptPermission {
                exp: Some(5),
                ..RptPermission::new("r1", ["view"])
            }],
            ..RptSpec::default()
        };
        spec.extra.insert("scope".into(), json!("view"));
        spec.extra.insert("active".into(), json!(false));
        assert_eq!(
            Value::Object(spec.introspection()),
            json!({"active": true, "sub": "bob", "scope": "view",
                   "permissions": [{"resource_id": "r1", "resource_scopes": ["view"], "exp": 5}]})
        );
    }

    #[test]
    fn keycloak_permissions_carry_both_namings_and_omit_empty_scopes() {
        let full = RptPermission::new("r1", ["view"]).keycloak_json(Some("album"), true);
        assert_eq!(
            full,
            json!({"rsid": "r1", "rsname": "album", "scopes": ["view"],
                   "resource_id": "r1", "resource_scopes": ["view"]})
        );
        let empty = RptPermission::new("r2", Vec::<String>::new()).keycloak_json(None, true);
        assert_eq!(
            empty,
            json!({"rsid": "r2", "resource_id": "r2", "resource_scopes": []})
        );
        let spec = RptSpec {
            client_id: Some("app".into()),
            permissions: vec![RptPermission::new("r1", ["view"])],
            ..RptSpec::default()
        };
        let claims = Value::Object(spec.keycloak_claims(|_| Some("album".into())));
        assert_eq!(
            claims,
            json!({"typ": "Bearer", "azp": "app", "authorization": {"permissions": [
                {"rsid": "r1", "rsname": "album", "scopes": ["view"]}]}})
        );
    }

    #[test]
    fn activity_follows_token_exp_only() {
        let spec = RptSpec {
            exp: Some(10),
            nbf: Some(i64::MAX),
            ..RptSpec::default()
        };
        assert!(spec.is_active_at(9_999));
        assert!(!spec.is_active_at(10_000));
        assert!(RptSpec::default().is_active_at(i64::MAX));
    }

    #[test]
    fn resource_scopes_accept_objects_and_are_required() {
        let parsed: ResourceDescription = serde_json::from_value(
            json!({"resource_scopes": [{"name": "a"}, "b"], "uris": ["/x"]}),
        )
        .unwrap();
        assert_eq!(parsed.resource_scopes, ["a", "b"]);
        assert!(serde_json::from_value::<ResourceDescription>(json!({"name": "x"})).is_err());
        assert!(
            serde_json::from_value::<ResourceDescription>(json!({"resource_scopes": [1]})).is_err()
        );
    }
}
