//! Entry lifetimes and weights: pure functions of wall-clock seconds and the introspection
//! result, so that they can be tested without timers or a real clock.

use std::mem::size_of;
use std::time::Duration;

use crate::introspect::Introspection;

/// How long a positive (active) introspection result may be cached, or `None` when it must not
/// be cached at all (RFC 7662 §4: "if the response contains the `exp` parameter … the protected
/// resource MUST NOT cache beyond that time").
///
/// The lifetime is `min(max_ttl, exp − now − skew)`, with `skew` rounded up to whole seconds
/// (the unit of `exp`). An `exp` that is already within `skew` of `now`, or past, gives `None`;
/// so does a result without `exp` unless `allow_without_exp`, in which case it lives `max_ttl`.
/// A zero lifetime is `None`.
pub(crate) fn entry_lifetime(
    now: i64,
    exp: Option<i64>,
    max_ttl: Duration,
    skew: Duration,
    allow_without_exp: bool,
) -> Option<Duration> {
    let lifetime = match exp {
        None if allow_without_exp => max_ttl,
        None => return None,
        Some(exp) => {
            let remaining = exp.saturating_sub(now).saturating_sub(ceil_secs(skew));
            let remaining = u64::try_from(remaining).ok().filter(|&r| r > 0)?;
            max_ttl.min(Duration::from_secs(remaining))
        }
    };
    (!lifetime.is_zero()).then_some(lifetime)
}

/// Whole seconds in `d`, rounded up and saturated to `i64`.
pub(super) fn ceil_secs(d: Duration) -> i64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The bookkeeping stored with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Times {
    /// Served as a hit while the clock reads less than this (seconds since the epoch).
    pub(super) fresh_until: i64,
    /// May be served under stale-if-error while the clock reads less than this.
    pub(super) stale_until: i64,
    /// How long the entry is kept from `now`: until `stale_until` (a Redis `PX` expiry too).
    pub(super) ttl: Duration,
}

impl Times {
    /// These times, fresh until `until` at the latest (an entry of the fleet's shared level,
    /// which must not outlive the lifetime the replica that asked the AS gave it), or `None`
    /// when that leaves nothing at `now`. The stale-if-error end stays as it was.
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "used by the shared level")
    )]
    pub(super) fn capped(self, now: i64, until: i64) -> Option<Self> {
        if until >= self.fresh_until {
            return Some(self);
        }
        let fresh = u64::try_from(until.checked_sub(now)?)
            .ok()
            .filter(|&s| s > 0)?;
        let stale_until = self.stale_until.max(until);
        let grace = u64::try_from(stale_until - until).unwrap_or(0);
        Some(Self {
            fresh_until: until,
            stale_until,
            ttl: Duration::from_secs(fresh.saturating_add(grace)),
        })
    }
}

/// The cache settings the lifetime depends on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    pub(super) max_ttl: Duration,
    pub(super) skew: Duration,
    pub(super) allow_without_exp: bool,
    pub(super) negative_ttl: Duration,
    pub(super) stale_grace: Duration,
}

impl Policy {
    /// The times of a positive entry for `value` stored at `now`, or `None` when it must not be
    /// stored.
    ///
    /// `fresh_until` is `now` plus the lifetime rounded up to a second, which never passes
    /// `exp − skew` because that lifetime is a whole number of seconds. The entry then stays in
    /// the table for the stale-if-error grace as well, but never beyond `exp − skew`.
    pub(super) fn positive(&self, now: i64, value: &Introspection) -> Option<Times> {
        let lifetime = entry_lifetime(
            now,
            value.exp(),
            self.max_ttl,
            self.skew,
            self.allow_without_exp,
        )?;
        let fresh_until = now.saturating_add(ceil_secs(lifetime));
        let hard_limit = value
            .exp()
            .map_or(i64::MAX, |exp| exp.saturating_sub(ceil_secs(self.skew)));
        let stale_until = fresh_until
            .saturating_add(ceil_secs(self.stale_grace))
            .min(hard_limit)
            .max(fresh_until);
        let grace = u64::try_from(stale_until - fresh_until).unwrap_or(0);
        Some(Times {
            fresh_until,
            stale_until,
            ttl: lifetime.saturating_add(Duration::from_secs(grace)),
        })
    }

