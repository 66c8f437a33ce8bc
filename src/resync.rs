//! Recovery when the authorization server (AS) forgets a resource.
//!
//! An AS that keeps resources in memory forgets them when it restarts, and an admin may delete
//! one (in Keycloak's console, say). Its permission endpoint then answers every ticket request
//! for that resource with `invalid_resource_id` (FedAuthz §4.3; Keycloak: `400` with that
//! code), and without recovery every request that needs a challenge would get `403` +
//! `Warning` until the layer restarted. Instead, when the AS says a resource id is unknown:
//!
//! - the AS's answer (code and description) is logged once at WARN, not per request;
//! - a resource this layer declares (in the map, or through
//!   [`ResourceRegistry::register`](crate::registration::ResourceRegistry::register)) is registered again
//!   from its declaration; one the layer only names (registered by someone else) is looked up
//!   again by name. A route that names a resource by id cannot be recovered: that takes a
//!   change of configuration;
//! - at most one attempt per resource per interval
//!   ([`resource_resync_interval`](crate::UmaLayerBuilder::resource_resync_interval)), shared
//!   by every concurrent request (single flight), in a task of its own so that a client going
//!   away does not cancel it half-way;
//! - the ticket is asked again, once, for the new id;
//! - while the resource stays unknown it is listed in
//!   [`AsHealth::unknown_resources`](crate::health::AsHealth::unknown_resources), and a background
//!   task tries again once per interval until it succeeds: a service that fails readiness
//!   because of it gets no requests that could retry;
//! - each attempt is counted in `uma_resource_resyncs_total{outcome}`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use crate::clock::Clock;
use crate::protection::{AsClient, CallError};
use crate::registration::ResourceRegistry;
use crate::resources::ResourceRef;

/// A resource the authorization server said it does not know (`invalid_resource_id`,
/// FedAuthz §4.3), which the layer has not registered or found again yet. Listed by
/// [`AsHealth::unknown_resources`](crate::health::AsHealth::unknown_resources).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnknownResource {
    name: Option<String>,
    id: String,
    since_unix_millis: i64,
    reason: String,
}

impl UnknownResource {
    /// The resource's name, for a resource routes name by name; `None` for one they name by
    /// id (which the layer cannot register again).
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The id the AS said it does not know.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Since when tickets for it fail, in milliseconds since the Unix epoch per the layer's
    /// [`Clock`].
    #[must_use]
    pub fn since_unix_millis(&self) -> i64 {
        self.since_unix_millis
    }

    /// What the AS answered, and why the last attempt to register (or find) the resource again
    /// failed.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// One line of [`AsHealth`](crate::health::AsHealth)'s `Display`, e.g.
    /// `resource "album" unknown id=r-1 for_ms=2300: …`.
    pub(crate) fn write_line(&self, f: &mut fmt::Formatter<'_>, now_ms: i64) -> fmt::Result {
        let for_ms = now_ms.saturating_sub(self.since_unix_millis).max(0);
        match &self.name {
            Some(name) => write!(f, "resource {name:?} unknown")?,
            None => f.write_str("resource unknown")?,
        }
        writeln!(f, " id={} for_ms={for_ms}: {}", self.id, self.reason)
    }
}

/// The outcome of one attempt, shared by the requests waiting for it: the new id, or why not.
type Flight = Shared<BoxFuture<'static, Result<String, String>>>;

/// A resource as routes name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Name(String),
    Id(String),
}

impl Key {
    fn of(resource: &ResourceRef) -> Self {
        match resource {
            ResourceRef::Name(n) => Self::Name(n.clone()),
            ResourceRef::Id(id) => Self::Id(id.clone()),
        }
    }
}

/// What the layer remembers of one resource the AS forgot.
struct Entry {
    /// The id the AS last refused.
    refused: String,
    /// What the AS answered, as the log and the health report quote it.
    said: String,
    /// When the last attempt started (one per interval).
    last_attempt: Option<Instant>,
    /// The attempt in progress.
    flight: Option<Flight>,
    /// Set while tickets for the resource fail: since when (layer clock, ms) and why.
    failing: Option<(i64, String)>,
    /// Whether the background task that retries is running.
    retrying: bool,
    /// Whether this episode's WARNs were logged: the AS's answer, a failed attempt.
    warned_unknown: bool,
    warned_failed: bool,
}

/// The recovery state of one layer's resources; held by its [`ResourceRegistry`].
pub(crate) struct Resync {
    interval: Duration,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<Key, Entry>>,
    /// Whether some entry is failing: the path of an issued ticket reads it without locking.
    any_failing: AtomicBool,
}

