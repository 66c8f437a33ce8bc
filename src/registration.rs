//! Resource registration (FedAuthz §3): the start-up sync that keeps the AS in step with the
//! declared resources, its dry run, and the [`ResourceRegistry`] for resources created at run
//! time.
//!
//! The sync lists the resources the AS holds for this resource server (FedAuthz §3.2.5: the
//! list names the resources registered with this PAT), reads each, then creates what is
//! missing, updates what changed (a full description in the `PUT`, §3.2.3) and, only when asked
//! to, deletes what this resource server registered and no longer declares. A second start
//! against the same AS writes nothing. Every answer shape of docs/protocol.md §4.5 is
//! accepted: `Location` or not, `_id` only or the whole object, `200`/`201`/`204` to a `PUT`,
//! `200`/`204`/`404` to a `DELETE`, scopes as strings or `{"name": …}` objects, `409` on a
//! duplicate name (then the resource is looked up), `code`/`description` error bodies. A
//! failure names the resource and the AS's answer; nothing half-done is hidden: the error
//! says which changes were already made.
//!
//! # Example
//!
//! ```no_run
//! use tower_uma::{ResourceDecl, ResourceMap, Route, UmaLayer, registration::ResourceSyncMode};
//!
//! # async fn run() -> Result<(), tower_uma::Error> {
//! let builder = UmaLayer::discover("https://as.example.com", "photo-api", "secret")
//!     .resources(ResourceMap::new().route(
//!         Route::new("/albums/{id}").declare(ResourceDecl::new("album", ["view"])).any_method(["view"]),
//!     ))
//!     .resource_sync(ResourceSyncMode::Reconcile);
//! // A dry run: what the sync would change, without writing.
//! println!("{}", builder.check_resources().await?);
//! let layer = builder.build().await?;
//! // Resources made at run time (one per album, say). `ReconcileAndDelete` would delete these
//! // at the next start, since no route declares them.
//! let id = layer
//!     .registry()
//!     .register(ResourceDecl::new("album-7", ["view"]).with_owner("alice"))
//!     .await?;
//! # let _ = id; Ok(()) }
//! ```

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::dialect::Dialect;
use crate::error::{Error, ErrorKind};
use crate::protection::Failure;
use crate::protection::client::AsClient;
pub(crate) use crate::protection::resource_set::RegisteredResource;
use crate::protection::resource_set::{self, Created};
use crate::resources::ResourceDecl;
use crate::resync::Resync;
use crate::token::Pat;

/// How the start-up sync treats the AS's resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ResourceSyncMode {
    /// Create missing resources only.
    CreateOnly,
    /// Create missing resources and update changed ones.
    #[default]
    Reconcile,
    /// Also delete resources this resource server registered and no longer declares.
    ///
    /// Every resource the AS lists for this resource server counts, including those made at
    /// run time through [`ResourceRegistry::register`] (and, with Keycloak, those an admin
    /// made for the same client): they are deleted at the next start, with whatever policies
    /// the AS attached to them. Do not use it together with run-time registration.
    ReconcileAndDelete,
}

/// One change of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceChange {
    /// A declared resource the AS does not have.
    Create {
        /// Its name.
        name: String,
        /// Its scopes.
        scopes: Vec<String>,
    },
    /// A resource whose description differs from the declaration.
    Update {
        /// Its id at the AS.
        id: String,
        /// Its name.
        name: String,
        /// The members that differ.
        fields: Vec<&'static str>,
    },
    /// A resource this resource server registered and no longer declares.
    Delete {
        /// Its id at the AS.
        id: String,
        /// Its name.
        name: String,
    },
}

/// The outcome (or, for [`check_resources`](crate::UmaLayerBuilder::check_resources), the
/// plan) of a resource sync. `Display` prints it as a diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceSync {
    /// What was (or would be) changed, in order.
    pub changes: Vec<ResourceChange>,
    /// Declared resources that already match the AS.
    pub unchanged: Vec<String>,
}

