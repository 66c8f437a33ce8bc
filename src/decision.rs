//! The access decision: does an introspection result grant this request?
//!
//! A pure function of the (possibly cached) result, the resource and scopes the request needs,
//! and the clock. It runs on every request, so a cached "yes" for one resource or scope never
//! authorises another, and token and permission `exp`/`nbf` are checked at request time, not
//! only when the result was fetched (FedAuthz §5.1.1, RFC 7662 §4).

use crate::introspect::Introspection;
use crate::principal::Granted;
use crate::resources::{ClaimValues, ScopeMode};

/// What the decision needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requirement<'a> {
    pub(crate) resource_id: &'a str,
    pub(crate) scopes: &'a [String],
    pub(crate) mode: ScopeMode,
    /// The claims the request pushes (empty when its route pushes none).
    pub(crate) claims: &'a ClaimValues,
}

/// Knobs of the decision that depend on the AS or the deployment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// Seconds of tolerance for clock differences with the AS.
    pub(crate) leeway: i64,
    /// Keycloak's reading: a permission with no scopes grants every scope of its resource
    /// (docs/protocol.md §7.6). Off by default: the spec reading is "no scopes granted".
    pub(crate) empty_scopes_grant_all: bool,
}

/// Why a result did not grant the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denial {
    Inactive,
    Expired,
    NotYetValid,
    NoPermission,
    InsufficientScope,
    /// The permissions for the resource were granted under other pushed claims.
    OtherClaims,
}

impl Denial {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::NoPermission => "no_permission",
            Self::InsufficientScope => "insufficient_scope",
            Self::OtherClaims => "other_claims",
        }
    }
}

/// Whether a time window [`nbf`, `exp`) holds at `now`, with `leeway` on both sides.
fn in_window(now: i64, exp: Option<i64>, nbf: Option<i64>, leeway: i64) -> Result<(), Denial> {
    if let Some(exp) = exp
        && now >= exp.saturating_add(leeway)
    {
        return Err(Denial::Expired);
    }
    if let Some(nbf) = nbf
        && now.saturating_add(leeway) < nbf
    {
        return Err(Denial::NotYetValid);
    }
    Ok(())
}

/// Whether a permission granted under `granted` claims serves a request pushing `pushed`,
/// as Keycloak's enforcer decides it: a permission without claims serves any request; one
/// with claims needs the request to push some, and every value the request pushes for each
/// of the permission's claims among the granted ones.
fn holds_claims(
    granted: Option<&std::collections::BTreeMap<String, Vec<String>>>,
    pushed: &ClaimValues,
) -> bool {
    let Some(granted) = granted else {
        return true;
    };
    if pushed.is_empty() {
        return false;
    }
    granted.iter().all(|(name, held)| {
        pushed
            .get(name)
            .is_some_and(|values| !values.is_empty() && values.iter().all(|v| held.contains(v)))
    })
}

