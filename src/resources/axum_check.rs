//! What [`crate::axum::UmaRouter`] asks of the map: which route's rule the layer applies to a
//! request, so that the route axum's router runs can be compared with it, and the few facts of
//! a [`Route`] the router's guard needs.

use http::Method;

use super::template::Lens;
use super::{EnforcementMode, ResourceMap, Route, normalize_path};

impl ResourceMap {
    /// The index (in the order routes were added) of the route whose own rule the layer
    /// applies to a request with `method` for `raw_path` (the path as received): the best
    /// match of the normalised path. `None` when the path is refused or matches no route, when
    /// the map does not validate, and when the best match is a public route that does not let
    /// `method` through (the layer then decides by the other routes matching the path, see
    /// [public routes](ResourceMap#public-routes), while axum runs the public route's handler).
    pub(crate) fn deciding_route(&self, method: &Method, raw_path: &str) -> Option<usize> {
        if self.error.is_some() {
            return None;
        }
        let path = normalize_path(raw_path).ok()?;
        let index = self.select(path.segments(), Lens::CANONICAL)?;
        let route = &self.entries.get(index)?.route;
        (!route.public || route.is_public_for(method)).then_some(index)
    }

    /// The template of route `index`, as written.
    pub(crate) fn template_of(&self, index: usize) -> Option<&str> {
        self.entries.get(index).map(|e| e.route.template.as_str())
    }
}

impl Route {
    /// The template, as written.
    pub(crate) fn template(&self) -> &str {
        &self.template
    }

    /// The same rule for another template (a route moved under a prefix).
    pub(crate) fn with_template(mut self, template: String) -> Self {
        self.template = template;
        self
    }

    /// The route's override of the layer's enforcement mode, if any.
    pub(crate) fn enforcement_override(&self) -> Option<EnforcementMode> {
        self.enforcement
    }

    /// Whether the route decides through a resolver.
    pub(crate) fn has_resolver(&self) -> bool {
        self.resolver.is_some()
    }
}
