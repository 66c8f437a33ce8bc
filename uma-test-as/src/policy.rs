//! Policies: who gets which scopes of which resource through the uma-ticket grant.
//!
//! The assessment (UMA Grant §3.3.4) looks at each requested (resource, scope) pair on its
//! own. For one pair, the policies that name the resource and the scope (a policy without
//! scopes covers every scope) are consulted:
//!
//! 1. a `users` policy naming the requesting party, or an `anyone` policy with a known
//!    requesting party, **grants**;
//! 2. otherwise, if no requesting party is known and a `users` or `anyone` policy applies,
//!    the server **needs info** (an ID token);
//! 3. otherwise, an `owner_approval` policy makes the pair **wait for the owner**;
//! 4. otherwise the pair is **denied** (no matching policy denies).
//!
//! The grant is all-or-nothing: one denied pair denies the whole request (`request_denied`),
//! even if other pairs pass. Why: a partial RPT would leave the client unable to tell what it
//! lacks, and the spec allows either choice (Grant §3.3.4).

use crate::model::ResourceDescription;

/// Which resource a policy is about.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// Every resource registered with this `name`.
    Name(String),
    /// The resource with this `_id`.
    Id(String),
}

/// What a policy requires.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// Only these requesting parties (subjects of ID tokens this server issued).
    Users(Vec<String>),
    /// Any authenticated requesting party.
    Anyone,
    /// The resource owner approves each request.
    OwnerApproval,
}

/// A rule of the form "for this resource, these scopes go to these requesting parties".
///
/// A new policy grants nobody until [`users`](Self::users), [`anyone`](Self::anyone) or
/// [`owner_approval`](Self::owner_approval) says otherwise; without
/// [`scopes`](Self::scopes) it covers every scope of the resource.
///
/// # Example
///
/// ```
/// use uma_test_as::Policy;
///
/// // Bob may view albums.
/// let bob_views = Policy::resource("album").scopes(["view"]).users(["bob"]);
/// // Anyone with an ID token may view the resource with this id.
/// let public = Policy::resource_id("r-1").scopes(["view"]).anyone();
/// // Editing any album needs its owner's approval.
/// let edits = Policy::resource("album").scopes(["edit"]).owner_approval();
/// # let _ = (bob_views, public, edits);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    target: Target,
    scopes: Vec<String>,
    rule: Rule,
}

impl Policy {
    /// A policy for every resource registered under `name`.
    #[must_use]
    pub fn resource(name: impl Into<String>) -> Self {
        Self::new(Target::Name(name.into()))
    }

    /// A policy for the resource with this `_id`.
    #[must_use]
    pub fn resource_id(id: impl Into<String>) -> Self {
        Self::new(Target::Id(id.into()))
    }

    const fn new(target: Target) -> Self {
        Self {
            target,
            scopes: Vec::new(),
            rule: Rule::Users(Vec::new()),
        }
    }

    /// The scopes the policy covers. Defaults to every scope of the resource.
    #[must_use]
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Grants to these requesting parties (user names, i.e. ID-token subjects). Defaults to
    /// nobody.
    #[must_use]
    pub fn users(mut self, users: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.rule = Rule::Users(users.into_iter().map(Into::into).collect());
        self
    }

    /// Grants to any requesting party who presents an ID token issued by this server.
    #[must_use]
    pub fn anyone(mut self) -> Self {
        self.rule = Rule::Anyone;
        self
    }

    /// Makes every request wait for the resource owner's approval (`request_submitted`).
    #[must_use]
    pub fn owner_approval(mut self) -> Self {
        self.rule = Rule::OwnerApproval;
        self
    }

    fn covers(
        &self,
        resource_id: &str,
        resource: &ResourceDescription,
        scope: Option<&str>,
    ) -> bool {
        let target = match &self.target {
            Target::Name(name) => resource.name.as_deref() == Some(name.as_str()),
            Target::Id(id) => id == resource_id,
        };
        target
            && (self.scopes.is_empty()
                || scope.is_none_or(|scope| self.scopes.iter().any(|s| s == scope)))
    }
}

