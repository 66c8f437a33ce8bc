//! Property test: the layer agrees with the router it protects.
//!
//! A UMA resource server is only as strong as the agreement between the rule the middleware
//! applies to a request and the handler the application then runs. This test generates route
//! tables and requests, serves each table twice from one description (as a [`ResourceMap`] for
//! the layer and as an axum 0.8 [`Router`], matchit, for the application) and checks, with
//! axum as the reference:
//!
//! > whenever axum runs the handler of route H for a request that the layer let through, the
//! > layer decided that request under H's rule for the method H saw, or under a stricter one.
//!
//! # The rules
//!
//! Each generated route `i` protects its own resource `R_i`, registered at one real
//! `uma-test-as` for the whole run, and needs its own scopes per method: `s-get`, `s-delete`,
//! …, or `s-any` for the route's [`Route::any_method`] entry, sometimes with a second scope
//! (`s-get2`) and sometimes under [`ScopeMode::Any`]; some routes use
//! [`Route::method_as_scope`]. The rule of route `i` for the method `m` its handler saw is:
//!
//! - public route: public when `m` is `GET`, `HEAD` or `OPTIONS` (byte for byte); any other
//!   method on a public route needs some token;
//! - protected route: the scopes listed for `m`, else (for `HEAD`) those for `GET`, else the
//!   `any_method` scopes, else `m` itself with `method_as_scope`, else nothing may let the
//!   request through (a method the map does not list for a path it does match is refused,
//!   whatever `unmapped` says).
//!
//! The application may handle more methods than the map lists (a map that forgot one), and a
//! wildcard route `/p/*` is served by axum as `/p/{*rest}`, sometimes with `/p` as well.
//!
//! # The checks
//!
//! Every request goes through the layered application in-process (tower `oneshot`, no socket
//! for the application; the layer talks to the AS over loopback). Handlers answer with their
//! route index, the method they saw and the resource of the `UmaPrincipal` they were given.
//!
//! 1. Without a token: if route `i`'s handler ran, its rule must be public.
//! 2. With an RPT granting every scope of every resource: if route `i`'s handler ran and its
//!    rule is not public, it must be a scope rule, and the principal's resource must be `R_i`.
//! 3. With that RPT minus one scope of `R_i` that the rule needs (all of them for
//!    [`ScopeMode::Any`]): route `i`'s handler must not run. The layer lets such a token
//!    through only when its own requirement does not imply the rule's.
//!
//! 404 and 405 answers of axum, and refusals of the layer, need no check. So that a run
//! cannot pass by checking nothing (an AS that refuses everything, a generator that misses
//! every route), it also fails when fewer than one case in twenty reached each of the checks.
//!
//! # Upstream models
//!
//! Axum matches the raw path (no percent-decoding, no dot-segment or empty-segment removal,
//! case-sensitive literals) and methods byte for byte. Each case also picks whether the
//! application sits behind a method normaliser that upper-cases methods equal to a standard
//! method up to case, as Werkzeug, Django and Symfony do, so that `delete` runs the `DELETE`
//! handler. Upstreams that percent-decode paths (Werkzeug, Express) are not modelled here.
//!
//! # Running it
//!
//! `cargo test --test agreement` runs [`DEFAULT_CASES`] cases; `PROPTEST_CASES=20000` runs
//! more. A failing case is shrunk and its seed appended to
//! `proptest-regressions/agreement.txt`, whose seeds are replayed first on every later run:
//! commit that file with the fix.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::sync::Mutex;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};
use common::*;
use http::{HeaderValue, Method, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestError, TestRunner};
use tower::{Layer as _, ServiceExt as _};
use tower_uma::{
    IntrospectionCache, ResourceMap, Route, UmaLayer, UmaLayerBuilder, UmaPrincipal,
    resources::{ScopeMode, Unmapped},
};
use uma_test_as::{ResourceDescription, RptPermission, RptSpec, TestAs};

/// Cases per run unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 2000;

/// Routes per generated table, and so resources registered at the AS.
const MAX_ROUTES: usize = 5;

/// The methods requests use, and maps list: the standard ones axum routes by name, and two
/// extension methods that axum can only reach through a method router's fallback.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE", "PROPFIND",
];

/// How many of [`METHODS`] are standard methods (axum has a [`MethodFilter`] for them).
const STANDARD: usize = 7;

/// Methods a public route is public for.
const PUBLIC_METHODS: [&str; 3] = ["GET", "HEAD", "OPTIONS"];