    /// The times of a negative entry stored at `now`, or `None` when negative caching is off.
    pub(super) fn negative(&self, now: i64) -> Option<Times> {
        if self.negative_ttl.is_zero() {
            return None;
        }
        let fresh_until = now.saturating_add(ceil_secs(self.negative_ttl));
        Some(Times {
            fresh_until,
            stale_until: fresh_until,
            ttl: self.negative_ttl,
        })
    }
}

/// Whether an expired positive entry may still be served under stale-if-error at `now`,
/// besides its `stale_until`: the token's `exp` has not passed, and not every permission has
/// expired (a result whose permissions all expired grants nothing, so serving it would only
/// hide the outage behind a challenge).
pub(super) fn usable_when_stale(value: &Introspection, now: i64) -> bool {
    let token_alive = value.exp().is_none_or(|exp| now < exp);
    let some_permission_alive = value.permissions().is_empty()
        || value
            .permissions()
            .iter()
            .any(|p| p.exp().is_none_or(|exp| now < exp));
    value.is_active() && token_alive && some_permission_alive
}

/// The bytes one entry of this size is counted in.
pub(super) const WEIGHT_UNIT_BYTES: usize = 512;

/// An entry's weight in "typical entries": `1 + approximate_bytes / 512`.
///
/// A result with a handful of permissions weighs 1; an AS answer with thousands of permissions
/// weighs proportionally more, so that `max_entries` bounds memory and not just the count.
pub(super) fn weight(value: &Introspection) -> u32 {
    let units = 1 + approximate_bytes(value) / WEIGHT_UNIT_BYTES;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// The heap and inline bytes an introspection result holds, ignoring allocator overhead.
/// Names shared between results (see `Introspection`) are counted in full all the same, so
/// the bound holds even when every name is distinct.
pub(super) fn approximate_bytes(value: &Introspection) -> usize {
    size_of::<Introspection>().saturating_add(value.heap_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::introspect::Permission;

    const NOW: i64 = 1_767_225_600;
    const MIN: Duration = Duration::from_secs(60);
    const SKEW: Duration = Duration::from_secs(5);

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    /// (exp, max_ttl, skew, allow_without_exp, expected lifetime)
    type Case = (Option<i64>, Duration, Duration, bool, Option<Duration>);

    #[test]
    fn lifetime_table() {
        let cases: &[Case] = &[
            // far exp: the configured maximum wins
            (Some(NOW + 3600), MIN, SKEW, false, secs(60)),
            // near exp: exp − now − skew wins
            (Some(NOW + 30), MIN, SKEW, false, secs(25)),
            (Some(NOW + 65), MIN, SKEW, false, secs(60)),
            (Some(NOW + 64), MIN, SKEW, false, secs(59)),
            // exp within the skew, at it, or past: not cached
            (Some(NOW + 6), MIN, SKEW, false, secs(1)),
            (Some(NOW + 5), MIN, SKEW, false, None),
            (Some(NOW + 2), MIN, SKEW, false, None),
            (Some(NOW), MIN, SKEW, false, None),
            (Some(NOW - 10), MIN, SKEW, false, None),
            (Some(i64::MIN), MIN, SKEW, false, None),
            // no skew: cached until exp itself
            (Some(NOW + 2), MIN, Duration::ZERO, false, secs(2)),
            (Some(NOW + 1), MIN, Duration::ZERO, false, secs(1)),
            (Some(NOW), MIN, Duration::ZERO, false, None),
            // a fractional skew rounds up (exp is in whole seconds)
            (
                Some(NOW + 6),
                MIN,
                Duration::from_millis(5_001),
                false,
                None,
            ),
            (
                Some(NOW + 7),
                MIN,
                Duration::from_millis(5_001),
                false,
                secs(1),
            ),
            // the flag does not matter when exp is present
            (Some(NOW + 30), MIN, SKEW, true, secs(25)),
            // no exp: only when allowed, then the maximum
            (None, MIN, SKEW, false, None),
            (None, MIN, SKEW, true, secs(60)),
            (
                None,
                Duration::from_millis(1500),
                SKEW,
                true,
                Some(Duration::from_millis(1500)),
            ),
            // a zero maximum turns positive caching off
            (Some(NOW + 3600), Duration::ZERO, SKEW, false, None),
            (None, Duration::ZERO, SKEW, true, None),
            // sub-second maximum is kept as is
            (
                Some(NOW + 3600),
                Duration::from_millis(250),
                SKEW,
                false,
                Some(Duration::from_millis(250)),
            ),
            // extremes saturate instead of overflowing
            (
                Some(i64::MAX),
                Duration::MAX,
                Duration::ZERO,
                false,
                secs(u64::try_from(i64::MAX - NOW).expect("positive")),
            ),
            (Some(NOW + 3600), MIN, Duration::MAX, false, None),
            (None, Duration::MAX, SKEW, true, Some(Duration::MAX)),
        ];
        for (i, &(exp, max_ttl, skew, allow, want)) in cases.iter().enumerate() {
            assert_eq!(
                entry_lifetime(NOW, exp, max_ttl, skew, allow),
                want,
                "case {i}: exp={exp:?} max={max_ttl:?} skew={skew:?} allow={allow}"
            );
        }
    }

    #[test]
    fn lifetime_never_reaches_past_exp_minus_skew() {
        for max in [0u64, 1, 2, 5, 59, 60, 61, 3600] {
            for delta in -3i64..80 {
                for skew in [0u64, 1, 5, 30] {
                    let exp = NOW + delta;
                    if let Some(l) = entry_lifetime(
                        NOW,
                        Some(exp),
                        Duration::from_secs(max),
                        Duration::from_secs(skew),
                        false,
                    ) {
                        let l = i64::try_from(l.as_secs()).expect("small");
                        assert!(
                            l >= 1 && NOW + l <= exp - i64::try_from(skew).expect("small"),
                            "max={max} delta={delta} skew={skew}"
                        );
                        assert!(l <= i64::try_from(max).expect("small"));
                    }
                }
            }
        }
    }

    fn policy(grace: u64) -> Policy {
        Policy {
            max_ttl: MIN,
            skew: SKEW,
            allow_without_exp: false,
            negative_ttl: Duration::ZERO,
            stale_grace: Duration::from_secs(grace),
        }
    }

    #[test]
    fn positive_times_without_grace() {
        let t = policy(0)
            .positive(NOW, &Introspection::active(vec![], Some(NOW + 3600)))
            .expect("cached");
        assert_eq!(
            t,
            Times {
                fresh_until: NOW + 60,
                stale_until: NOW + 60,
                ttl: MIN
            }
        );
        let t = policy(0)
            .positive(NOW, &Introspection::active(vec![], Some(NOW + 20)))
            .expect("cached");
        assert_eq!(
            t,
            Times {
                fresh_until: NOW + 15,
                stale_until: NOW + 15,
                ttl: Duration::from_secs(15)
            }
        );
        assert_eq!(
            policy(0).positive(NOW, &Introspection::active(vec![], Some(NOW + 4))),
            None
        );
        assert_eq!(
            policy(0).positive(NOW, &Introspection::active(vec![], None)),
            None
        );
    }

    #[test]
    fn positive_times_with_grace_are_capped_by_exp() {
        // grace fits before exp − skew
        let t = policy(30)
            .positive(NOW, &Introspection::active(vec![], Some(NOW + 3600)))
            .expect("cached");
        assert_eq!(
            t,
            Times {
                fresh_until: NOW + 60,
                stale_until: NOW + 90,
                ttl: Duration::from_secs(90)
            }
        );
        // grace cut at exp − skew
        let t = policy(30)
            .positive(NOW, &Introspection::active(vec![], Some(NOW + 75)))
            .expect("cached");
        assert_eq!(
            t,
            Times {
                fresh_until: NOW + 60,
                stale_until: NOW + 70,
                ttl: Duration::from_secs(70)
            }
        );
        // exp already caps the lifetime: no grace at all
        let t = policy(30)
            .positive(NOW, &Introspection::active(vec![], Some(NOW + 20)))
            .expect("cached");
        assert_eq!(
            t,
            Times {
                fresh_until: NOW + 15,
                stale_until: NOW + 15,
                ttl: Duration::from_secs(15)
            }
        );
        // without exp (allowed), the full grace
        let p = Policy {
            allow_without_exp: true,
            ..policy(30)
        };
        let t = p
            .positive(NOW, &Introspection::active(vec![], None))
            .expect("cached");
        assert_eq!(
            t,
            Times {
                fresh_until: NOW + 60,
                stale_until: NOW + 90,
                ttl: Duration::from_secs(90)
            }
        );
    }

    #[test]
    fn sub_second_ttl_rounds_fresh_until_up_but_not_past_exp() {
        let p = Policy {
            max_ttl: Duration::from_millis(500),
            ..policy(0)
        };
        let t = p
            .positive(NOW, &Introspection::active(vec![], Some(NOW + 3600)))
            .expect("cached");
        assert_eq!(
            t,
            Times {
                fresh_until: NOW + 1,
                stale_until: NOW + 1,
                ttl: Duration::from_millis(500)
            }
        );
    }

    #[test]
    fn negative_times() {
        assert_eq!(policy(0).negative(NOW), None);
        let p = Policy {
            negative_ttl: Duration::from_millis(2500),
            ..policy(30)
        };
        assert_eq!(
            p.negative(NOW),
            Some(Times {
                fresh_until: NOW + 3,
                stale_until: NOW + 3,
                ttl: Duration::from_millis(2500)
            })
        );
    }

    #[test]
    fn stale_usability() {
        let p1 = Permission::new("r1", ["read"]).with_exp(Some(NOW + 10));
        let p2 = Permission::new("r2", ["read"]).with_exp(Some(NOW + 100));
        let both = Introspection::active(vec![p1.clone(), p2], Some(NOW + 200));
        assert!(usable_when_stale(&both, NOW + 50));
        assert!(
            !usable_when_stale(&both, NOW + 150),
            "every permission expired"
        );
        assert!(!usable_when_stale(&both, NOW + 250), "token expired");
        let one = Introspection::active(vec![p1], None);
        assert!(usable_when_stale(&one, NOW));
        assert!(!usable_when_stale(&one, NOW + 10));
        let open = Introspection::active(vec![Permission::new("r", ["a"])], None);
        assert!(usable_when_stale(&open, i64::MAX));
        assert!(usable_when_stale(
            &Introspection::active(vec![], Some(NOW + 1)),
            NOW
        ));
        // A token expires at its exp (RFC 7519 §4.1.4), stale or not.
        assert!(
            !usable_when_stale(&Introspection::active(vec![], Some(NOW + 1)), NOW + 1),
            "expired at exp"
        );
        assert!(!usable_when_stale(&Introspection::inactive(), NOW));
    }

    #[test]
    fn weight_grows_with_the_permission_list() {
        let typical = Introspection::active(
            vec![
                Permission::new("r-9f1c", ["read", "write"]),
                Permission::new("r-2", ["read"]),
            ],
            Some(NOW),
        );
        assert_eq!(weight(&typical), 1, "{} bytes", approximate_bytes(&typical));
        let huge = Introspection::active(
            (0..10_000)
                .map(|i| Permission::new(format!("resource-{i:08}"), ["read", "write"]))
                .collect(),
            Some(NOW),
        );
        let bytes = approximate_bytes(&huge);
        // at least one Permission struct plus its strings per permission
        assert!(bytes > 10_000 * size_of::<Permission>(), "{bytes}");
        assert_eq!(weight(&huge) as usize, 1 + bytes / WEIGHT_UNIT_BYTES);
        assert!(weight(&huge) > 2_000);
    }
}