impl Resync {
    /// At most one attempt per resource per `interval`; `clock` dates the health reports.
    pub(crate) fn new(interval: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            interval,
            clock,
            entries: Mutex::default(),
            any_failing: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        // Every critical section is a few field updates: the state is consistent even if a
        // holder panicked.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The resources whose tickets fail because the AS does not know them, by name then id.
    pub(crate) fn unknown_resources(&self) -> Vec<UnknownResource> {
        if !self.any_failing.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut out: Vec<UnknownResource> = self
            .lock()
            .iter()
            .filter_map(|(key, e)| {
                let (since, reason) = e.failing.clone()?;
                Some(UnknownResource {
                    name: match key {
                        Key::Name(n) => Some(n.clone()),
                        Key::Id(_) => None,
                    },
                    id: e.refused.clone(),
                    since_unix_millis: since,
                    reason,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        out
    }

    /// A ticket was issued for `resource`: it is known again.
    fn known(&self, resource: &ResourceRef) {
        if !self.any_failing.load(Ordering::Acquire) {
            return;
        }
        let key = Key::of(resource);
        let mut entries = self.lock();
        if let Some(e) = entries.get_mut(&key)
            && e.failing.is_some()
        {
            tracing::info!(
                uma.resource_id = %e.refused,
                "the authorization server issues tickets for {} again",
                describe(&key)
            );
            settle(e);
            self.recount(&entries);
        }
    }

    /// Marks `entry` failing for `reason` (keeping the start of an ongoing failure).
    fn fail(&self, entry: &mut Entry, reason: String) {
        let since = match &entry.failing {
            Some((since, _)) => *since,
            None => self.clock.now_unix_millis(),
        };
        entry.failing = Some((since, reason));
        self.any_failing.store(true, Ordering::Release);
    }

    fn recount(&self, entries: &HashMap<Key, Entry>) {
        let any = entries.values().any(|e| e.failing.is_some());
        self.any_failing.store(any, Ordering::Release);
    }
}

/// Ends an episode: the resource is known; the next forgetting is logged again.
fn settle(entry: &mut Entry) {
    entry.failing = None;
    entry.warned_unknown = false;
    entry.warned_failed = false;
}

/// `resource "album"` or `resource id r-1`, for log lines.
fn describe(key: &Key) -> String {
    match key {
        Key::Name(n) => format!("resource {n:?}"),
        Key::Id(id) => format!("resource id {id}"),
    }
}

/// Asks the permission endpoint for a ticket for `resource`, known to the AS as `id`; when the
/// AS answers that it does not know that id, recovers the resource (see the module
/// documentation) and asks once more, for the new id.
///
/// # Errors
///
/// The ticket request's failure: the first one when the resource could not be recovered
/// (now), the second one otherwise.
pub(crate) async fn ticket(
    client: &AsClient,
    registry: &ResourceRegistry,
    resource: &ResourceRef,
    id: &str,
    scopes: &[String],
) -> Result<String, CallError> {
    let resync = registry.resync();
    let error = match client.ticket(id, scopes).await {
        Ok(ticket) => {
            resync.known(resource);
            return Ok(ticket);
        }
        Err(e) => e,
    };
    if error.unknown_resource().is_none() {
        return Err(error);
    }
    let Some(fresh) = recover(registry, resource, id, &error).await else {
        return Err(error);
    };
    let retried = client.ticket(&fresh, scopes).await;
    match &retried {
        Ok(_) => resync.known(resource),
        Err(e) if e.unknown_resource().is_some() => {
            // The AS does not know the id it just gave (or listed) either.
            let key = Key::of(resource);
            let mut entries = resync.lock();
            if let Some(entry) = entries.get_mut(&key) {
                entry.refused = fresh;
                resync.fail(entry, format!("{e} (for the id just registered or found)"));
                if let Key::Name(name) = &key {
                    keep_retrying(registry, entry, name);
                }
            }
        }
        // An outage, not a forgotten resource: the gate reports it.
        Err(_) => {}
    }
    retried
}

/// The AS refused `refused` (the id of `resource`) as unknown: the id to ask for instead,
/// from another request's recovery or an attempt now; `None` when there is none (yet).
async fn recover(
    registry: &ResourceRegistry,
    resource: &ResourceRef,
    refused: &str,
    error: &CallError,
) -> Option<String> {
    let key = Key::of(resource);
    // Another request recovered it already.
    if let Key::Name(name) = &key
        && let Some(current) = registry.id(name)
        && current != refused
    {
        return Some(current);
    }
    let resync = registry.resync();
    let flight = {
        let mut entries = resync.lock();
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            refused: refused.to_owned(),
            said: String::new(),
            last_attempt: None,
            flight: None,
            failing: None,
            retrying: false,
            warned_unknown: false,
            warned_failed: false,
        });
        refused.clone_into(&mut entry.refused);
        entry.said = error.to_string();
        let answer = error.unknown_resource();
        let code = answer.and_then(|a| a.code()).unwrap_or_default();
        let said = answer.and_then(|a| a.said()).unwrap_or_default();
        let Key::Name(name) = &key else {
            if !entry.warned_unknown {
                entry.warned_unknown = true;
                tracing::warn!(
                    uma.resource_id = refused,
                    error.code = code,
                    error.description = said,
                    "the authorization server does not know resource id {refused}, which a route \
                     names by id: {error}; requests that need a ticket for it are refused until \
                     the configuration names a resource the AS has"
                );
            }
            let reason = format!(
                "{error}; the route names the resource by id: configure the id the AS has now"
            );
            resync.fail(entry, reason);
            return None;
        };
        if !entry.warned_unknown {
            entry.warned_unknown = true;
            let how = if registry.declares(name) {
                "registering it again"
            } else {
                "looking its name up again"
            };
            tracing::warn!(
                uma.resource = %name,
                uma.resource_id = refused,
                error.code = code,
                error.description = said,
                "the authorization server does not know resource {name:?} (id {refused}): \
                 {error}; {how}"
            );
        }
        match &entry.flight {
            Some(flight) => flight.clone(),
            None if entry
                .last_attempt
                .is_some_and(|t| t.elapsed() < resync.interval) =>
            {
                // An attempt was made recently: the refusal stands until the next one, which
                // the background task makes.
                if entry.failing.is_none() {
                    resync.fail(entry, error.to_string());
                }
                keep_retrying(registry, entry, name);
                return None;
            }
            None => start(registry, entry, name),
        }
    };
    flight.await.ok()
}

/// Starts an attempt to recover the resource `name` of `entry`, in a task of its own.
fn start(registry: &ResourceRegistry, entry: &mut Entry, name: &str) -> Flight {
    entry.last_attempt = Some(Instant::now());
    let (registry, name, refused) = (registry.clone(), name.to_owned(), entry.refused.clone());
    let task = tokio::spawn(async move { attempt(&registry, &name, &refused).await });
    let flight = async move {
        task.await
            .unwrap_or_else(|_| Err("the attempt's task was lost".to_owned()))
    }
    .boxed()
    .shared();
    entry.flight = Some(flight.clone());
    flight
}

/// Registers (or looks up) `name` again after the AS refused `refused`, and records the
/// outcome: the new id, or why not.
async fn attempt(registry: &ResourceRegistry, name: &str, refused: &str) -> Result<String, String> {
    let result = registry.recover(name, refused).await;
    let resync = registry.resync();
    let mut entries = resync.lock();
    let Some(entry) = entries.get_mut(&Key::Name(name.to_owned())) else {
        return result.map(|(id, _)| id).map_err(|(e, _)| format!("{e:#}"));
    };
    entry.flight = None;
    match result {
        Ok((id, outcome)) => {
            crate::metrics::resource_resync(outcome);
            let how = if outcome == "registered" {
                "registered again"
            } else {
                "found again"
            };
            tracing::info!(
                uma.resource = %name,
                uma.resource_id = %id,
                "resource {name:?} {how} at the authorization server: id {id} (was {refused})"
            );
            settle(entry);
            resync.recount(&entries);
            Ok(id)
        }
        Err((e, outcome)) => {
            crate::metrics::resource_resync(outcome);
            let how = if registry.declares(name) {
                "register"
            } else {
                "find"
            };
            let every = resync.interval;
            if entry.warned_failed {
                tracing::debug!(uma.resource = %name, error = format_args!("{e:#}"), "could not {how} resource {name:?} again");
            } else {
                entry.warned_failed = true;
                tracing::warn!(
                    uma.resource = %name,
                    error = format_args!("{e:#}"),
                    "could not {how} resource {name:?} again: {e:#}; requests that need a ticket \
                     for it are refused (403) and the layer tries again every {every:?}"
                );
            }
            let reason = format!("{}; could not {how} it again: {e:#}", entry.said);
            resync.fail(entry, reason.clone());
            keep_retrying(registry, entry, name);
            Err(reason)
        }
    }
}

/// Makes sure a background task tries to recover `name` once per interval while it is
/// failing: a service that fails readiness because of it gets no requests that would.
fn keep_retrying(registry: &ResourceRegistry, entry: &mut Entry, name: &str) {
    if entry.retrying {
        return;
    }
    entry.retrying = true;
    let weak = registry.downgrade();
    let every = registry.resync().interval;
    let key = Key::Name(name.to_owned());
    let name = name.to_owned();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            // Ends with the layer.
            let Some(registry) = weak.upgrade() else {
                return;
            };
            let flight = {
                let mut entries = registry.resync().lock();
                let Some(entry) = entries.get_mut(&key) else {
                    return;
                };
                if entry.failing.is_none() {
                    entry.retrying = false;
                    return;
                }
                match &entry.flight {
                    Some(flight) => Some(flight.clone()),
                    None if entry.last_attempt.is_some_and(|t| t.elapsed() < every) => None,
                    None => Some(start(&registry, entry, &name)),
                }
            };
            if let Some(flight) = flight {
                let _ = flight.await;
            }
        }
    });
}
