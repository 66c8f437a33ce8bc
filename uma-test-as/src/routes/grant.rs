//! The UMA grant (`grant_type=urn:ietf:params:oauth:grant-type:uma-ticket`, UMA Grant §3.3).
//!
//! 1. The ticket is redeemed first and is then spent whatever the outcome (Grant §5.5):
//!    unknown, used, expired, or issued to another client → 400 `invalid_grant`.
//! 2. The requesting party is the `sub` of the pushed ID token (`claim_token` with
//!    `claim_token_format` = the OIDC ID-token URI), or the one learnt from an earlier claim
//!    token for the same request. An ID token this server did not issue → 400 `invalid_grant`.
//! 3. `scope` may only name scopes registered for a resource in the ticket (else 400
//!    `invalid_scope`). No client has pre-registered scopes, so it never widens the request
//!    (Grant §3.3.4): the granted scopes are exactly those the ticket asked for.
//! 4. The policies assess every (resource, scope) pair (see [`crate::policy`]); the outcome
//!    is all-or-nothing:
//!    any denied pair → 403 `request_denied`; else a pair that needs an identity → 403
//!    `need_info` with a new ticket and `required_claims`; else pairs awaiting the owner →
//!    403 `request_submitted` with a new ticket (the approval request is created once and
//!    re-used by the following tickets); else an RPT.
//! 5. `rpt` upgrades: when it names an unrevoked RPT issued to the same client, the new RPT
//!    carries its permissions too, the old one is revoked and the answer says
//!    `"upgraded": true`; any other `rpt` value yields `"upgraded": false`.
//!
//! Tickets re-issued by `need_info`/`request_submitted` are bound to the client that got them.
//!
//! The dialects answer differently (docs/protocol.md §9.2, §9.3):
//!
//! * **Keycloak**: the ticket (a JWT) is reusable until it expires, like Keycloak's stateless
//!   tickets; without a ticket, `permission=RESOURCE[#scope,…]` parameters (id or name)
//!   name the permissions. Unknown or expired ticket → 403 `invalid_ticket`; a resource that
//!   does not exist → 400 `invalid_resource`. There is no `need_info`: a pair that would
//!   need an identity is denied. `submit_request` is read as Java's `Boolean.valueOf` and,
//!   absent from a ticket grant, is true (Keycloak 26 with user-managed access on). With it,
//!   every refusal is 403 `access_denied` / `request_submitted` (no new ticket) and a pair
//!   awaiting its owner creates an approval request; with `submit_request=false` (or an empty
//!   or other value) the refusal is `not_authorized` and nothing is asked. Approvals
//!   belong to (resource, requesting party) like Keycloak's permission tickets, so after the
//!   owner approves, the client presents the **same** ticket again. `claim_token` with the
//!   ID-token format identifies the requesting party; with Keycloak's JWT format (or none)
//!   it is pushed claims and ignored. Authenticated as a client, `subject_token` (an active
//!   access token or RPT) names the requesting party, as Keycloak's enforcer sends it; an
//!   RPT as the bearer is refused (401). `scope` is ignored; `response_mode=decision` answers
//!   `{"result": true}` and `response_mode=permissions` the granted permissions instead of
//!   an RPT.
//! * **WSO2**: `claim_token` (an ID token; `claim_token_format` ignored) is required; the
//!   ticket is single-use; every failure — missing claim token, bad ticket, denial, a pair
//!   that would need approval — is 400 `invalid_grant` "Provided Authorization Grant is
//!   invalid"; `rpt` is ignored (no upgrade).

use std::time::Instant;

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::Form;
use super::token::{Caller, token_body};
use crate::dialect::Dialect;
use crate::dialect::names::{ID_TOKEN_FORMAT, JWT_CLAIM_FORMAT};
use crate::error::{OAuthError, json_response};
use crate::model::{PendingRequest, RptPermission, RptSpec, unix_now_secs};
use crate::policy::{Outcome, assess};
use crate::state::{
    Decision, PendingRecord, Requested, Shared, Store, Ticket, TokenRecord, expires_in, random_id,
};