impl ResourceSync {
    /// Whether the sync changes (or changed) nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl fmt::Display for ResourceSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            match c {
                ResourceChange::Create { name, scopes } => {
                    writeln!(f, "+ {name} [{}]", scopes.join(", "))?;
                }
                ResourceChange::Update { id, name, fields } => {
                    writeln!(f, "~ {name} ({id}): {}", fields.join(", "))?;
                }
                ResourceChange::Delete { id, name } => writeln!(f, "- {name} ({id})")?,
            }
        }
        for name in &self.unchanged {
            writeln!(f, "  {name}")?;
        }
        Ok(())
    }
}

/// The page size of a paged list (Keycloak's own default page).
const LIST_PAGE: usize = 100;

/// The most ids a paged list reads, so an AS that pages forever cannot exhaust memory.
const MAX_LISTED: usize = 100_000;

impl RegisteredResource {
    /// The members of `decl` this description does not match.
    fn differences(&self, decl: &ResourceDecl) -> Vec<&'static str> {
        let same = |a: &Option<String>, b: &Option<String>| {
            a.as_deref().filter(|s| !s.is_empty()) == b.as_deref().filter(|s| !s.is_empty())
        };
        let mut out = Vec::new();
        if !same(&self.r#type, &decl.r#type) {
            out.push("type");
        }
        if !same(&self.description, &decl.description) {
            out.push("description");
        }
        if !same(&self.icon_uri, &decl.icon_uri) {
            out.push("icon_uri");
        }
        let declared: BTreeSet<&str> = decl.resource_scopes.iter().map(String::as_str).collect();
        let held: BTreeSet<&str> = self.resource_scopes.iter().map(String::as_str).collect();
        if declared != held {
            out.push("resource_scopes");
        }
        out
    }
}

/// Talks to the registration endpoint.
#[derive(Debug)]
pub(crate) struct Registrar {
    pub(crate) client: Arc<AsClient>,
    pub(crate) endpoint: String,
    pub(crate) dialect: Dialect,
    /// When set, a name is looked up only among the resources this owner (the resource
    /// server's client id) owns (Keycloak's `paths[].name`).
    pub(crate) names_owner: Option<String>,
}

impl Registrar {
    /// The JSON description sent on create and update.
    fn body(&self, decl: &ResourceDecl) -> Result<bytes::Bytes, Error> {
        resource_set::description(decl, self.dialect.sends_all_resource_fields()).map_err(|f| {
            crate::protection::CallError::new(crate::gate::AsEndpoint::ResourceRegistration, f)
                .into_error(format!("resource {:?}", decl.name))
        })
    }

    /// Sends the request `build` makes with the PAT, and reads the answer with `parse`; a
    /// failure is an error saying what the layer was `doing`.
    async fn send<T>(
        &self,
        doing: &str,
        build: impl Fn(&Pat) -> Result<http::Request<bytes::Bytes>, Failure>,
        parse: impl FnOnce(http::Response<bytes::Bytes>) -> Result<T, Failure>,
    ) -> Result<T, Error> {
        self.client
            .registration(build, parse)
            .await
            .map_err(|e| e.into_error(doing))
    }