/// Literal template segments: overlapping words, letter-case variants, an unreserved and a
/// sub-delim character, non-ASCII, and a literal spelled with an escape.
const LITERALS: [&str; 10] = [
    "albums", "featured", "Featured", "admin", "new", "café", "a.b", "a!b", "%7Eme", "x-1",
];

/// Plain values for `{param}` positions and extra segments (the first is the default).
const PLAIN: [&str; 6] = ["1", "x", "FEATURED", "Albums", "~", "me"];

/// Other values: the empty segment, dot segments in several spellings, encoded slashes and
/// backslashes, double encodings, path parameters, non-ASCII, escapes of unreserved and
/// reserved characters, template syntax.
#[rustfmt::skip]
const ODD: [&str; 25] = [
    "", ".", "..", "%2e", "%2E%2e", ".%2E", "%2f", "a%2Fb", "\\", "%5C", "%252e", "%25",
    "1;x=1", ";jsessionid=1", "%3B", "%C3%A9", "é", "%41", "%7e", "a%21b", "%3F", "%23", "%00",
    "%20", "{p1}",
];

// ---------------------------------------------------------------------------------------------
// The generated data

/// One segment of a route template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seg {
    /// A literal, by index into [`LITERALS`].
    Lit(usize),
    /// `{p<position>}`: named after its position, so that templates never name one position
    /// differently.
    Param,
}

/// What a route's map entry says.
#[derive(Clone, Debug)]
enum Kind {
    /// [`Route::public`].
    Public,
    /// A protected route.
    Protected(Protected),
}

/// The scope rules of a protected route.
#[derive(Clone, Debug)]
struct Protected {
    /// Scope lists per method, by index into [`METHODS`]; `true` adds a second scope.
    methods: BTreeMap<usize, bool>,
    /// [`Route::any_method`] scopes, one or (`true`) two.
    any: Option<bool>,
    /// [`Route::method_as_scope`].
    method_as_scope: bool,
    /// Scopes match under [`ScopeMode::Any`].
    mode_any: bool,
}

/// One route of a table: its template, its map entry, and what the application serves.
#[derive(Clone, Debug)]
struct RouteSpec {
    segs: Vec<Seg>,
    /// The template ends in `*` (axum: `{*rest}`).
    rest: bool,
    /// For a wildcard route, axum also serves the bare prefix.
    bare: bool,
    kind: Kind,
    /// A standard method the application handles although the map does not list it.
    extra_method: Option<usize>,
    /// The application has a method fallback although the map has no `any_method`.
    extra_fallback: bool,
}

/// Which application the layer protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Upstream {
    /// Axum's router as it is.
    Axum,
    /// Axum behind a method normaliser: a method equal to a standard one up to ASCII case is
    /// upper-cased first (Werkzeug, Django, Symfony).
    UpcasedMethods,
}

/// How a segment of the request is spelled from its source.
#[derive(Clone, Copy, Debug)]
enum Spell {
    AsIs,
    Upper,
    Lower,
    /// The first ASCII letter with its case swapped.
    SwapFirst,
    /// The character at this index (modulo the length) percent-encoded, hex in lower case
    /// when the flag is set.
    Encode(usize, bool),
    /// Fully percent-decoded (`%7Eme` is `~me`).
    Decode,
}

/// Where a request segment comes from.
#[derive(Clone, Copy, Debug)]
enum SegPick {
    /// The target template's segment: its literal, or for a parameter [`PLAIN`]`[0]`.
    Template(Spell),
    /// A value of [`PLAIN`].
    Plain(usize),
    /// A value of [`ODD`].
    Odd(usize),
    /// The table's literal at this index (modulo their number), any route, any position.
    Literal(usize, Spell),
}

/// A change to the whole path, at a position modulo the number of segments plus one.
#[derive(Clone, Copy, Debug)]
enum Deco {
    None,
    TrailingSlash,
    LeadingDoubleSlash,
    /// An empty segment inserted.
    Empty(usize),
    /// A `.`/`..` segment in one of four spellings inserted.
    Dot(usize, usize),
    /// `;x=1` appended to a segment.
    Semicolon(usize),
    /// A backslash instead of a slash.
    Backslash(usize),
}

/// How a method is spelled.
#[derive(Clone, Copy, Debug)]
enum MethodCase {
    Upper,
    Lower,
    Capitalized,
    /// Letters whose bit in the mask is set are lower case.
    Mixed(u8),
}