/// Runs the grant for an authenticated caller.
pub(super) fn uma_ticket(
    shared: &Shared,
    caller: &Caller,
    form: &Form,
) -> Result<axum::response::Response, OAuthError> {
    match shared.dialect {
        Dialect::Standard => standard(shared, &caller.client_id, form),
        Dialect::Keycloak => keycloak(shared, caller, form),
        Dialect::Wso2 => wso2(shared, &caller.client_id, form),
    }
}

/// The standard grant (UMA Grant §3.3), see the module docs.
fn standard(
    shared: &Shared,
    client_id: &str,
    form: &Form,
) -> Result<axum::response::Response, OAuthError> {
    let ticket_id = form.required("ticket")?;
    let claim_token = match (form.get("claim_token"), form.get("claim_token_format")) {
        (None, None) => None,
        (Some(token), Some(format)) if format == ID_TOKEN_FORMAT => Some(token),
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(format!(
                "unsupported claim_token_format; this server accepts {ID_TOKEN_FORMAT}"
            )));
        }
        _ => {
            return Err(OAuthError::invalid_request(
                "claim_token and claim_token_format must be sent together",
            ));
        }
    };
    let requested_scopes: Vec<&str> = form
        .get("scope")
        .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();

    let ticket = redeem(shared, ticket_id, client_id)?;

    let requester = match claim_token {
        Some(token) => Some(identify(shared, token)?),
        None => ticket.requester.clone(),
    };

    let mut store = shared.store();
    for scope in &requested_scopes {
        let offered = ticket.permissions.iter().any(|p| {
            store
                .resource(&p.resource_id)
                .is_some_and(|r| r.desc.resource_scopes.iter().any(|s| s == scope))
        });
        if !offered {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{scope}` is not available for the resources of this ticket"
            )));
        }
    }

    let assessment = assess_ticket(shared, &store, &ticket, requester.as_deref(), client_id);
    if assessment.denied {
        tracing::debug!(client_id, "uma grant denied");
        return Err(OAuthError::new(StatusCode::FORBIDDEN, "request_denied")
            .describe("the policies do not grant the requested permissions"));
    }
    if assessment.need_info {
        let next = shared
            .new_ticket(
                &mut store,
                Ticket {
                    bound_client: Some(client_id.to_owned()),
                    requester,
                    ..ticket
                },
            )
            .map_err(|_| OAuthError::server_error("cannot sign the ticket"))?;
        return Err(OAuthError::new(StatusCode::FORBIDDEN, "need_info")
            .describe("the requesting party must identify itself with an ID token")
            .with("ticket", next)
            .with(
                "required_claims",
                json!([{
                    "claim_token_format": [ID_TOKEN_FORMAT],
                    "claim_type": "string",
                    "friendly_name": "subject",
                    "issuer": [shared.token_issuer],
                    "name": "sub",
                }]),
            ));
    }
    if assessment.waiting || !assessment.new_requests.is_empty() {
        let mut approvals = ticket.approvals.clone();
        for request in assessment.new_requests {
            approvals.push(request.id.clone());
            store.requests.push(PendingRecord {
                request,
                decision: Decision::Pending,
            });
        }
        let next = shared
            .new_ticket(
                &mut store,
                Ticket {
                    bound_client: Some(client_id.to_owned()),
                    requester,
                    approvals,
                    ..ticket
                },
            )
            .map_err(|_| OAuthError::server_error("cannot sign the ticket"))?;
        return Err(OAuthError::new(StatusCode::FORBIDDEN, "request_submitted")
            .describe("the resource owner has been asked to approve the request")
            .with("ticket", next));
    }

    let exp = Shared::exp_after(shared.settings.rpt_ttl);
    let mut permissions: Vec<RptPermission> = ticket
        .permissions
        .iter()
        .map(|p| RptPermission {
            exp: Some(exp),
            ..RptPermission::new(p.resource_id.as_str(), p.scopes.iter().map(String::as_str))
        })
        .collect();
    let upgraded = form
        .get("rpt")
        .map(|rpt| match take_for_upgrade(&mut store, rpt, client_id) {
            Some(old) => {
                merge(&mut permissions, old, Some(exp));
                true
            }
            None => false,
        });
    drop(store);
    issue_rpt(shared, requester, client_id, exp, permissions, upgraded)
}

/// Stores and answers an RPT (`access_token`, `token_type`, `expires_in`, `upgraded` when
/// an `rpt` was sent).
fn issue_rpt(
    shared: &Shared,
    requester: Option<String>,
    client_id: &str,
    exp: i64,
    permissions: Vec<RptPermission>,
    upgraded: Option<bool>,
) -> Result<axum::response::Response, OAuthError> {
    let spec = RptSpec {
        sub: requester,
        client_id: Some(client_id.to_owned()),
        exp: Some(exp),
        iat: Some(unix_now_secs()),
        nbf: None,
        permissions,
        extra: Map::new(),
    };
    let rpt = shared
        .store_rpt(spec)
        .map_err(|_| OAuthError::server_error("cannot sign the RPT"))?;
    let mut body = token_body(shared, &rpt, expires_in(shared.settings.rpt_ttl));
    if let Some(upgraded) = upgraded {
        body.insert("upgraded".to_owned(), Value::Bool(upgraded));
    }
    tracing::debug!(client_id, upgraded, "rpt issued");
    Ok(json_response(StatusCode::OK, &Value::Object(body)))
}

/// The requesting party named by an ID token this server issued.
fn identify(shared: &Shared, id_token: &str) -> Result<String, OAuthError> {
    shared
        .keys
        .verify_id_token(id_token, &shared.token_issuer)
        .map(|claims| claims.sub)
        .ok_or_else(|| {
            OAuthError::invalid_grant(
                "the claim token is not a valid ID token issued by this server",
            )
        })
}

/// Keycloak's grant, see the module docs.
fn keycloak(
    shared: &Shared,
    caller: &Caller,
    form: &Form,
) -> Result<axum::response::Response, OAuthError> {
    let client_id = caller.client_id.as_str();
    let denied =
        || OAuthError::new(StatusCode::FORBIDDEN, "access_denied").describe("not_authorized");
    let submitted =
        || OAuthError::new(StatusCode::FORBIDDEN, "access_denied").describe("request_submitted");
    let requester = match (form.get("claim_token"), form.get("claim_token_format")) {
        (Some(token), Some(ID_TOKEN_FORMAT)) => Some(identify(shared, token)?),
        // Pushed claims (Keycloak's default format): accepted, not an identity.
        (Some(_), None | Some(JWT_CLAIM_FORMAT)) | (None, _) => caller.user.clone(),
        (Some(_), Some(format)) => {
            return Err(OAuthError::invalid_request(format!(
                "Claim token format [{format}] not supported"
            )));
        }
    };
    // Keycloak reads `submit_request` as Java's `Boolean.valueOf` ("true" in any letter case is
    // true, anything else false) and takes its absence from a ticket grant as true (a realm
    // with user-managed access on); it only has effect with a ticket.
    let submit = form.get("ticket").is_some()
        && form
            .get_raw("submit_request")
            .is_none_or(|v| v.eq_ignore_ascii_case("true"));

    let mut store = shared.store();
    let requested = match form.get("ticket") {
        Some(ticket_id) => {
            let ticket = store
                .tickets
                .get(ticket_id)
                .filter(|t| t.expires_at > Instant::now())
                .ok_or_else(|| {
                    OAuthError::new(StatusCode::FORBIDDEN, "invalid_ticket")
                        .describe("Ticket verification failed")
                })?;
            ticket.permissions.clone()
        }
        None => keycloak_permissions(&store, &form.all("permission"))?,
    };
    if let Some(missing) = requested
        .iter()
        .find(|p| store.resource(&p.resource_id).is_none())
    {
        return Err(
            OAuthError::new(StatusCode::BAD_REQUEST, "invalid_resource").describe(format!(
                "Resource with id [{}] does not exist.",
                missing.resource_id
            )),
        );
    }

    let who = requester.as_deref().unwrap_or(client_id).to_owned();
    let mut refused = false;
    let mut waiting = false;
    let mut new_requests: Vec<PendingRequest> = Vec::new();
    for PairOutcomes {
        resource_id,
        owner,
        outcomes,
    } in pair_outcomes(shared, &store, &requested, requester.as_deref())
    {
        let mut approval: Option<Vec<String>> = None;
        for (scope, outcome) in outcomes {
            match outcome {
                Outcome::Granted => {}
                Outcome::NeedInfo | Outcome::Denied => refused = true,
                Outcome::Approval => approval.get_or_insert_with(Vec::new).extend(scope),
            }
        }
        let Some(approval) = approval else {
            continue;
        };
        // Keycloak's permission tickets belong to (resource, requester): the latest one that
        // covers these scopes decides.
        let existing = store.requests.iter().rev().find(|r| {
            r.request.resource_id == resource_id
                && r.request.requester == who
                && approval.iter().all(|s| r.request.scopes.contains(s))
        });
        match existing.map(|r| r.decision) {
            Some(Decision::Approved) => {}
            Some(Decision::Denied) => refused = true,
            Some(Decision::Pending) => waiting = true,
            None => new_requests.push(PendingRequest {
                id: random_id(16),
                owner,
                requester: who.clone(),
                client_id: client_id.to_owned(),
                resource_id,
                scopes: approval,
            }),
        }
    }
    if refused || ((waiting || !new_requests.is_empty()) && !submit) {
        tracing::debug!(client_id, "uma grant denied");
        // With `submit_request` on, Keycloak answers every refusal `request_submitted`.
        return Err(if submit { submitted() } else { denied() });
    }
    if waiting || !new_requests.is_empty() {
        for request in new_requests {
            store.requests.push(PendingRecord {
                request,
                decision: Decision::Pending,
            });
        }
        return Err(submitted());
    }

    let mut permissions: Vec<RptPermission> = requested
        .iter()
        .map(|p| RptPermission::new(p.resource_id.as_str(), p.scopes.iter().map(String::as_str)))
        .collect();
    match form.get("response_mode") {
        Some("decision") => {
            return Ok(json_response(StatusCode::OK, &json!({"result": true})));
        }
        Some("permissions") => {
            let list: Vec<Value> = permissions
                .iter()
                .map(|p| p.keycloak_json(store.resource_name(&p.resource_id).as_deref(), false))
                .collect();
            return Ok(json_response(StatusCode::OK, &Value::Array(list)));
        }
        _ => {}
    }
    // Keycloak always says whether it upgraded (`false` without an `rpt`).
    let upgraded =
        form.get("rpt")
            .is_some_and(|rpt| match take_for_upgrade(&mut store, rpt, client_id) {
                Some(old) => {
                    merge(&mut permissions, old, None);
                    true
                }
                None => false,
            });
    drop(store);
    let exp = Shared::exp_after(shared.settings.rpt_ttl);
    issue_rpt(
        shared,
        requester,
        client_id,
        exp,
        permissions,
        Some(upgraded),
    )
}

/// Keycloak's ticketless request: `permission=RESOURCE[#scope1,scope2]`, the resource by id
/// or by name; repeated resources are merged.
fn keycloak_permissions(store: &Store, values: &[&str]) -> Result<Vec<Requested>, OAuthError> {
    if values.is_empty() {
        return Err(OAuthError::invalid_request(
            "send a ticket or at least one permission",
        ));
    }
    let mut requested: Vec<Requested> = Vec::new();
    for value in values {
        let (resource, scopes) = value.split_once('#').unwrap_or((value, ""));
        let Some(resource) = store
            .resources
            .iter()
            .find(|r| r.id == resource)
            .or_else(|| {
                store
                    .resources
                    .iter()
                    .find(|r| r.desc.name.as_deref() == Some(resource))
            })
        else {
            return Err(OAuthError::new(StatusCode::BAD_REQUEST, "invalid_resource")
                .describe(format!("Resource with id [{resource}] does not exist.")));
        };
        let scopes: Vec<String> = scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(unknown) = scopes
            .iter()
            .find(|s| !resource.desc.resource_scopes.contains(s))
        {
            return Err(OAuthError::invalid_scope(format!(
                "Invalid scopes [{unknown}] for resource [{}]",
                resource.id
            )));
        }
        match requested.iter_mut().find(|r| r.resource_id == resource.id) {
            Some(existing) => {
                for scope in scopes {
                    if !existing.scopes.contains(&scope) {
                        existing.scopes.push(scope);
                    }
                }
            }
            None => requested.push(Requested {
                resource_id: resource.id.clone(),
                scopes,
            }),
        }
    }
    Ok(requested)
}

/// WSO2's grant, see the module docs.
fn wso2(
    shared: &Shared,
    client_id: &str,
    form: &Form,
) -> Result<axum::response::Response, OAuthError> {
    let invalid = || OAuthError::invalid_grant("Provided Authorization Grant is invalid");
    let (Some(ticket_id), Some(claim_token)) = (form.get("ticket"), form.get("claim_token")) else {
        return Err(invalid());
    };
    let ticket = redeem(shared, ticket_id, client_id).map_err(|_| invalid())?;
    let requester = identify(shared, claim_token).map_err(|_| invalid())?;
    let store = shared.store();
    let all_granted = ticket
        .permissions
        .iter()
        .all(|p| store.resource(&p.resource_id).is_some())
        && pair_outcomes(shared, &store, &ticket.permissions, Some(&requester))
            .iter()
            .all(|p| p.outcomes.iter().all(|(_, o)| *o == Outcome::Granted));
    drop(store);
    if !all_granted {
        tracing::debug!(client_id, "uma grant denied");
        return Err(invalid());
    }
    let permissions = ticket
        .permissions
        .iter()
        .map(|p| RptPermission::new(p.resource_id.as_str(), p.scopes.iter().map(String::as_str)))
        .collect();
    let exp = Shared::exp_after(shared.settings.rpt_ttl);
    issue_rpt(shared, Some(requester), client_id, exp, permissions, None)
}

/// The assessment of one requested resource.
#[derive(Debug)]
struct PairOutcomes {
    resource_id: String,
    owner: String,
    /// `(scope, outcome)` pairs; one `None` scope for an empty scope list.
    outcomes: Vec<(Option<String>, Outcome)>,
}

/// The policy outcome of every (resource, scope) pair, per existing resource.
fn pair_outcomes(
    shared: &Shared,
    store: &Store,
    permissions: &[Requested],
    requester: Option<&str>,
) -> Vec<PairOutcomes> {
    permissions
        .iter()
        .filter_map(|permission| {
            let resource = store.resource(&permission.resource_id)?;
            let checks: Vec<Option<&str>> = if permission.scopes.is_empty() {
                vec![None]
            } else {
                permission.scopes.iter().map(|s| Some(s.as_str())).collect()
            };
            let outcomes = checks
                .into_iter()
                .map(|scope| {
                    let outcome = assess(
                        &shared.settings.policies,
                        &resource.id,
                        &resource.desc,
                        scope,
                        requester,
                    );
                    (scope.map(str::to_owned), outcome)
                })
                .collect();
            Some(PairOutcomes {
                resource_id: resource.id.clone(),
                owner: resource.desc.owner.clone().unwrap_or_default(),
                outcomes,
            })
        })
        .collect()
}

/// Spends a ticket and returns it, or says why it cannot be used.
fn redeem(shared: &Shared, ticket_id: &str, client_id: &str) -> Result<Ticket, OAuthError> {
    let mut store = shared.store();
    let Some(ticket) = store.tickets.get_mut(ticket_id) else {
        return Err(OAuthError::invalid_grant("unknown ticket"));
    };
    if ticket.used {
        return Err(OAuthError::invalid_grant(
            "the ticket has already been used",
        ));
    }
    ticket.used = true;
    if ticket.expires_at <= Instant::now() {
        return Err(OAuthError::invalid_grant("the ticket has expired"));
    }
    if ticket
        .bound_client
        .as_deref()
        .is_some_and(|bound| bound != client_id)
    {
        return Err(OAuthError::invalid_grant(
            "the ticket was issued to another client",
        ));
    }
    Ok(ticket.clone())
}

/// What the policies say about a whole ticket.
#[derive(Debug, Default)]
struct Assessment {
    denied: bool,
    need_info: bool,
    /// Some approval request of this ticket is still pending.
    waiting: bool,
    /// Approval requests to create.
    new_requests: Vec<PendingRequest>,
}

fn assess_ticket(
    shared: &Shared,
    store: &Store,
    ticket: &Ticket,
    requester: Option<&str>,
    client_id: &str,
) -> Assessment {
    let mut result = Assessment::default();
    for permission in &ticket.permissions {
        let Some(resource) = store.resource(&permission.resource_id) else {
            // Deleted since the ticket was issued.
            result.denied = true;
            continue;
        };
        let checks: Vec<Option<&str>> = if permission.scopes.is_empty() {
            vec![None]
        } else {
            permission.scopes.iter().map(|s| Some(s.as_str())).collect()
        };
        let mut approval: Option<Vec<String>> = None;
        for scope in checks {
            match assess(
                &shared.settings.policies,
                &resource.id,
                &resource.desc,
                scope,
                requester,
            ) {
                Outcome::Granted => {}
                Outcome::NeedInfo => result.need_info = true,
                Outcome::Denied => result.denied = true,
                Outcome::Approval => approval
                    .get_or_insert_with(Vec::new)
                    .extend(scope.map(str::to_owned)),
            }
        }
        let Some(scopes) = approval else {
            continue;
        };
        let existing = store.requests.iter().find(|r| {
            ticket.approvals.contains(&r.request.id)
                && r.request.resource_id == permission.resource_id
                && scopes.iter().all(|s| r.request.scopes.contains(s))
        });
        match existing.map(|r| r.decision) {
            Some(Decision::Approved) => {}
            Some(Decision::Denied) => result.denied = true,
            Some(Decision::Pending) => result.waiting = true,
            None => result.new_requests.push(PendingRequest {
                id: random_id(16),
                owner: resource.desc.owner.clone().unwrap_or_default(),
                requester: requester.unwrap_or(client_id).to_owned(),
                client_id: client_id.to_owned(),
                resource_id: resource.id.clone(),
                scopes,
            }),
        }
    }
    result
}

/// Revokes an RPT being upgraded and returns its permissions, if it may be upgraded.
fn take_for_upgrade(store: &mut Store, rpt: &str, client_id: &str) -> Option<Vec<RptPermission>> {
    match store.tokens.get_mut(rpt) {
        Some(TokenRecord::Rpt { spec, revoked, .. })
            if !*revoked && spec.client_id.as_deref() == Some(client_id) =>
        {
            *revoked = true;
            Some(spec.permissions.clone())
        }
        _ => None,
    }
}

/// Adds the old RPT's permissions to the new ones (scopes are merged per resource).
fn merge(permissions: &mut Vec<RptPermission>, old: Vec<RptPermission>, exp: Option<i64>) {
    for old in old {
        if let Some(current) = permissions
            .iter_mut()
            .find(|p| p.resource_id == old.resource_id)
        {
            for scope in old.resource_scopes {
                if !current.resource_scopes.contains(&scope) {
                    current.resource_scopes.push(scope);
                }
            }
        } else {
            permissions.push(RptPermission { exp, ..old });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_unions_scopes_per_resource_and_keeps_other_resources() {
        let mut new = vec![RptPermission::new("a", ["view"])];
        merge(
            &mut new,
            vec![
                RptPermission::new("a", ["edit", "view"]),
                RptPermission::new("b", ["x"]),
            ],
            Some(9),
        );
        assert_eq!(new[0].resource_scopes, ["view", "edit"]);
        assert_eq!(new[1].resource_id, "b");
        assert_eq!(new[1].exp, Some(9));
    }
}