    /// The ids the AS lists for this resource server. Keycloak lists at most 100 unless the
    /// query names a page (docs/protocol.md §4.2, `first`/`max`), so its list is read page by page
    /// until a short page, or one that brings no new id (an AS that ignores `first`).
    async fn list_ids(&self) -> Result<Vec<String>, Error> {
        let what = "listing registered resources";
        let paged = self.dialect == Dialect::Keycloak;
        let mut ids: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let page = paged.then_some((ids.len(), LIST_PAGE));
            let build = |pat: &Pat| resource_set::list(&self.endpoint, page, pat);
            let listed = self.send(what, build, resource_set::parse_list).await?;
            let before = ids.len();
            for id in listed.ids {
                if seen.insert(id.clone()) {
                    ids.push(id);
                }
            }
            if !paged || listed.items < LIST_PAGE || ids.len() == before {
                return Ok(ids);
            }
            if ids.len() >= MAX_LISTED {
                return Err(Error::new(
                    ErrorKind::Registration,
                    format!("{what}: the AS lists more than {MAX_LISTED} resources"),
                ));
            }
        }
    }

    /// The ids of the resources named exactly `name` and owned by `owner`, by the AS's query
    /// (Keycloak's `ProtectedResource.findByName`: `name`, `exactName=true`, `owner`).
    async fn find_owned(&self, name: &str, owner: &str) -> Result<Vec<String>, Error> {
        let what = format!("looking up resource {name:?} of {owner:?}");
        let build = |pat: &Pat| resource_set::find_named(&self.endpoint, name, owner, pat);
        Ok(self.send(&what, build, resource_set::parse_list).await?.ids)
    }

    /// Every resource the AS lists for this resource server, read one by one.
    pub(crate) async fn list(&self) -> Result<Vec<RegisteredResource>, Error> {
        let ids = self.list_ids().await?;
        self.read_each(ids).await
    }

    /// Reads the resources `ids`, one by one; those deleted meanwhile are left out.
    async fn read_each(&self, ids: Vec<String>) -> Result<Vec<RegisteredResource>, Error> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let what = format!("reading resource {id}");
            let build = |pat: &Pat| resource_set::read(&self.endpoint, &id, pat);
            let parse = |answer| resource_set::parse_read(&id, answer);
            // `None`: deleted between list and read.
            if let Some(resource) = self.send(&what, build, parse).await? {
                out.push(resource);
            }
        }
        Ok(out)
    }

    /// The id of the resource named `name`, listing the AS.
    async fn find(&self, name: &str) -> Result<Option<String>, Error> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .find(|r| r.name.as_deref() == Some(name))
            .map(|r| r.id))
    }

    /// Creates `decl`; a `409` (duplicate name) is answered by looking the resource up.
    pub(crate) async fn create(&self, decl: &ResourceDecl) -> Result<String, Error> {
        let what = format!("registering resource {:?}", decl.name);
        let body = self.body(decl)?;
        let build = |pat: &Pat| resource_set::create(&self.endpoint, body.clone(), pat);
        match self.send(&what, build, resource_set::parse_created).await? {
            Created::Id(id) => Ok(id),
            Created::Conflict => self.find(&decl.name).await?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Registration,
                    format!("{what}: the AS answered 409 but lists no resource of that name"),
                )
            }),
        }
    }

    async fn update(&self, id: &str, decl: &ResourceDecl) -> Result<(), Error> {
        let what = format!("updating resource {:?} ({id})", decl.name);
        let body = self.body(decl)?;
        let build = |pat: &Pat| resource_set::update(&self.endpoint, id, body.clone(), pat);
        self.send(&what, build, resource_set::parse_updated).await
    }

    pub(crate) async fn delete(&self, id: &str, name: &str) -> Result<(), Error> {
        let what = format!("deleting resource {name:?} ({id})");
        let build = |pat: &Pat| resource_set::delete(&self.endpoint, id, pat);
        self.send(&what, build, resource_set::parse_deleted).await
    }

    /// Works out the changes without writing; returns them with name → id of what exists.
    pub(crate) async fn plan(
        &self,
        decls: &[ResourceDecl],
        mode: ResourceSyncMode,
    ) -> Result<(ResourceSync, HashMap<String, String>), Error> {
        let held = self.list().await?;
        let mut ids = HashMap::new();
        let mut plan = ResourceSync::default();
        for decl in decls {
            match held
                .iter()
                .find(|r| r.name.as_deref() == Some(decl.name.as_str()))
            {
                None => plan.changes.push(ResourceChange::Create {
                    name: decl.name.clone(),
                    scopes: decl.resource_scopes.clone(),
                }),
                Some(r) => {
                    ids.insert(decl.name.clone(), r.id.clone());
                    let fields = r.differences(decl);
                    if fields.is_empty() || mode == ResourceSyncMode::CreateOnly {
                        plan.unchanged.push(decl.name.clone());
                    } else {
                        plan.changes.push(ResourceChange::Update {
                            id: r.id.clone(),
                            name: decl.name.clone(),
                            fields,
                        });
                    }
                }
            }
        }
        if mode == ResourceSyncMode::ReconcileAndDelete {
            for r in &held {
                let Some(name) = &r.name else { continue };
                if !decls.iter().any(|d| &d.name == name) {
                    plan.changes.push(ResourceChange::Delete {
                        id: r.id.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
        Ok((plan, ids))
    }

    /// Applies the plan; returns what was done and name → id of every declared resource.
    pub(crate) async fn sync(
        &self,
        decls: &[ResourceDecl],
        mode: ResourceSyncMode,
    ) -> Result<(ResourceSync, HashMap<String, String>), Error> {
        let span = tracing::debug_span!("uma.register", resources = decls.len());
        async {
            let (plan, mut ids) = self.plan(decls, mode).await?;
            let mut done = ResourceSync {
                changes: Vec::new(),
                unchanged: plan.unchanged.clone(),
            };
            for change in plan.changes {
                let result = match &change {
                    ResourceChange::Create { name, .. } => {
                        let decl = decls.iter().find(|d| &d.name == name);
                        match decl {
                            Some(d) => self.create(d).await.map(|id| {
                                ids.insert(name.clone(), id);
                            }),
                            None => Ok(()),
                        }
                    }
                    ResourceChange::Update { id, name, .. } => {
                        match decls.iter().find(|d| &d.name == name) {
                            Some(d) => self.update(id, d).await,
                            None => Ok(()),
                        }
                    }
                    ResourceChange::Delete { id, name } => self.delete(id, name).await,
                };
                if let Err(e) = result {
                    return Err(sync_failed(&done, e));
                }
                tracing::debug!(change = ?change, "resource sync");
                done.changes.push(change);
            }
            Ok((done, ids))
        }
        .instrument(span)
        .await
    }
}

/// The error of a sync that failed with `e` after making the changes in `done`: it says what
/// was already changed, and has `e` as its source.
fn sync_failed(done: &ResourceSync, e: Error) -> Error {
    let made = if done.changes.is_empty() {
        "resource sync failed (no change was made)".to_owned()
    } else {
        let changes = ResourceSync {
            changes: done.changes.clone(),
            unchanged: Vec::new(),
        }
        .to_string();
        format!(
            "resource sync failed after {} change(s) ({})",
            done.changes.len(),
            changes.lines().collect::<Vec<_>>().join("; ")
        )
    };
    Error::new(e.kind(), made)
        .transient(e.is_transient())
        .with_source(e)
}

/// Name → id of the resources this layer knows, for routes and resolvers that name resources;
/// registers resources at run time.
///
/// Cloning is an `Arc` clone. Lookups of unknown names refresh the list from the AS at most
/// once per refresh interval (default 5 s, `UmaLayerBuilder::resource_lookup_interval`), and
/// read only the resources new since the last refresh, so a client cannot make the layer flood
/// the AS.
#[derive(Clone)]
pub struct ResourceRegistry {
    inner: Arc<RegistryInner>,
}

/// A [`ResourceRegistry`] that does not keep the layer alive (for background tasks).
#[derive(Clone)]
pub(crate) struct WeakRegistry(Weak<RegistryInner>);

impl WeakRegistry {
    /// The registry, while its layer lives.
    pub(crate) fn upgrade(&self) -> Option<ResourceRegistry> {
        self.0.upgrade().map(|inner| ResourceRegistry { inner })
    }
}

struct RegistryInner {
    registrar: Option<Registrar>,
    ids: RwLock<HashMap<String, String>>,
    /// The declarations of the resources this layer registers (the map's, and those given to
    /// [`ResourceRegistry::register`]), by name: what a forgotten resource is registered
    /// again from.
    decls: RwLock<HashMap<String, ResourceDecl>>,
    refresh: tokio::sync::Mutex<Refresh>,
    refresh_interval: Duration,
    /// The recovery of resources the AS forgot.
    resync: Resync,
    /// Counts the changes that make a [`Binding`] stale: a known name forgotten or given
    /// another id. New names do not count.
    generation: AtomicU64,
}

#[cfg(test)]
thread_local! {
    /// How many times this thread called [`ResourceRegistry::id`] (the pipeline's tests count
    /// them on the hit path).
    pub(crate) static ID_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A resource name bound to its id, for routes that name their resource: the request path
/// reads the id from the binding, without the registry's lock or a copy, for as long as the
/// registry has forgotten or changed no id since the binding was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Binding {
    id: Arc<str>,
    generation: u64,
}

/// What the registry's lookups remember of the AS's list.
#[derive(Default)]
struct Refresh {
    /// When the AS was last listed, and the error if that failed.
    last: Option<(Instant, Option<Error>)>,
    /// The ids already read, so that a refresh reads only resources new since the last one.
    read: HashSet<String>,
    /// With an owner for names: per name, when it was last looked up without finding one
    /// resource, and the error if that failed.
    misses: HashMap<String, (Instant, Option<Error>)>,
}

impl fmt::Debug for ResourceRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceRegistry")
            .field(
                "known",
                &self
                    .inner
                    .ids
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len(),
            )
            .finish_non_exhaustive()
    }
}

impl ResourceRegistry {
    pub(crate) fn new(
        registrar: Option<Registrar>,
        ids: HashMap<String, String>,
        decls: Vec<ResourceDecl>,
        refresh_interval: Duration,
        resync: Resync,
    ) -> Self {
        let decls = decls.into_iter().map(|d| (d.name.clone(), d)).collect();
        Self {
            inner: Arc::new(RegistryInner {
                registrar,
                ids: RwLock::new(ids),
                decls: RwLock::new(decls),
                refresh: tokio::sync::Mutex::default(),
                refresh_interval,
                resync,
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// A binding of `name` to its id, if this layer knows it.
    pub(crate) fn bind(&self, name: &str) -> Option<Binding> {
        let ids = self
            .inner
            .ids
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        // Read under the lock: a change made after this is counted after it.
        let generation = self.inner.generation.load(Ordering::Acquire);
        ids.get(name).map(|id| Binding {
            id: Arc::from(id.as_str()),
            generation,
        })
    }

    /// The id of a binding, unless an id was forgotten or changed since it was made (the
    /// caller then asks by name).
    pub(crate) fn bound<'b>(&self, binding: &'b Binding) -> Option<&'b str> {
        (self.inner.generation.load(Ordering::Acquire) == binding.generation)
            .then_some(&*binding.id)
    }

    /// Counts a change that makes the bindings made before it stale.
    fn unbind_all(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether this layer holds the declaration of the resource named `name` (and so can
    /// register it again).
    pub(crate) fn declares(&self, name: &str) -> bool {
        self.inner
            .decls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name)
    }

    /// The recovery state of resources the AS forgot.
    pub(crate) fn resync(&self) -> &Resync {
        &self.inner.resync
    }

    /// This registry, without keeping its layer alive.
    pub(crate) fn downgrade(&self) -> WeakRegistry {
        WeakRegistry(Arc::downgrade(&self.inner))
    }

    /// Makes the AS know the resource named `name` again after it refused `refused` (its id
    /// as this layer knew it) as unknown: registers it again from its declaration, or, for a
    /// resource registered by someone else, lists the AS to find its new id. Remembers and
    /// returns the id, with the metric outcome (`registered` or `found`).
    ///
    /// # Errors
    ///
    /// The AS's refusal or failure, or (outcome `missing`) that it lists no resource of that
    /// name; with the metric outcome.
    pub(crate) async fn recover(
        &self,
        name: &str,
        refused: &str,
    ) -> Result<(String, &'static str), (Error, &'static str)> {
        let registrar = self.registrar().map_err(|e| (e, "failed"))?;
        let decl = self
            .inner
            .decls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned();
        let (id, outcome) = match decl {
            Some(decl) => (
                registrar.create(&decl).await.map_err(|e| (e, "failed"))?,
                "registered",
            ),
            None => match self.relookup(name, refused).await {
                Ok(Some(id)) => (id, "found"),
                Ok(None) => {
                    let e = Error::new(
                        ErrorKind::Registration,
                        format!("the AS lists no resource named {name:?}"),
                    );
                    return Err((e, "missing"));
                }
                Err(e) => return Err((e, "failed")),
            },
        };
        let mut ids = self
            .inner
            .ids
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if ids.insert(name.to_owned(), id.clone()).is_some() {
            self.unbind_all();
        }
        Ok((id, outcome))
    }

    /// Looks `name` up at the AS again, now, forgetting `refused` (the id the AS no longer
    /// knows) and the time of the last listing.
    async fn relookup(&self, name: &str, refused: &str) -> Result<Option<String>, Error> {
        {
            let mut refresh = self.inner.refresh.lock().await;
            refresh.last = None;
            refresh.read.remove(refused);
        }
        {
            let mut ids = self
                .inner
                .ids
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if ids.get(name).is_some_and(|id| id == refused) {
                ids.remove(name);
                self.unbind_all();
            }
        }
        self.lookup(name).await
    }

    /// The id of the resource named `name`, if this layer knows it (no AS call).
    #[must_use]
    pub fn id(&self, name: &str) -> Option<String> {
        #[cfg(test)]
        ID_READS.with(|n| n.set(n.get() + 1));
        self.inner
            .ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The id of the resource named `name`: from memory, or by listing the AS's resources
    /// (at most once per refresh interval; only resources not read before are read).
    ///
    /// # Errors
    ///
    /// When the AS cannot be listed; until the next refresh is due, lookups of names it did
    /// not know repeat that error rather than answer "no such resource".
    pub async fn lookup(&self, name: &str) -> Result<Option<String>, Error> {
        if let Some(id) = self.id(name) {
            return Ok(Some(id));
        }
        let Some(registrar) = &self.inner.registrar else {
            return Ok(None);
        };
        let mut refresh = self.inner.refresh.lock().await;
        if let Some(id) = self.id(name) {
            return Ok(Some(id)); // another task refreshed while we waited
        }
        if let Some(owner) = &registrar.names_owner {
            return self
                .lookup_owned(registrar, owner, name, &mut refresh)
                .await;
        }
        if let Some((at, failure)) = &refresh.last
            && at.elapsed() < self.inner.refresh_interval
        {
            return failure.as_ref().map_or(Ok(None), |e| Err(e.repeat()));
        }
        let listed = async {
            let listed = registrar.list_ids().await?;
            let new = listed
                .iter()
                .filter(|id| !refresh.read.contains(*id))
                .cloned()
                .collect();
            Ok::<_, Error>((registrar.read_each(new).await?, listed))
        };
        let (fresh, listed) = match listed.await {
            Ok(answer) => {
                refresh.last = Some((Instant::now(), None));
                answer
            }
            Err(e) => {
                refresh.last = Some((Instant::now(), Some(e.repeat())));
                return Err(e);
            }
        };
        let listed: HashSet<String> = listed.into_iter().collect();
        let mut ids = self
            .inner
            .ids
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for r in fresh {
            refresh.read.insert(r.id.clone());
            if let Some(n) = r.name {
                // A name whose known id the AS no longer lists was deleted and made again.
                match ids.get(&n) {
                    Some(known) if listed.contains(known) => {}
                    known => {
                        if known.is_some() {
                            self.unbind_all();
                        }
                        ids.insert(n, r.id);
                    }
                }
            }
        }
        Ok(ids.get(name).cloned())
    }

    /// [`lookup`](Self::lookup) of a name among the resources `owner` owns: asked for by name,
    /// at most once per refresh interval for a name not found. Several resources of that name
    /// are an error (Keycloak's enforcer would take the first the AS lists).
    async fn lookup_owned(
        &self,
        registrar: &Registrar,
        owner: &str,
        name: &str,
        refresh: &mut Refresh,
    ) -> Result<Option<String>, Error> {
        if let Some((at, failure)) = refresh.misses.get(name)
            && at.elapsed() < self.inner.refresh_interval
        {
            return failure.as_ref().map_or(Ok(None), |e| Err(e.repeat()));
        }
        let found = registrar.find_owned(name, owner).await.and_then(|ids| {
            if ids.len() > 1 {
                return Err(Error::new(
                    ErrorKind::Registration,
                    format!(
                        "{} resources named {name:?} belong to {owner:?}: the layer binds the \
                         name to none of them; rename or delete the others",
                        ids.len()
                    ),
                ));
            }
            Ok(ids.into_iter().next())
        });
        match found {
            Ok(Some(id)) => {
                refresh.misses.remove(name);
                self.inner
                    .ids
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(name.to_owned(), id.clone());
                Ok(Some(id))
            }
            Ok(None) => {
                refresh
                    .misses
                    .insert(name.to_owned(), (Instant::now(), None));
                Ok(None)
            }
            Err(e) => {
                let repeat = e.repeat();
                refresh
                    .misses
                    .insert(name.to_owned(), (Instant::now(), Some(repeat)));
                Err(e)
            }
        }
    }

    /// Registers `decl` at the AS (or finds it, when the AS already has that name) and
    /// remembers its id and its declaration: should the AS later answer a permission request
    /// for it with `invalid_resource_id` (it forgot the resource), the layer registers it
    /// again from this declaration, as it does for the resources of the map.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] without a registration endpoint; otherwise the AS's refusal.
    pub async fn register(&self, decl: ResourceDecl) -> Result<String, Error> {
        if let Some(id) = self.id(&decl.name) {
            return Ok(id);
        }
        let registrar = self.registrar()?;
        let id = registrar.create(&decl).await?;
        let replaced = self
            .inner
            .ids
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(decl.name.clone(), id.clone());
        if replaced.is_some() {
            self.unbind_all();
        }
        self.inner
            .decls
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(decl.name.clone(), decl);
        Ok(id)
    }

    /// Deletes the resource named `name` at the AS and forgets it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] without a registration endpoint; otherwise the AS's refusal.
    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        let registrar = self.registrar()?;
        let Some(id) = self.lookup(name).await? else {
            return Ok(());
        };
        registrar.delete(&id, name).await?;
        let mut ids = self
            .inner
            .ids
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if ids.remove(name).is_some() {
            self.unbind_all();
        }
        drop(ids);
        self.inner
            .decls
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        Ok(())
    }

    fn registrar(&self) -> Result<&Registrar, Error> {
        self.inner.registrar.as_ref().ok_or_else(|| {
            Error::config(
                "no resource registration endpoint: set .resource_registration_endpoint(url)",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_ignore_scope_order_and_empty_strings() {
        let r = RegisteredResource {
            id: "1".into(),
            name: Some("a".into()),
            r#type: None,
            description: Some(String::new()),
            icon_uri: None,
            resource_scopes: vec!["read".into(), "write".into()],
        };
        assert!(
            r.differences(&ResourceDecl::new("a", ["write", "read"]))
                .is_empty()
        );
        assert_eq!(
            r.differences(&ResourceDecl::new("a", ["read"]).with_type("t")),
            ["type", "resource_scopes"]
        );
    }

    #[test]
    fn the_diff_reads_well() {
        let sync = ResourceSync {
            changes: vec![
                ResourceChange::Create {
                    name: "album".into(),
                    scopes: vec!["view".into(), "delete".into()],
                },
                ResourceChange::Update {
                    id: "r1".into(),
                    name: "photo".into(),
                    fields: vec!["resource_scopes"],
                },
                ResourceChange::Delete {
                    id: "r2".into(),
                    name: "old".into(),
                },
            ],
            unchanged: vec!["health".into()],
        };
        assert_eq!(
            sync.to_string(),
            "+ album [view, delete]\n~ photo (r1): resource_scopes\n- old (r2)\n  health\n"
        );
    }

    /// A failed sync says what it changed before, and its cause is its source, printed once.
    #[test]
    fn a_failed_sync_says_what_it_changed() {
        let cause = Error::new(ErrorKind::Registration, "registering resource \"b\"");
        let mut done = ResourceSync::default();
        done.unchanged.push("health".into());
        let e = sync_failed(&done, cause.repeat());
        assert_eq!(e.to_string(), "resource sync failed (no change was made)");
        assert_eq!(
            format!("{e:#}"),
            "resource sync failed (no change was made): registering resource \"b\""
        );
        done.changes.push(ResourceChange::Create {
            name: "a".into(),
            scopes: vec!["view".into()],
        });
        done.changes.push(ResourceChange::Delete {
            id: "r2".into(),
            name: "old".into(),
        });
        let e = sync_failed(&done, cause);
        assert_eq!(e.kind(), ErrorKind::Registration);
        assert_eq!(
            e.to_string(),
            "resource sync failed after 2 change(s) (+ a [view]; - old (r2))"
        );
        assert_eq!(
            std::error::Error::source(&e).map(ToString::to_string),
            Some("registering resource \"b\"".to_owned())
        );
    }
}