/// A request, as choices to be realised against the table.
#[derive(Clone, Debug)]
struct ReqRecipe {
    method: usize,
    case: MethodCase,
    /// The route the path is modelled on (modulo the table's length).
    target: usize,
    /// Picks for the template's segments, in order (missing ones are [`SegPick::Template`]).
    segs: Vec<SegPick>,
    /// Segments appended after the template's (what a wildcard swallows).
    extra: Vec<SegPick>,
    deco: Deco,
}

/// One generated case.
#[derive(Clone, Debug)]
struct Scenario {
    routes: Vec<RouteSpec>,
    upstream: Upstream,
    unmapped_allow: bool,
    requests: Vec<ReqRecipe>,
}

fn spell_strategy() -> impl Strategy<Value = Spell> {
    prop_oneof![
        10 => Just(Spell::AsIs),
        1 => Just(Spell::Upper),
        1 => Just(Spell::Lower),
        2 => Just(Spell::SwapFirst),
        2 => (0..8usize, any::<bool>()).prop_map(|(i, lower)| Spell::Encode(i, lower)),
        1 => Just(Spell::Decode),
    ]
}

fn seg_pick_strategy() -> impl Strategy<Value = SegPick> {
    prop_oneof![
        10 => spell_strategy().prop_map(SegPick::Template),
        2 => (0..PLAIN.len()).prop_map(SegPick::Plain),
        1 => (0..ODD.len()).prop_map(SegPick::Odd),
        3 => (0..8usize, spell_strategy()).prop_map(|(i, s)| SegPick::Literal(i, s)),
    ]
}

fn deco_strategy() -> impl Strategy<Value = Deco> {
    prop_oneof![
        20 => Just(Deco::None),
        2 => Just(Deco::TrailingSlash),
        1 => Just(Deco::LeadingDoubleSlash),
        2 => (0..4usize).prop_map(Deco::Empty),
        2 => (0..4usize, 0..4usize).prop_map(|(at, dot)| Deco::Dot(at, dot)),
        1 => (0..4usize).prop_map(Deco::Semicolon),
        1 => (0..4usize).prop_map(Deco::Backslash),
    ]
}

fn method_case_strategy() -> impl Strategy<Value = MethodCase> {
    prop_oneof![
        6 => Just(MethodCase::Upper),
        2 => Just(MethodCase::Lower),
        1 => Just(MethodCase::Capitalized),
        1 => any::<u8>().prop_map(MethodCase::Mixed),
    ]
}

/// An index into [`METHODS`], `GET` the most likely.
fn method_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        5 => Just(0),
        1 => Just(1),
        2 => Just(2),
        1 => Just(3),
        2 => Just(4),
        1 => Just(5),
        1 => Just(6),
        1 => Just(7),
        1 => Just(8),
    ]
}

fn request_strategy() -> impl Strategy<Value = ReqRecipe> {
    (
        method_strategy(),
        method_case_strategy(),
        0..MAX_ROUTES,
        proptest::collection::vec(seg_pick_strategy(), 0..=4),
        proptest::collection::vec(seg_pick_strategy(), 0..=2),
        deco_strategy(),
    )
        .prop_map(|(method, case, target, segs, extra, deco)| ReqRecipe {
            method,
            case,
            target,
            segs,
            extra,
            deco,
        })
}

fn route_strategy() -> impl Strategy<Value = RouteSpec> {
    let seg = prop_oneof![3 => (0..LITERALS.len()).prop_map(Seg::Lit), 2 => Just(Seg::Param)];
    let protected = (
        proptest::collection::btree_map(0..METHODS.len(), proptest::bool::weighted(0.2), 0..=3),
        proptest::option::weighted(0.4, proptest::bool::weighted(0.2)),
        proptest::bool::weighted(0.15),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(methods, any, method_as_scope, mode_any)| {
            // A protected route maps at least one method.
            let any = if methods.is_empty() && any.is_none() && !method_as_scope {
                Some(false)
            } else {
                any
            };
            Kind::Protected(Protected {
                methods,
                any,
                method_as_scope,
                mode_any,
            })
        });
    let kind = prop_oneof![1 => Just(Kind::Public), 2 => protected];
    (
        proptest::collection::vec(seg, 0..=3),
        proptest::bool::weighted(0.3),
        any::<bool>(),
        kind,
        proptest::option::weighted(0.2, 0..STANDARD),
        proptest::bool::weighted(0.15),
    )
        .prop_map(
            |(segs, rest, bare, kind, extra_method, extra_fallback)| RouteSpec {
                segs,
                rest,
                bare,
                kind,
                extra_method,
                extra_fallback,
            },
        )
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(route_strategy(), 1..=MAX_ROUTES),
        prop_oneof![Just(Upstream::Axum), Just(Upstream::UpcasedMethods)],
        any::<bool>(),
        proptest::collection::vec(request_strategy(), 1..=8),
    )
        .prop_map(|(routes, upstream, unmapped_allow, requests)| Scenario {
            routes,
            upstream,
            unmapped_allow,
            requests,
        })
}

