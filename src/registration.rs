//! Resource registration at start-up (FedAuthz §3): resources declared by name are looked up
//! at the AS and created when missing, so routes can name them instead of their `_id`.
//!
//! This is create-only: it never updates or deletes what the AS holds.

use std::collections::HashMap;

use http::StatusCode;
use serde_json::Value;
use tracing::Instrument;

use crate::client::{AsClient, CallError};
use crate::error::{Error, ErrorKind, describe_transport, snippet};
use crate::resources::ResourceDecl;

fn item_url(endpoint: &str, id: &str) -> String {
    let id: String =
        percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).collect();
    format!("{}/{id}", endpoint.trim_end_matches('/'))
}

fn call_error(what: &str, e: CallError) -> Error {
    match e {
        CallError::NoPat => Error::new(ErrorKind::Pat, format!("{what}: no PAT could be obtained")),
        CallError::Transport(e) => Error::new(
            ErrorKind::Transport,
            format!("{what}: {}", describe_transport(&e)),
        )
        .with_source(e),
    }
}

/// Reads a JSON answer of a successful registration call.
async fn json_body(what: &str, resp: reqwest::Response) -> Result<(StatusCode, Value), Error> {
    let status = resp.status();
    let location = resp
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp.bytes().await.map_err(|e| {
        Error::new(
            ErrorKind::Transport,
            format!("{what}: {}", describe_transport(&e)),
        )
    })?;
    if !status.is_success() && status != StatusCode::CONFLICT {
        return Err(Error::new(
            ErrorKind::Registration,
            format!("{what}: the AS answered {status}: {}", snippet(&bytes)),
        ));
    }
    let mut value: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    // A create answered with `Location` but no `_id` body still names the id.
    if value.get("_id").is_none()
        && let Some(id) = location
            .as_deref()
            .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
    {
        if let Value::Object(map) = &mut value {
            map.insert("_id".into(), Value::String(id.to_owned()));
        } else if status == StatusCode::CREATED {
            value = serde_json::json!({ "_id": id });
        }
    }
    Ok((status, value))
}

/// Lists the AS's resources as a map from name to id.
pub(crate) async fn existing(
    client: &AsClient,
    endpoint: &str,
) -> Result<HashMap<String, String>, Error> {
    let what = "listing registered resources";
    let resp = client
        .protected(|pat| {
            client
                .http
                .get(endpoint)
                .bearer_auth(pat.secret())
                .header(http::header::ACCEPT, "application/json")
        })
        .await
        .map_err(|e| call_error(what, e))?;
    let (_, list) = json_body(what, resp).await?;
    let ids: Vec<String> = list
        .as_array()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Registration,
                format!("{what}: the AS did not answer a JSON array"),
            )
        })?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let mut out = HashMap::with_capacity(ids.len());
    for id in ids {
        let url = item_url(endpoint, &id);
        let what = format!("reading resource {id}");
        let resp = client
            .protected(|pat| {
                client
                    .http
                    .get(&url)
                    .bearer_auth(pat.secret())
                    .header(http::header::ACCEPT, "application/json")
            })
            .await
            .map_err(|e| call_error(&what, e))?;
        if resp.status() == StatusCode::NOT_FOUND {
            continue; // deleted between list and read
        }
        let (_, desc) = json_body(&what, resp).await?;
        if let Some(name) = desc.get("name").and_then(Value::as_str) {
            out.entry(name.to_owned()).or_insert(id);
        }
    }
    Ok(out)
}

/// Makes sure every declared resource exists at the AS; returns name → id for all of them.
pub(crate) async fn ensure(
    client: &AsClient,
    decls: &[ResourceDecl],
) -> Result<HashMap<String, String>, Error> {
    if decls.is_empty() {
        return Ok(HashMap::new());
    }
    let Some(endpoint) = client.resource_registration_endpoint.clone() else {
        return Err(Error::config(
            "resources are declared by name but there is no resource registration endpoint; \
             set one with .resource_registration_endpoint(url) or name resources by id",
        ));
    };
    let span = tracing::debug_span!("uma.register", resources = decls.len());
    async {
        let mut ids = existing(client, &endpoint).await?;
        for decl in decls {
            if ids.contains_key(&decl.name) {
                continue;
            }
            let what = format!("registering resource {:?}", decl.name);
            let body = serde_json::to_vec(decl)
                .map_err(|e| Error::new(ErrorKind::Registration, format!("{what}: {e}")))?;
            let resp = client
                .protected(|pat| {
                    client
                        .http
                        .post(&endpoint)
                        .bearer_auth(pat.secret())
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .header(http::header::ACCEPT, "application/json")
                        .body(body.clone())
                })
                .await
                .map_err(|e| call_error(&what, e))?;
            let (status, created) = json_body(&what, resp).await?;
            let id = if status == StatusCode::CONFLICT {
                // Keycloak and WSO2 refuse a duplicate name: someone else created it; look it up.
                existing(client, &endpoint).await?.remove(&decl.name)
            } else {
                created
                    .get("_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let Some(id) = id else {
                return Err(Error::new(
                    ErrorKind::Registration,
                    format!("{what}: the AS answered {status} without an `_id`"),
                ));
            };
            tracing::debug!(name = %decl.name, uma.resource_id = %id, "registered resource");
            ids.insert(decl.name.clone(), id);
        }
        ids.retain(|name, _| decls.iter().any(|d| &d.name == name));
        Ok(ids)
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_urls_escape_ids() {
        assert_eq!(
            item_url("https://as/rreg/", "a b/c"),
            "https://as/rreg/a%20b%2Fc"
        );
        assert_eq!(item_url("https://as/rreg", "r1"), "https://as/rreg/r1");
    }
}
