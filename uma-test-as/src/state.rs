//! The server's shared state: settings, keys, knobs and the in-memory store of tokens,
//! tickets, resources and approval requests.
//!
//! One `Arc<Shared>` per server; the store sits behind a single std `Mutex` that is never held
//! across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::dialect::names::{
    ID_TOKEN_TYP, KEYCLOAK_ACCESS_TYP, KEYCLOAK_ID_TYP, RPT_TYP, UMA_PROTECTION,
};
use crate::dialect::{Dialect, Endpoint, Layout};
use crate::faults::Faults;
use crate::jwt::Keys;
use crate::model::{PendingRequest, ResourceDescription, RptFormat, RptSpec, unix_now_ms};
use crate::policy::Policy;

/// Lifetime of ID tokens.
pub(crate) const ID_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// What the builder configured.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) rpt_format: RptFormat,
    pub(crate) ticket_ttl: Duration,
    pub(crate) rpt_ttl: Duration,
    pub(crate) pat_ttl: Duration,
    pub(crate) clients: HashMap<String, String>,
    pub(crate) users: HashMap<String, String>,
    pub(crate) policies: Vec<Policy>,
}

/// Everything a handler needs.
#[derive(Debug)]
pub(crate) struct Shared {
    /// `http://HOST:PORT`: where every path is served.
    pub(crate) base: String,
    /// The issuer: the base, or `{base}/realms/{realm}` for Keycloak.
    pub(crate) issuer: String,
    /// The `iss` of signed tokens: the issuer, or WSO2's token endpoint URL.
    pub(crate) token_issuer: String,
    pub(crate) dialect: Dialect,
    pub(crate) layout: Layout,
    pub(crate) settings: Settings,
    pub(crate) keys: Keys,
    pub(crate) faults: Faults,
    store: Mutex<Store>,
    pats_issued: AtomicU64,
    stop: watch::Receiver<bool>,
}

/// The in-memory database.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) tokens: HashMap<String, TokenRecord>,
    pub(crate) tickets: HashMap<String, Ticket>,
    pub(crate) resources: Vec<Resource>,
    pub(crate) requests: Vec<PendingRecord>,
}

/// An issued token.
#[derive(Debug)]
pub(crate) enum TokenRecord {
    /// A PAT (scope `uma_protection`) or another plain access token.
    Access(AccessToken),
    /// An RPT.
    Rpt {
        spec: RptSpec,
        revoked: bool,
        meta: RptMeta,
    },
}

/// What the server adds to an RPT's spec when it stores it: a `jti` and the audience.
#[derive(Clone, Debug, Default)]
pub(crate) struct RptMeta {
    pub(crate) jti: String,
    /// The clients whose PATs registered the resources, else the RPT's client.
    pub(crate) aud: Vec<String>,
}

impl RptMeta {
    /// `aud` as JWTs and Keycloak write it: a string for one audience, else an array.
    pub(crate) fn aud_value(&self) -> Option<Value> {
        match self.aud.as_slice() {
            [] => None,
            [one] => Some(Value::from(one.as_str())),
            many => Some(Value::from(many.to_vec())),
        }
    }
}

/// A plain OAuth access token.
#[derive(Debug)]
pub(crate) struct AccessToken {
    pub(crate) sub: String,
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) iat: i64,
    pub(crate) exp: i64,
    pub(crate) revoked: bool,
    /// Issued to a user (password grant) rather than to the client itself.
    pub(crate) user: bool,
    /// The `jti` of a JWT access token (Keycloak), for introspection.
    pub(crate) jti: Option<String>,
}

impl AccessToken {
    pub(crate) fn is_active_at(&self, now_ms: i64) -> bool {
        !self.revoked && now_ms < self.exp.saturating_mul(1000)
    }

    pub(crate) fn is_pat(&self) -> bool {
        self.scopes.iter().any(|s| s == UMA_PROTECTION)
    }
}

/// A registered resource.
#[derive(Debug)]
pub(crate) struct Resource {
    pub(crate) id: String,
    /// The description, `owner` always filled in.
    pub(crate) desc: ResourceDescription,
    /// The client whose PAT registered it (the RS), for the `aud` of JWT RPTs.
    pub(crate) registered_by: Option<String>,
    /// Keycloak members kept for reads (`uris`, `ownerManagedAccess`, `displayName`,
    /// `attributes`).
    pub(crate) extra: Map<String, Value>,
}

/// One requested permission: a resource and the scopes asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Requested {
    pub(crate) resource_id: String,
    pub(crate) scopes: Vec<String>,
}