// ---------------------------------------------------------------------------------------------
// Realising a case: the map, the application, the requests

/// The scope names of one method slot: `s-get`, or `s-get` and `s-get2`. They differ from
/// the method names that [`Route::method_as_scope`] makes scopes of.
fn slot_scopes(slot: &str, two: bool) -> Vec<String> {
    let base = format!("s-{}", slot.to_ascii_lowercase());
    let mut out = vec![base.clone()];
    if two {
        out.push(format!("{base}2"));
    }
    out
}

/// Every scope a resource is registered with: both scopes of every slot, and every method
/// name of [`METHODS`] as it is spelled there.
fn scope_universe() -> Vec<String> {
    METHODS
        .iter()
        .copied()
        .chain(["any"])
        .flat_map(|slot| slot_scopes(slot, true))
        .chain(METHODS.iter().map(|m| (*m).to_owned()))
        .collect()
}

impl RouteSpec {
    fn template_segments(&self, rest: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .segs
            .iter()
            .enumerate()
            .map(|(at, seg)| match seg {
                Seg::Lit(i) => LITERALS[*i].to_owned(),
                Seg::Param => format!("{{p{at}}}"),
            })
            .collect();
        if self.rest {
            out.push(rest.to_owned());
        }
        out
    }

    /// The template in the layer's syntax.
    fn template(&self) -> String {
        format!("/{}", self.template_segments("*").join("/"))
    }

    /// The paths axum serves this route at.
    fn axum_paths(&self) -> Vec<String> {
        let mut paths = vec![format!("/{}", self.template_segments("{*rest}").join("/"))];
        if self.rest && self.bare {
            let bare = Self {
                rest: false,
                ..self.clone()
            };
            paths.push(bare.template());
        }
        paths
    }

    /// The layer's route for resource `resource_id`.
    fn map_route(&self, resource_id: &str) -> Route {
        match &self.kind {
            Kind::Public => Route::public(&self.template()),
            Kind::Protected(p) => {
                let mut route = Route::new(&self.template()).resource_id(resource_id);
                for (&m, &two) in &p.methods {
                    let method = Method::from_bytes(METHODS[m].as_bytes()).expect("a method");
                    route = route.scopes(method, slot_scopes(METHODS[m], two));
                }
                if let Some(two) = p.any {
                    route = route.any_method(slot_scopes("any", two));
                }
                if p.method_as_scope {
                    route = route.method_as_scope();
                }
                if p.mode_any {
                    route = route.scope_mode(ScopeMode::Any);
                }
                route
            }
        }
    }

    /// The standard methods the application routes by name, and whether it has a fallback.
    fn app_methods(&self) -> (BTreeSet<usize>, bool) {
        let mut named: BTreeSet<usize> = self.extra_method.into_iter().collect();
        let mut fallback = self.extra_fallback;
        match &self.kind {
            Kind::Public => {
                named.insert(0); // GET (and so HEAD)
            }
            Kind::Protected(p) => {
                for &m in p.methods.keys() {
                    if m < STANDARD {
                        named.insert(m);
                    } else {
                        // Axum reaches extension methods only through the fallback.
                        fallback = true;
                    }
                }
                fallback |= p.any.is_some() || p.method_as_scope;
            }
        }
        (named, fallback)
    }