/// The assessment of one requested (resource, scope) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A policy grants it.
    Granted,
    /// A policy could grant it if the requesting party identified itself.
    NeedInfo,
    /// The owner has to approve it.
    Approval,
    /// Nothing grants it.
    Denied,
}

/// Assesses one pair. `scope: None` stands for a permission requested with an empty scope
/// list: then any policy for the resource counts.
pub(crate) fn assess(
    policies: &[Policy],
    resource_id: &str,
    resource: &ResourceDescription,
    scope: Option<&str>,
    requester: Option<&str>,
) -> Outcome {
    let applicable = || {
        policies
            .iter()
            .filter(move |p| p.covers(resource_id, resource, scope))
    };
    let granted = applicable().any(|p| match (&p.rule, requester) {
        (Rule::Users(users), Some(who)) => users.iter().any(|u| u == who),
        (Rule::Anyone, Some(_)) => true,
        _ => false,
    });
    if granted {
        return Outcome::Granted;
    }
    if requester.is_none() && applicable().any(|p| matches!(p.rule, Rule::Users(_) | Rule::Anyone))
    {
        return Outcome::NeedInfo;
    }
    if applicable().any(|p| p.rule == Rule::OwnerApproval) {
        return Outcome::Approval;
    }
    Outcome::Denied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn album() -> ResourceDescription {
        ResourceDescription {
            name: Some("album".into()),
            resource_scopes: vec!["view".into(), "edit".into()],
            ..ResourceDescription::default()
        }
    }

    #[test]
    fn users_policy_grants_named_users_and_needs_info_without_identity() {
        let policies = [Policy::resource("album").scopes(["view"]).users(["bob"])];
        let r = album();
        assert_eq!(
            assess(&policies, "r", &r, Some("view"), Some("bob")),
            Outcome::Granted
        );
        assert_eq!(
            assess(&policies, "r", &r, Some("view"), Some("eve")),
            Outcome::Denied
        );
        assert_eq!(
            assess(&policies, "r", &r, Some("view"), None),
            Outcome::NeedInfo
        );
        assert_eq!(
            assess(&policies, "r", &r, Some("edit"), Some("bob")),
            Outcome::Denied
        );
        assert_eq!(
            assess(&policies, "r", &r, None, Some("bob")),
            Outcome::Granted
        );
    }

    #[test]
    fn targets_by_name_or_id_and_empty_scopes_cover_all() {
        let policies = [Policy::resource_id("r9").anyone()];
        let r = album();
        assert_eq!(
            assess(&policies, "r9", &r, Some("edit"), Some("x")),
            Outcome::Granted
        );
        assert_eq!(
            assess(&policies, "r8", &r, Some("edit"), Some("x")),
            Outcome::Denied
        );
    }

    #[test]
    fn approval_comes_after_identity_based_rules() {
        let policies = [
            Policy::resource("album").users(["bob"]),
            Policy::resource("album").owner_approval(),
        ];
        let r = album();
        assert_eq!(
            assess(&policies, "r", &r, Some("view"), Some("bob")),
            Outcome::Granted
        );
        assert_eq!(
            assess(&policies, "r", &r, Some("view"), Some("eve")),
            Outcome::Approval
        );
        assert_eq!(
            assess(&policies, "r", &r, Some("view"), None),
            Outcome::NeedInfo
        );
        let only_approval = [Policy::resource("album").owner_approval()];
        assert_eq!(
            assess(&only_approval, "r", &r, Some("view"), None),
            Outcome::Approval
        );
        assert_eq!(
            assess(&[], "r", &r, Some("view"), Some("bob")),
            Outcome::Denied
        );
        // A policy without a rule grants nobody.
        let ruleless = [Policy::resource("album")];
        assert_eq!(
            assess(&ruleless, "r", &r, Some("view"), Some("bob")),
            Outcome::Denied
        );
    }
}