/// A permission ticket.
#[derive(Clone, Debug)]
pub(crate) struct Ticket {
    pub(crate) permissions: Vec<Requested>,
    pub(crate) expires_at: Instant,
    pub(crate) used: bool,
    /// Set on tickets re-issued by the grant: only this client may redeem them.
    pub(crate) bound_client: Option<String>,
    /// The requesting party learnt from an earlier claim token.
    pub(crate) requester: Option<String>,
    /// Approval requests this ticket is waiting for.
    pub(crate) approvals: Vec<String>,
    /// The subject and client of the PAT that asked for the ticket (claims of Keycloak's JWT
    /// tickets).
    pub(crate) origin: Option<(String, String)>,
}

/// An approval request and its state.
#[derive(Debug)]
pub(crate) struct PendingRecord {
    pub(crate) request: PendingRequest,
    pub(crate) decision: Decision,
}

/// The owner's decision on an approval request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Pending,
    Approved,
    Denied,
}

/// A fresh random string with `bytes` bytes of entropy, base64url without padding.
pub(crate) fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A random UUID (version 4), the shape of WSO2's opaque tokens and tickets.
pub(crate) fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(&b)
}

/// 16 bytes written as a UUID (`8-4-4-4-12` lower-case hex digits).
pub(crate) fn uuid_text(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `ceil(ms / 1000)` for non-negative millisecond counts.
const fn ceil_secs(ms: i64) -> i64 {
    (ms + 999).div_euclid(1000)
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `expires_in` for a lifetime: whole seconds, rounded up.
pub(crate) fn expires_in(d: Duration) -> i64 {
    ceil_secs(duration_ms(d))
}

impl Shared {
    pub(crate) fn new(
        base: String,
        layout: Layout,
        settings: Settings,
        keys: Keys,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            issuer: layout.issuer(&base),
            token_issuer: layout.token_issuer(&base),
            dialect: layout.dialect,
            layout,
            base,
            settings,
            keys,
            faults: Faults::default(),
            store: Mutex::new(Store::default()),
            pats_issued: AtomicU64::new(0),
            stop,
        }
    }

    /// The absolute URL of an endpoint.
    pub(crate) fn url(&self, endpoint: Endpoint) -> String {
        self.layout.url(&self.base, endpoint)
    }

    /// A fresh opaque token in the dialect's shape: 256 random bits base64url, or a UUID for
    /// WSO2.
    pub(crate) fn opaque_token(&self) -> String {
        match self.dialect {
            Dialect::Wso2 => uuid_v4(),
            Dialect::Standard | Dialect::Keycloak => random_id(32),
        }
    }

    /// Locks the store (a poisoned lock is still usable: every update is a single step).
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver that turns `true` when the server shuts down.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    pub(crate) fn pats_issued(&self) -> u64 {
        self.pats_issued.load(Ordering::SeqCst)
    }

    /// Unix seconds at which a token issued now with lifetime `ttl` expires (rounded up).
    pub(crate) fn exp_after(ttl: Duration) -> i64 {
        ceil_secs(unix_now_ms().saturating_add(duration_ms(ttl)))
    }

    /// Issues an access token (a PAT when `scopes` contains `uma_protection`); `user` says
    /// it was issued to the user `sub` (password grant). Keycloak's are JWTs (its client
    /// library decodes them), WSO2's UUIDs, the others random strings.
    pub(crate) fn issue_access_token(
        &self,
        sub: &str,
        client_id: &str,
        scopes: Vec<String>,
        user: bool,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut record = AccessToken {
            sub: sub.to_owned(),
            client_id: client_id.to_owned(),
            scopes,
            iat: unix_now_ms().div_euclid(1000),
            exp: Self::exp_after(self.settings.pat_ttl),
            revoked: false,
            user,
            jti: None,
        };
        let token = match self.dialect {
            Dialect::Keycloak => {
                let jti = random_id(16);
                let mut claims = Map::new();
                claims.insert("exp".to_owned(), Value::from(record.exp));
                claims.insert("iat".to_owned(), Value::from(record.iat));
                claims.insert("jti".to_owned(), Value::from(jti.as_str()));
                claims.insert("iss".to_owned(), Value::from(self.token_issuer.as_str()));
                claims.insert("sub".to_owned(), Value::from(sub));
                claims.insert("typ".to_owned(), Value::from(KEYCLOAK_ACCESS_TYP));
                claims.insert("azp".to_owned(), Value::from(client_id));
                claims.insert("scope".to_owned(), Value::from(record.scopes.join(" ")));
                if user {
                    claims.insert("preferred_username".to_owned(), Value::from(sub));
                } else {
                    claims.insert("client_id".to_owned(), Value::from(client_id));
                }
                record.jti = Some(jti);
                self.keys.sign(ID_TOKEN_TYP, &claims)?
            }
            Dialect::Standard | Dialect::Wso2 => self.opaque_token(),
        };
        if record.is_pat() {
            self.pats_issued.fetch_add(1, Ordering::SeqCst);
        }
        self.store()
            .tokens
            .insert(token.clone(), TokenRecord::Access(record));
        Ok(token)
    }

    /// Stores an RPT for `spec`, encoded per the configured format.
    pub(crate) fn store_rpt(&self, spec: RptSpec) -> Result<String, jsonwebtoken::errors::Error> {
        let meta = RptMeta {
            jti: random_id(16),
            aud: self.rpt_audience(&spec),
        };
        let token = match self.settings.rpt_format {
            RptFormat::Opaque => self.opaque_token(),
            RptFormat::Jwt => {
                let claims = self.rpt_claims(&spec, &meta);
                let typ = match self.dialect {
                    Dialect::Keycloak => ID_TOKEN_TYP,
                    Dialect::Standard | Dialect::Wso2 => RPT_TYP,
                };
                self.keys.sign(typ, &claims)?
            }
        };
        self.store().tokens.insert(
            token.clone(),
            TokenRecord::Rpt {
                spec,
                revoked: false,
                meta,
            },
        );
        Ok(token)
    }

    /// The clients that registered the resources of an RPT, else its client.
    fn rpt_audience(&self, spec: &RptSpec) -> Vec<String> {
        let mut aud: Vec<String> = Vec::new();
        {
            let store = self.store();
            for permission in &spec.permissions {
                if let Some(client) = store
                    .resource(&permission.resource_id)
                    .and_then(|r| r.registered_by.clone())
                    && !aud.contains(&client)
                {
                    aud.push(client);
                }
            }
        }
        if aud.is_empty()
            && let Some(client) = &spec.client_id
        {
            aud.push(client.clone());
        }
        aud
    }

    /// The claims of a JWT RPT: the spec's members plus `iss`, `jti` and `aud`. Keycloak's
    /// carry `authorization.permissions` (`rsid`, `rsname`, `scopes`), `typ` and `azp` instead
    /// of `permissions` and `client_id`.
    fn rpt_claims(&self, spec: &RptSpec, meta: &RptMeta) -> Map<String, Value> {
        let mut claims = match self.dialect {
            Dialect::Keycloak => {
                let store = self.store();
                spec.keycloak_claims(|id| store.resource_name(id))
            }
            Dialect::Standard | Dialect::Wso2 => spec.common_claims(),
        };
        claims.insert("iss".to_owned(), Value::from(self.token_issuer.as_str()));
        claims.insert("jti".to_owned(), Value::from(meta.jti.as_str()));
        if let Some(aud) = meta.aud_value() {
            claims.insert("aud".to_owned(), aud);
        }
        for (key, value) in &spec.extra {
            claims.insert(key.clone(), value.clone());
        }
        claims
    }

    /// Signs an ID token for `sub`, audience `aud`.
    pub(crate) fn id_token(
        &self,
        sub: &str,
        aud: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = unix_now_ms().div_euclid(1000);
        let mut claims = Map::new();
        claims.insert("iss".to_owned(), Value::from(self.token_issuer.as_str()));
        claims.insert("sub".to_owned(), Value::from(sub));
        claims.insert("aud".to_owned(), Value::from(aud));
        claims.insert("iat".to_owned(), Value::from(now));
        claims.insert("auth_time".to_owned(), Value::from(now));
        claims.insert("exp".to_owned(), Value::from(Self::exp_after(ID_TOKEN_TTL)));
        claims.insert("preferred_username".to_owned(), Value::from(sub));
        if self.dialect == Dialect::Keycloak {
            claims.insert("typ".to_owned(), Value::from(KEYCLOAK_ID_TYP));
            claims.insert("azp".to_owned(), Value::from(aud));
            claims.insert("jti".to_owned(), Value::from(random_id(16)));
        }
        self.keys.sign(ID_TOKEN_TYP, &claims)
    }

    /// A fresh resource id: a UUID like Keycloak's and WSO2's, or 128 random bits.
    pub(crate) fn resource_id(&self) -> String {
        match self.dialect {
            Dialect::Keycloak | Dialect::Wso2 => uuid_v4(),
            Dialect::Standard => random_id(16),
        }
    }

    /// Registers a resource; `desc.owner` must already be filled in.
    pub(crate) fn add_resource(
        &self,
        desc: ResourceDescription,
        registered_by: Option<String>,
    ) -> String {
        let id = self.resource_id();
        self.store().resources.push(Resource {
            id: id.clone(),
            desc,
            registered_by,
            extra: Map::new(),
        });
        id
    }

    /// Stores a new live ticket: 256 random bits, a UUID for WSO2, or for Keycloak an ES256
    /// JWT (`iss`, `aud` = the issuer, `iat`, `exp`, `jti`, `sub` and `azp` of the PAT, and
    /// `permissions` as `rsid` + `scopes`). The store keeps every ticket, whatever its shape.
    pub(crate) fn new_ticket(
        &self,
        store: &mut Store,
        mut ticket: Ticket,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let id = match self.dialect {
            Dialect::Standard => random_id(32),
            Dialect::Wso2 => uuid_v4(),
            Dialect::Keycloak => {
                let now = unix_now_ms().div_euclid(1000);
                let mut claims = Map::new();
                claims.insert("iss".to_owned(), Value::from(self.token_issuer.as_str()));
                claims.insert("aud".to_owned(), Value::from(self.issuer.as_str()));
                claims.insert("iat".to_owned(), Value::from(now));
                claims.insert(
                    "exp".to_owned(),
                    Value::from(Self::exp_after(self.settings.ticket_ttl)),
                );
                claims.insert("jti".to_owned(), Value::from(random_id(16)));
                if let Some((sub, azp)) = &ticket.origin {
                    claims.insert("sub".to_owned(), Value::from(sub.as_str()));
                    claims.insert("azp".to_owned(), Value::from(azp.as_str()));
                }
                let permissions: Vec<Value> = ticket
                    .permissions
                    .iter()
                    .map(|p| {
                        let mut permission = Map::new();
                        permission.insert("rsid".to_owned(), Value::from(p.resource_id.as_str()));
                        if !p.scopes.is_empty() {
                            permission.insert("scopes".to_owned(), Value::from(p.scopes.clone()));
                        }
                        Value::Object(permission)
                    })
                    .collect();
                claims.insert("permissions".to_owned(), Value::from(permissions));
                self.keys.sign(ID_TOKEN_TYP, &claims)?
            }
        };
        ticket.expires_at = Instant::now() + self.settings.ticket_ttl;
        ticket.used = false;
        store.tickets.insert(id.clone(), ticket);
        Ok(id)
    }

    /// Records the owner's decision; false if the request is unknown or already decided.
    pub(crate) fn decide(&self, request_id: &str, owner: Option<&str>, approve: bool) -> Ruling {
        let mut store = self.store();
        let Some(record) = store
            .requests
            .iter_mut()
            .find(|r| r.request.id == request_id)
        else {
            return Ruling::Unknown;
        };
        if owner.is_some_and(|owner| owner != record.request.owner) {
            return Ruling::Unknown;
        }
        if record.decision != Decision::Pending {
            return Ruling::AlreadyDecided;
        }
        record.decision = if approve {
            Decision::Approved
        } else {
            Decision::Denied
        };
        Ruling::Done
    }

    /// The pending approval requests of `owner`.
    pub(crate) fn pending_for(&self, owner: &str) -> Vec<PendingRequest> {
        self.store()
            .requests
            .iter()
            .filter(|r| r.decision == Decision::Pending && r.request.owner == owner)
            .map(|r| r.request.clone())
            .collect()
    }

    /// Revokes any token; unknown tokens are ignored (RFC 7009 §2.2).
    pub(crate) fn revoke(&self, token: &str) {
        match self.store().tokens.get_mut(token) {
            Some(TokenRecord::Access(access)) => access.revoked = true,
            Some(TokenRecord::Rpt { revoked, .. }) => *revoked = true,
            None => {}
        }
    }
}

/// The result of [`Shared::decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ruling {
    Done,
    Unknown,
    AlreadyDecided,
}

impl Store {
    pub(crate) fn resource(&self, id: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.id == id)
    }

    /// The name of a registered resource, if it has one.
    pub(crate) fn resource_name(&self, id: &str) -> Option<String> {
        self.resource(id).and_then(|r| r.desc.name.clone())
    }

    pub(crate) fn resource_mut(&mut self, id: &str) -> Option<&mut Resource> {
        self.resources.iter_mut().find(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_url_safe_and_long_enough() {
        let id = random_id(32);
        assert_eq!(id.len(), 43);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(id, random_id(32));
    }

    #[test]
    fn uuids_have_version_4_shape() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'));
        assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(id, uuid_v4());
    }

    #[test]
    fn lifetimes_round_up() {
        assert_eq!(ceil_secs(0), 0);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(1000), 1);
        assert_eq!(ceil_secs(1001), 2);
        assert_eq!(expires_in(Duration::from_millis(500)), 1);
        assert_eq!(expires_in(Duration::from_secs(300)), 300);
    }
}