    /// Route `index`'s rule for the method its handler saw.
    fn rule(&self, method: &str) -> Rule {
        match &self.kind {
            Kind::Public if PUBLIC_METHODS.contains(&method) => Rule::Public,
            Kind::Public => Rule::TokenNeeded,
            Kind::Protected(p) => {
                let entry = |name: &str| {
                    p.methods
                        .iter()
                        .find(|(m, _)| METHODS[**m] == name)
                        .map(|(m, two)| slot_scopes(METHODS[*m], *two))
                };
                let scopes = entry(method)
                    .or_else(|| (method == "HEAD").then(|| entry("GET")).flatten())
                    .or_else(|| p.any.map(|two| slot_scopes("any", two)))
                    .or_else(|| p.method_as_scope.then(|| vec![method.to_owned()]));
                match scopes {
                    Some(scopes) => Rule::Scopes {
                        scopes,
                        any: p.mode_any,
                    },
                    None => Rule::Refuse,
                }
            }
        }
    }

    fn describe(&self, index: usize) -> String {
        let (named, fallback) = self.app_methods();
        let mut app: Vec<&str> = named.iter().map(|m| METHODS[*m]).collect();
        if fallback {
            app.push("fallback");
        }
        let rule = match &self.kind {
            Kind::Public => "public".to_owned(),
            Kind::Protected(p) => {
                let mut s = String::new();
                for (m, two) in &p.methods {
                    let _ = write!(s, "{}:{:?} ", METHODS[*m], slot_scopes(METHODS[*m], *two));
                }
                if let Some(two) = p.any {
                    let _ = write!(s, "any_method:{:?} ", slot_scopes("any", two));
                }
                if p.method_as_scope {
                    s.push_str("method_as_scope ");
                }
                if p.mode_any {
                    s.push_str("(scope mode any)");
                }
                format!("R{index} {}", s.trim_end())
            }
        };
        format!(
            "  route {index}: layer `{}` {rule}; axum {:?} for {app:?}",
            self.template(),
            self.axum_paths()
        )
    }
}

/// What route H's rule asks of a request its handler ran.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// No token needed.
    Public,
    /// Some token needed (a method a public route is not public for).
    TokenNeeded,
    /// These scopes on the route's resource, all of them or (`any`) one of them.
    Scopes { scopes: Vec<String>, any: bool },
    /// Nothing may let it through (a method the map does not list for the route).
    Refuse,
}

fn spell(source: &str, how: Spell) -> String {
    match how {
        Spell::AsIs => source.to_owned(),
        Spell::Upper => source.to_ascii_uppercase(),
        Spell::Lower => source.to_ascii_lowercase(),
        Spell::SwapFirst => {
            let mut swapped = false;
            source
                .chars()
                .map(|c| {
                    if !swapped && c.is_ascii_alphabetic() {
                        swapped = true;
                        if c.is_ascii_uppercase() {
                            c.to_ascii_lowercase()
                        } else {
                            c.to_ascii_uppercase()
                        }
                    } else {
                        c
                    }
                })
                .collect()
        }
        Spell::Encode(at, lower) => {
            let chars: Vec<char> = source.chars().collect();
            if chars.is_empty() {
                return String::new();
            }
            let at = at % chars.len();
            let mut out = String::new();
            for (i, c) in chars.iter().enumerate() {
                if i == at {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        if lower {
                            let _ = write!(out, "%{b:02x}");
                        } else {
                            let _ = write!(out, "%{b:02X}");
                        }
                    }
                } else {
                    out.push(*c);
                }
            }
            out
        }
        Spell::Decode => percent_encoding::percent_decode_str(source)
            .decode_utf8_lossy()
            .into_owned(),
    }
}

fn method_spelling(recipe: &ReqRecipe) -> String {
    let name = METHODS[recipe.method];
    match recipe.case {
        MethodCase::Upper => name.to_owned(),
        MethodCase::Lower => name.to_ascii_lowercase(),
        MethodCase::Capitalized => {
            let lower = name.to_ascii_lowercase();
            format!("{}{}", &name[..1], &lower[1..])
        }
        MethodCase::Mixed(mask) => name
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if mask & (1 << (i % 8)) != 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect(),
    }
}

