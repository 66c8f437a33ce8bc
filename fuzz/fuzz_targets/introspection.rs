//! The introspection model (RFC 7662 §2.2 with UMA's `permissions`, FedAuthz §5.1.1) and the
//! access decision on it.
//!
//! Input: an introspection body, then optionally a NUL byte and the bytes that choose the
//! request (resource, scopes, scope mode, time, leeway, Keycloak's reading of empty scopes).
//! A body alone asks for the first permission's resource with no scope at time 0.
//!
//! Checks that
//! - parsing bytes and parsing the decoded JSON agree;
//! - an inactive result carries nothing; time claims are positive; every permission has a
//!   resource id and sorted, distinct scopes;
//! - a result written back as JSON (the permissions through their `Serialize`) parses to
//!   itself;
//! - the decision never panics and agrees with a plain reading of the rules written here:
//!   token and permission `exp`/`nbf` with leeway, only this resource's permissions valid
//!   now, every (or any) required scope held by one of them.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use tower_uma::fuzzing::{Decide, decide, introspection_from_value};
use tower_uma::{introspect::Introspection, resources::ScopeMode};

/// A permission's resource (or one of its scopes) by index, or another name.
#[derive(Arbitrary, Debug)]
enum Pick {
    Index(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Ask {
    resource: Pick,
    scopes: Vec<Pick>,
    any: bool,
    now: i64,
    leeway: i64,
    keycloak: bool,
}

fuzz_target!(|data: &[u8]| {
    let (body, rest) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let parsed = Introspection::from_json(body);
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => assert_eq!(introspection_from_value(&value), parsed),
        Err(_) => assert!(parsed.is_err()),
    }
    let Ok(intro) = parsed else {
        return;
    };
    check_model(&intro);

    let Ok(ask) = Ask::arbitrary_take_rest(Unstructured::new(rest)) else {
        return;
    };
    let permissions = intro.permissions();
    let chosen = match &ask.resource {
        Pick::Index(i) if !permissions.is_empty() => {
            Some(&permissions[usize::from(*i) % permissions.len()])
        }
        _ => None,
    };
    let resource_id = match (&ask.resource, chosen) {
        (_, Some(p)) => p.resource_id().to_owned(),
        (Pick::Other(other), None) => other.clone(),
        (Pick::Index(_), None) => "no-such-resource".to_owned(),
    };
    let scopes: Vec<String> = ask
        .scopes
        .iter()
        .map(|s| match (s, chosen) {
            (Pick::Index(i), Some(p)) if p.resource_scopes().len() > 0 => {
                let names: Vec<&str> = p.resource_scopes().collect();
                names[usize::from(*i) % names.len()].to_owned()
            }
            (Pick::Other(other), _) => other.clone(),
            _ => "no-such-scope".to_owned(),
        })
        .collect();
    let d = Decide {
        resource_id: &resource_id,
        scopes: &scopes,
        mode: if ask.any {
            ScopeMode::Any
        } else {
            ScopeMode::All
        },
        now: ask.now,
        leeway: ask.leeway,
        empty_scopes_grant_all: ask.keycloak,
    };
    assert_eq!(
        decide(&intro, d),
        reference(&intro, &d),
        "{d:?} on {intro:?}"
    );
});

fn check_model(intro: &Introspection) {
    if !intro.is_active() {
        assert_eq!(*intro, Introspection::inactive());
        return;
    }
    let times = |exp: Option<i64>, nbf: Option<i64>, iat: Option<i64>| {
        assert!(
            [exp, nbf, iat].into_iter().flatten().all(|t| t > 0),
            "{intro:?}"
        );
    };
    times(intro.exp(), intro.nbf(), intro.iat());
    let mut permissions = Vec::new();
    for p in intro.permissions() {
        assert!(!p.resource_id().is_empty());
        let scopes: Vec<&str> = p.resource_scopes().collect();
        assert!(scopes.windows(2).all(|w| w[0] < w[1]), "{scopes:?}");
        times(p.exp(), p.nbf(), p.iat());
        permissions.push(serde_json::to_value(p).expect("serialises"));
    }
    let mut body = Map::new();
    body.insert("active".into(), json!(true));
    for (name, time) in [
        ("exp", intro.exp()),
        ("nbf", intro.nbf()),
        ("iat", intro.iat()),
    ] {
        if let Some(t) = time {
            body.insert(name.into(), json!(t));
        }
    }
    if let Some(sub) = intro.sub() {
        body.insert("sub".into(), json!(sub));
    }
    if let Some(client_id) = intro.client_id() {
        body.insert("client_id".into(), json!(client_id));
    }
    body.insert("permissions".into(), Value::Array(permissions));
    let again = introspection_from_value(&Value::Object(body)).expect("written back, it parses");
    assert_eq!(&again, intro, "not the same once written back");
}

/// Whether `[nbf, exp)` holds at `now`, `leeway` seconds wider on both sides.
fn window(now: i64, exp: Option<i64>, nbf: Option<i64>, leeway: i64) -> Result<(), &'static str> {
    if exp.is_some_and(|exp| now >= exp.saturating_add(leeway)) {
        return Err("expired");
    }
    if nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err("not_yet_valid");
    }
    Ok(())
}

fn reference(intro: &Introspection, d: &Decide<'_>) -> Result<Vec<usize>, &'static str> {
    if !intro.is_active() {
        return Err("inactive");
    }
    window(d.now, intro.exp(), intro.nbf(), d.leeway)?;
    let ours: Vec<usize> = (0..intro.permissions().len())
        .filter(|&i| intro.permissions()[i].resource_id() == d.resource_id)
        .collect();
    let valid: Vec<usize> = ours
        .iter()
        .copied()
        .filter(|&i| {
            let p = &intro.permissions()[i];
            window(d.now, p.exp(), p.nbf(), d.leeway).is_ok()
        })
        .collect();
    if valid.is_empty() {
        return Err(if ours.is_empty() {
            "no_permission"
        } else {
            "expired"
        });
    }
    let held = |scope: &String| {
        valid
            .iter()
            .any(|&i| intro.permissions()[i].has_scope(scope))
    };
    let granted = (d.empty_scopes_grant_all
        && valid
            .iter()
            .any(|&i| intro.permissions()[i].resource_scopes().len() == 0))
        || match d.mode {
            ScopeMode::Any => d.scopes.is_empty() || d.scopes.iter().any(held),
            _ => d.scopes.iter().all(held),
        };
    if granted {
        Ok(valid)
    } else {
        Err("insufficient_scope")
    }
}