/// Decides; on success returns which permissions of `intro` (this resource's, valid now)
/// grant the request. Allocates nothing unless the result has more than 64 permissions.
pub(crate) fn decide(
    intro: &Introspection,
    req: Requirement<'_>,
    now: i64,
    rules: Rules,
) -> Result<Granted, Denial> {
    if !intro.is_active() {
        return Err(Denial::Inactive);
    }
    in_window(now, intro.exp(), intro.nbf(), rules.leeway)?;
    let mut any_for_resource = false;
    let mut bits = 0u64;
    let mut list: Vec<usize> = Vec::new();
    let mut any_valid = false;
    let mut other_claims = false;
    for (i, p) in intro.permissions().iter().enumerate() {
        if p.resource_id() != req.resource_id {
            continue;
        }
        any_for_resource = true;
        if in_window(now, p.exp(), p.nbf(), rules.leeway).is_err() {
            continue;
        }
        if !holds_claims(p.claims(), req.claims) {
            other_claims = true;
            continue;
        }
        any_valid = true;
        if i < 64 {
            bits |= 1 << i;
        } else {
            list.push(i);
        }
    }
    if !any_valid {
        return Err(if other_claims {
            Denial::OtherClaims
        } else if any_for_resource {
            Denial::Expired
        } else {
            Denial::NoPermission
        });
    }
    let granted = if list.is_empty() {
        Granted::Bits(bits)
    } else {
        list.extend((0..64).filter(|i| bits & (1 << i) != 0));
        Granted::List(list)
    };
    let valid = || {
        intro
            .permissions()
            .iter()
            .enumerate()
            .filter(|(i, _)| granted.contains(*i))
            .map(|(_, p)| p)
    };
    if rules.empty_scopes_grant_all && valid().any(|p| p.resource_scopes().len() == 0) {
        return Ok(granted);
    }
    let held = |s: &String| valid().any(|p| p.has_scope(s));
    let ok = match req.mode {
        ScopeMode::All => req.scopes.iter().all(held),
        // With no scopes required, a valid permission for the resource is enough.
        ScopeMode::Any => req.scopes.is_empty() || req.scopes.iter().any(held),
    };
    if ok {
        Ok(granted)
    } else {
        Err(Denial::InsufficientScope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600;
    const RULES: Rules = Rules {
        leeway: 0,
        empty_scopes_grant_all: false,
    };

    fn scopes(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The permissions (by index) that `decide` grants at `NOW` under `RULES`.
    fn grant(
        intro: &Introspection,
        resource: &str,
        need: &[&str],
        mode: ScopeMode,
    ) -> Result<Granted, Denial> {
        let need = scopes(need);
        decide(
            intro,
            Requirement {
                claims: &crate::resources::NO_CLAIMS,
                resource_id: resource,
                scopes: &need,
                mode,
            },
            NOW,
            RULES,
        )
    }

    /// How many permissions `decide` grants.
    fn check(
        intro: &Introspection,
        resource: &str,
        need: &[&str],
        mode: ScopeMode,
    ) -> Result<usize, Denial> {
        grant(intro, resource, need, mode).map(|g| match g {
            Granted::Bits(b) => b.count_ones() as usize,
            Granted::List(l) => l.len(),
        })
    }

    use crate::introspect::Permission;

    fn perm(id: &str, s: &[&str]) -> Permission {
        Permission::new(id, s.iter().copied())
    }

    #[test]
    fn grants_exactly_the_permission_held() {
        // docs/protocol.md §11 checks 11, 14, 15
        let i = Introspection::active(vec![perm("R", &["read"])], Some(NOW + 60));
        assert_eq!(check(&i, "R", &["read"], ScopeMode::All), Ok(1));
        assert_eq!(
            check(&i, "R", &["write"], ScopeMode::All),
            Err(Denial::InsufficientScope)
        );
        assert_eq!(
            check(&i, "R", &["read", "write"], ScopeMode::All),
            Err(Denial::InsufficientScope)
        );
        assert_eq!(check(&i, "R", &["read", "write"], ScopeMode::Any), Ok(1));
        assert_eq!(
            check(&i, "other", &["read"], ScopeMode::All),
            Err(Denial::NoPermission)
        );
    }

    #[test]
    fn inactive_and_no_permissions_deny() {
        // docs/protocol.md §11 checks 13, 16
        assert_eq!(
            check(&Introspection::inactive(), "R", &[], ScopeMode::All),
            Err(Denial::Inactive)
        );
        let i = Introspection::active(vec![], Some(NOW + 60));
        assert_eq!(
            check(&i, "R", &["read"], ScopeMode::All),
            Err(Denial::NoPermission)
        );
    }

    #[test]
    fn token_times_are_checked() {
        // docs/protocol.md §11 checks 18, 19
        let i = Introspection::active(vec![perm("R", &["read"])], Some(NOW));
        assert_eq!(
            check(&i, "R", &["read"], ScopeMode::All),
            Err(Denial::Expired)
        );
        let i = i.with_exp(Some(NOW + 1)).with_nbf(Some(NOW + 10));
        assert_eq!(
            check(&i, "R", &["read"], ScopeMode::All),
            Err(Denial::NotYetValid)
        );
        let i = i.with_nbf(None); // nbf: 0 parses as None
        assert_eq!(check(&i, "R", &["read"], ScopeMode::All), Ok(1));
    }

    #[test]
    fn permission_times_are_checked() {
        // docs/protocol.md §11 checks 17, 19; FedAuthz §5.1.1 precedence: the stricter bound wins
        let p = perm("R", &["read"]).with_exp(Some(NOW - 1));
        let i = Introspection::active(vec![p.clone()], Some(NOW + 60));
        assert_eq!(
            check(&i, "R", &["read"], ScopeMode::All),
            Err(Denial::Expired)
        );
        let p = p.with_exp(Some(NOW + 600)).with_nbf(Some(NOW + 5));
        let i = Introspection::active(vec![p.clone()], Some(NOW + 60));
        assert_eq!(
            check(&i, "R", &["read"], ScopeMode::All),
            Err(Denial::Expired)
        );
        // A permission exp later than the token's does not extend the token.
        let p = p.with_nbf(None);
        let i = Introspection::active(vec![p], Some(NOW - 1));
        assert_eq!(
            check(&i, "R", &["read"], ScopeMode::All),
            Err(Denial::Expired)
        );
    }

    #[test]
    fn expired_permission_does_not_mask_a_valid_one() {
        let old = perm("R", &["read", "write"]).with_exp(Some(NOW - 1));
        let i = Introspection::active(vec![old, perm("R", &["read"])], None);
        assert_eq!(check(&i, "R", &["read"], ScopeMode::All), Ok(1));
        assert_eq!(
            check(&i, "R", &["write"], ScopeMode::All),
            Err(Denial::InsufficientScope)
        );
    }

    #[test]
    fn scopes_union_across_permissions_of_one_resource() {
        let i = Introspection::active(vec![perm("R", &["read"]), perm("R", &["write"])], None);
        assert_eq!(check(&i, "R", &["read", "write"], ScopeMode::All), Ok(2));
    }

    #[test]
    fn leeway_applies_both_ways() {
        let i = Introspection::active(vec![perm("R", &["read"])], Some(NOW - 2));
        let need = scopes(&["read"]);
        let req = Requirement {
            claims: &crate::resources::NO_CLAIMS,
            resource_id: "R",
            scopes: &need,
            mode: ScopeMode::All,
        };
        let lenient = Rules { leeway: 5, ..RULES };
        assert!(decide(&i, req, NOW, lenient).is_ok());
        assert_eq!(decide(&i, req, NOW, RULES), Err(Denial::Expired));
        // The other way: a token whose nbf is up to the leeway ahead is accepted.
        let i = i.with_exp(None).with_nbf(Some(NOW + 5));
        assert!(
            decide(&i, req, NOW, lenient).is_ok(),
            "nbf within the leeway"
        );
        let i = i.with_nbf(Some(NOW + 6));
        assert_eq!(decide(&i, req, NOW, lenient), Err(Denial::NotYetValid));
    }

    #[test]
    fn empty_scope_sets() {
        // docs/protocol.md §7.6: spec reading by default, Keycloak's on request
        let i = Introspection::active(vec![perm("R", &[])], None);
        assert_eq!(
            check(&i, "R", &["read"], ScopeMode::All),
            Err(Denial::InsufficientScope)
        );
        assert_eq!(check(&i, "R", &[], ScopeMode::All), Ok(1));
        let need = scopes(&["read"]);
        let kc = Rules {
            empty_scopes_grant_all: true,
            ..RULES
        };
        let req = Requirement {
            claims: &crate::resources::NO_CLAIMS,
            resource_id: "R",
            scopes: &need,
            mode: ScopeMode::All,
        };
        assert!(decide(&i, req, NOW, kc).is_ok());
    }

    #[test]
    fn denial_reasons_have_stable_names() {
        // The reason a refusal is logged with; log queries and alerts match on these names.
        let all = [
            Denial::Inactive,
            Denial::Expired,
            Denial::NotYetValid,
            Denial::NoPermission,
            Denial::InsufficientScope,
            Denial::OtherClaims,
        ];
        assert_eq!(
            all.map(Denial::as_str),
            [
                "inactive",
                "expired",
                "not_yet_valid",
                "no_permission",
                "insufficient_scope",
                "other_claims"
            ]
        );
    }

    #[test]
    fn a_permission_granted_under_claims_serves_only_those_claims() {
        let under = |claims: &str| {
            let body = format!(
                r#"{{"active": true, "permissions": [{{"rsid": "R", "scopes": ["read"], "claims": {claims}}}]}}"#
            );
            Introspection::from_json(body.as_bytes()).expect("an introspection")
        };
        let pushed = |pairs: &[(&str, &[&str])]| -> crate::resources::ClaimValues {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), scopes(v)))
                .collect()
        };
        let need = scopes(&["read"]);
        let decide_with = |i: &Introspection, claims: &crate::resources::ClaimValues| {
            let req = Requirement {
                claims,
                resource_id: "R",
                scopes: &need,
                mode: ScopeMode::All,
            };
            decide(i, req, NOW, RULES).map(|_| ())
        };
        let acme = under(r#"{"org": ["acme"], "app": "photos"}"#);
        let same = pushed(&[("org", &["acme"]), ("app", &["photos"])]);
        assert_eq!(decide_with(&acme, &same), Ok(()));
        // Another value, a claim missing, nothing pushed: not this permission.
        let other = pushed(&[("org", &["beta"]), ("app", &["photos"])]);
        assert_eq!(decide_with(&acme, &other), Err(Denial::OtherClaims));
        let partial = pushed(&[("org", &["acme"])]);
        assert_eq!(decide_with(&acme, &partial), Err(Denial::OtherClaims));
        let mixed = pushed(&[("org", &["acme", "beta"]), ("app", &["photos"])]);
        assert_eq!(decide_with(&acme, &mixed), Err(Denial::OtherClaims));
        assert_eq!(
            decide_with(&acme, &crate::resources::NO_CLAIMS),
            Err(Denial::OtherClaims)
        );
        // A permission without claims serves any request, as in Keycloak's enforcer.
        let plain = Introspection::active(vec![perm("R", &["read"])], None);
        assert_eq!(decide_with(&plain, &other), Ok(()));
        // Claims that cannot be read: the permission grants nothing.
        let unreadable = under(r#"{"org": [1]}"#);
        assert_eq!(decide_with(&unreadable, &same), Err(Denial::NoPermission));
    }

    #[test]
    fn nbf_is_inclusive() {
        // RFC 7519 §4.1.5: not accepted *before* nbf, so a token is valid from nbf on.
        let i = Introspection::active(vec![perm("R", &["read"])], None).with_nbf(Some(NOW));
        assert_eq!(check(&i, "R", &["read"], ScopeMode::All), Ok(1));
        let i = i.with_nbf(Some(NOW + 1));
        assert_eq!(
            check(&i, "R", &["read"], ScopeMode::All),
            Err(Denial::NotYetValid)
        );
    }

    #[test]
    fn any_mode_without_required_scopes_needs_only_a_valid_permission() {
        let i = Introspection::active(vec![perm("R", &[])], None);
        assert_eq!(check(&i, "R", &[], ScopeMode::Any), Ok(1));
        assert_eq!(
            check(&i, "other", &[], ScopeMode::Any),
            Err(Denial::NoPermission)
        );
    }

    /// `n` permissions, each for its own resource `other-i` with every scope, except those
    /// listed in `for_r`, which are for `R` with the given scopes.
    fn many(n: usize, for_r: &[(usize, Permission)]) -> Introspection {
        let permissions = (0..n)
            .map(|i| match for_r.iter().find(|(at, _)| *at == i) {
                Some((_, p)) => p.clone(),
                None => perm(&format!("other-{i}"), &["read", "write", "admin"]),
            })
            .collect();
        Introspection::active(permissions, None)
    }

    #[test]
    fn up_to_64_permissions_are_a_bit_set() {
        // The common case allocates nothing: indexes 0..64 are bits of one word.
        let for_r = [(0, "read"), (1, "write"), (63, "admin")].map(|(at, s)| (at, perm("R", &[s])));
        let i = many(64, &for_r);
        assert_eq!(
            grant(&i, "R", &["read", "write", "admin"], ScopeMode::All),
            Ok(Granted::Bits(1 | 1 << 1 | 1 << 63))
        );
    }

    #[test]
    fn beyond_64_permissions_each_one_is_granted_exactly() {
        // Keycloak puts every permission of the requesting party into one RPT: 70 of them
        // here, three for this resource (one of them expired) on both sides of index 64.
        let i = many(
            70,
            &[
                (3, perm("R", &["read"])),
                (64, perm("R", &["write"])),
                (69, perm("R", &["admin"]).with_exp(Some(NOW - 1))),
            ],
        );
        let granted = grant(&i, "R", &["read", "write"], ScopeMode::All).expect("granted");
        assert!(matches!(granted, Granted::List(_)), "{granted:?}");
        let held: Vec<usize> = (0..70).filter(|&k| granted.contains(k)).collect();
        assert_eq!(held, [3, 64], "exactly the valid permissions for R");
        // The scopes of other resources' permissions and of the expired one do not count.
        assert_eq!(
            check(&i, "R", &["admin"], ScopeMode::All),
            Err(Denial::InsufficientScope)
        );
        assert_eq!(check(&i, "other-65", &["admin"], ScopeMode::All), Ok(1));
        assert_eq!(
            check(&i, "other-64", &["read"], ScopeMode::All),
            Err(Denial::NoPermission)
        );
    }
}