/// The request path a recipe makes against a table.
fn realise_path(routes: &[RouteSpec], recipe: &ReqRecipe) -> String {
    let target = &routes[recipe.target % routes.len()];
    let literals: Vec<&str> = routes
        .iter()
        .flat_map(|r| &r.segs)
        .filter_map(|s| match s {
            Seg::Lit(i) => Some(LITERALS[*i]),
            Seg::Param => None,
        })
        .collect();
    let pick = |p: SegPick, template: Option<Seg>| -> String {
        match (p, template) {
            (SegPick::Template(how), Some(Seg::Lit(i))) => spell(LITERALS[i], how),
            (SegPick::Template(how), _) => spell(PLAIN[0], how),
            (SegPick::Plain(i), _) => PLAIN[i].to_owned(),
            (SegPick::Odd(i), _) => ODD[i].to_owned(),
            (SegPick::Literal(i, how), _) if literals.is_empty() => spell(LITERALS[i], how),
            (SegPick::Literal(i, how), _) => spell(literals[i % literals.len()], how),
        }
    };
    let mut segments: Vec<String> = target
        .segs
        .iter()
        .enumerate()
        .map(|(at, seg)| {
            let p = recipe
                .segs
                .get(at)
                .copied()
                .unwrap_or(SegPick::Template(Spell::AsIs));
            pick(p, Some(*seg))
        })
        .collect();
    segments.extend(recipe.extra.iter().map(|p| pick(*p, None)));
    let slots = segments.len() + 1;
    let mut leading = "/";
    let mut trailing = "";
    let mut separator_at: Option<usize> = None;
    match recipe.deco {
        Deco::None => {}
        Deco::TrailingSlash => trailing = "/",
        Deco::LeadingDoubleSlash => leading = "//",
        Deco::Empty(at) => segments.insert(at % slots, String::new()),
        Deco::Dot(at, dot) => {
            segments.insert(at % slots, [".", "..", "%2e", "%2E%2e"][dot].to_owned());
        }
        Deco::Semicolon(at) => {
            if let Some(s) = segments.get_mut(at % slots) {
                s.push_str(";x=1");
            } else {
                trailing = ";x=1";
            }
        }
        Deco::Backslash(at) => separator_at = Some(at % slots),
    }
    let mut path = leading.to_owned();
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            path.push(if separator_at == Some(i) { '\\' } else { '/' });
        }
        path.push_str(s);
    }
    path.push_str(trailing);
    path
}

/// Builds axum's router for the table, or `None` when matchit refuses it (a `{param}` and a
/// `{*rest}` at one position, two routes at one path).
fn app(routes: &[RouteSpec]) -> Option<Router> {
    let mut seen = BTreeSet::new();
    for route in routes {
        for path in route.axum_paths() {
            if !seen.insert(path) {
                return None;
            }
        }
    }
    let build = || {
        let mut router = Router::new();
        for (index, route) in routes.iter().enumerate() {
            let handler = move |req: Request| handle(index, req);
            let (named, fallback) = route.app_methods();
            let mut methods: MethodRouter = MethodRouter::new();
            for m in named {
                let method = Method::from_bytes(METHODS[m].as_bytes()).expect("a method");
                let filter = MethodFilter::try_from(method).expect("a standard method");
                methods = methods.on(filter, handler);
            }
            if fallback {
                methods = methods.fallback(handler);
            }
            for path in route.axum_paths() {
                router = router.route(&path, methods.clone());
            }
        }
        router
    };
    // Axum reports conflicts by panicking; keep the default hook from printing them.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let router = std::panic::catch_unwind(build).ok();
    std::panic::set_hook(hook);
    router
}

/// Every handler: which route ran, the method it saw, and the principal's resource.
async fn handle(index: usize, req: Request) -> Response {
    let mut resp = Response::new(Body::empty());
    let headers = resp.headers_mut();
    headers.insert("x-route", HeaderValue::from(index));
    if let Ok(method) = HeaderValue::from_str(req.method().as_str()) {
        headers.insert("x-method", method);
    }
    if let Some(p) = req.extensions().get::<UmaPrincipal>()
        && let Ok(resource) = HeaderValue::from_str(p.resource_id())
    {
        headers.insert("x-principal", resource);
    }
    resp
}

/// The upstream's method normalisation, if any.
fn normalise_method(upstream: Upstream, mut req: Request) -> Request {
    if upstream == Upstream::UpcasedMethods {
        let upper = req.method().as_str().to_ascii_uppercase();
        if METHODS[..STANDARD].contains(&upper.as_str())
            && let Ok(method) = Method::from_bytes(upper.as_bytes())
        {
            *req.method_mut() = method;
        }
    }
    req
}

// ---------------------------------------------------------------------------------------------
// The run

/// What is shared by every case: the AS, its resources, a layer builder, and the RPTs.
struct World {
    as_: TestAs,
    resource_ids: Vec<String>,
    builder: UmaLayerBuilder,
    all: String,
    /// RPTs granting everything but some scopes of one resource, by (resource, scopes).
    minus: Mutex<HashMap<(usize, Vec<String>), String>>,
    /// What the run checked, so that it cannot pass without checking anything.
    stats: Mutex<Stats>,
}

/// Counts of the checks that had something to check.
#[derive(Debug, Default)]
struct Stats {
    /// Requests sent (each in up to four passes).
    requests: u64,
    /// Public handlers run without a token.
    public_runs: u64,
    /// Protected handlers run with the all-granting RPT, their resource checked.
    protected_runs: u64,
    /// RPTs missing a needed scope, checked to be refused.
    withheld: u64,
}

impl World {
    async fn start() -> Self {
        let as_ = start_as().await;
        let resource_ids: Vec<String> = (0..MAX_ROUTES)
            .map(|i| {
                as_.register_resource(
                    "alice",
                    ResourceDescription {
                        name: Some(format!("route-{i}")),
                        resource_scopes: scope_universe(),
                        ..ResourceDescription::default()
                    },
                )
            })
            .collect();
        let builder = discover(&as_)
            .await
            .cache(IntrospectionCache::default())
            .http_client(http());
        let mut world = Self {
            as_,
            resource_ids,
            builder,
            all: String::new(),
            minus: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
        };
        world.all = world.mint(None);
        world
    }

    /// An RPT for bob granting every scope of every resource, but `except`'s scopes of its
    /// resource.
    fn mint(&self, except: Option<(usize, &[String])>) -> String {
        let permissions = self
            .resource_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let scopes = scope_universe().into_iter().filter(|s| match except {
                    Some((r, gone)) => r != i || !gone.contains(s),
                    None => true,
                });
                RptPermission::new(id.clone(), scopes)
            })
            .collect();
        self.as_.mint_rpt(RptSpec {
            sub: Some("bob".into()),
            client_id: Some(APP_ID.into()),
            exp: Some(now() + 24 * 3600),
            iat: Some(now()),
            permissions,
            ..RptSpec::default()
        })
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().expect("not poisoned"));
    }

    fn all_but(&self, resource: usize, scopes: &[String]) -> String {
        let mut minus = self.minus.lock().expect("not poisoned");
        minus
            .entry((resource, scopes.to_vec()))
            .or_insert_with(|| self.mint(Some((resource, scopes))))
            .clone()
    }
}

/// What the layered application answered.
#[derive(Debug)]
struct Outcome {
    status: StatusCode,
    /// The route whose handler ran, the method it saw, and the principal's resource.
    ran: Option<(usize, String, Option<String>)>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ran {
            Some((i, m, p)) => write!(
                f,
                "{}: route {i}'s handler ran for {m} with principal {}",
                self.status,
                p.as_deref().unwrap_or("none")
            ),
            None => write!(f, "{}: no handler ran", self.status),
        }
    }
}

async fn send<S>(svc: &S, method: &Method, path: &str, token: Option<&str>) -> Outcome
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send,
    S::Future: Send,
{
    let mut req = Request::new(Body::empty());
    *req.method_mut() = method.clone();
    *req.uri_mut() = path.parse().expect("checked by the caller");
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value");
        req.headers_mut().insert(http::header::AUTHORIZATION, value);
    }
    let resp = match svc.clone().oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let ran = header("x-route").and_then(|i| i.parse().ok()).map(|i| {
        (
            i,
            header("x-method").unwrap_or_default(),
            header("x-principal"),
        )
    });
    Outcome {
        status: resp.status(),
        ran,
    }
}

/// Runs one case; `Err` describes the first disagreement.
async fn check(world: &World, case: &Scenario) -> Result<(), TestCaseError> {
    let map = case
        .routes
        .iter()
        .zip(&world.resource_ids)
        .fold(ResourceMap::new(), |map, (route, id)| {
            map.route(route.map_route(id))
        });
    if map.validate().is_err() {
        return Err(TestCaseError::reject("the layer refuses the table"));
    }
    let Some(router) = app(&case.routes) else {
        return Err(TestCaseError::reject("axum refuses the table"));
    };
    let unmapped = if case.unmapped_allow {
        Unmapped::Allow
    } else {
        Unmapped::Deny
    };
    let layer: UmaLayer = world
        .builder
        .clone()
        .resources(map)
        .unmapped(unmapped)
        .build()
        .await
        .map_err(|e| TestCaseError::fail(format!("the layer does not build: {e}")))?;
    let upstream = case.upstream;
    let svc = layer.layer(router.map_request(move |req: Request| normalise_method(upstream, req)));

    for recipe in &case.requests {
        let path = realise_path(&case.routes, recipe);
        let spelled = method_spelling(recipe);
        let (Ok(method), Ok(_)) = (
            Method::from_bytes(spelled.as_bytes()),
            path.parse::<http::Uri>(),
        ) else {
            continue; // not a request http can carry
        };
        let fail = |pass: &str, outcome: &Outcome, why: &str| {
            let mut msg = format!(
                "{method} {path} ({pass}): {outcome}; {why}\n  upstream {:?}, unmapped {unmapped:?}\n",
                case.upstream
            );
            for (i, route) in case.routes.iter().enumerate() {
                let _ = writeln!(msg, "{}", route.describe(i));
            }
            TestCaseError::fail(msg)
        };

        world.count(|s| s.requests += 1);

        // 1. Without a token, only a public rule may run.
        let outcome = send(&svc, &method, &path, None).await;
        if let Some((i, seen, _)) = &outcome.ran {
            let rule = case.routes[*i].rule(seen);
            if rule != Rule::Public {
                return Err(fail(
                    "no token",
                    &outcome,
                    &format!("its rule for {seen} is {rule:?}"),
                ));
            }
            world.count(|s| s.public_runs += 1);
        }

        // 2. With an RPT granting everything, the principal names H's resource.
        let outcome = send(&svc, &method, &path, Some(&world.all)).await;
        let Some((i, seen, principal)) = &outcome.ran else {
            continue;
        };
        let rule = case.routes[*i].rule(seen);
        let (scopes, any) = match rule {
            Rule::Public | Rule::TokenNeeded => continue,
            Rule::Refuse => {
                return Err(fail(
                    "all-granting RPT",
                    &outcome,
                    &format!("the map does not list {seen} for route {i}"),
                ));
            }
            Rule::Scopes { scopes, any } => (scopes, any),
        };
        if principal.as_deref() != Some(world.resource_ids[*i].as_str()) {
            return Err(fail(
                "all-granting RPT",
                &outcome,
                &format!("decided for another resource than route {i}'s R{i}"),
            ));
        }
        world.count(|s| s.protected_runs += 1);

        // 3. Without a scope H's rule needs, H does not run.
        let withheld: Vec<Vec<String>> = if any {
            vec![scopes.clone()]
        } else {
            scopes.iter().map(|s| vec![s.clone()]).collect()
        };
        for gone in withheld {
            let token = world.all_but(*i, &gone);
            let outcome = send(&svc, &method, &path, Some(&token)).await;
            if outcome.ran.is_some() {
                return Err(fail(
                    &format!("RPT without {gone:?} on R{i}"),
                    &outcome,
                    &format!("route {i}'s rule needs {scopes:?} (any: {any})"),
                ));
            }
            world.count(|s| s.withheld += 1);
        }
    }
    Ok(())
}

#[test]
fn the_layer_agrees_with_the_router() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let world = rt.block_on(World::start());

    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    config.max_global_rejects = config.cases.saturating_mul(4);
    // Shrink as far as a long run would, also when PROPTEST_CASES is small (proptest's
    // automatic limit is four iterations per case).
    if config.max_shrink_iters == u32::MAX {
        config.max_shrink_iters = 4 * DEFAULT_CASES;
    }
    config.source_file = Some(file!());
    // Kept beside the crate, not beside this file; PROPTEST_DISABLE_FAILURE_PERSISTENCE=1
    // turns it off as usual.
    if config.failure_persistence.is_some() {
        config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/agreement.txt"
        ))));
    }
    let mut runner = TestRunner::new(config);
    let result = runner.run(&scenario_strategy(), |case| {
        rt.block_on(check(&world, &case))
    });
    let stats = world.stats.lock().expect("not poisoned");
    println!("{} cases: {stats:?}", runner.config().cases);
    match result {
        Ok(()) => {
            // A run in which nothing reached a handler would prove nothing.
            let floor = u64::from(runner.config().cases) / 20;
            assert!(
                stats.public_runs >= floor
                    && stats.protected_runs >= floor
                    && stats.withheld >= floor,
                "too few checks had something to check: {stats:?}"
            );
        }
        Err(TestError::Fail(why, case)) => {
            panic!("the layer and axum disagree:\n{why}\nminimal case: {case:#?}")
        }
        Err(TestError::Abort(why)) => panic!("the property test gave up: {why}"),
    }
}
