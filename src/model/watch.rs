//! Watches' vocabulary: what the service knows decisively about a domain's icon (an
//! [`IconSnapshot`]), a change of it ([`IconChange`]) and where it was seen
//! ([`ChangeSource`]), a watch and its domains as every API shows them, and the rules of the
//! schedule (the spread of first checks, the next slot) and of flapping, as pure functions.

use async_graphql::{ID, SimpleObject};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// How far back a change's `after` is compared with the domain's earlier states: a change
/// back to any state the domain had within this window is recorded but not reported.
pub const FLAP_WINDOW: Duration = Duration::hours(24);

/// What looked at a domain when its icon was seen to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeSource {
    /// A watch's scheduled re-check.
    Watch,
    /// An on-demand lookup (`GET /icons/{domain}?find=1`).
    Find,
    /// A refresh asked for by a client.
    Refresh,
    /// The background re-find of a stale icon.
    Stale,
}

impl ChangeSource {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Watch => "watch",
            Self::Find => "find",
            Self::Refresh => "refresh",
            Self::Stale => "stale",
        }
    }
}

/// A domain's icon as last known decisively: `found` (the chosen icon) or `gone` (a
/// permanent failure, with its code). `at` is when it was last seen so.
#[derive(Clone, Debug, PartialEq, Serialize, SimpleObject, utoipa::ToSchema)]
pub struct IconSnapshot {
    /// `found` or `gone`.
    #[schema(example = "found")]
    pub status: String,
    /// The chosen icon's own URL (found).
    pub url: Option<String>,
    /// The icon's content hash (found, when the service stores icons).
    pub sha256: Option<String>,
    /// Its media type.
    pub mime: Option<String>,
    /// Its width in pixels.
    pub width: Option<i32>,
    /// Its height in pixels.
    pub height: Option<i32>,
    /// Its size in bytes, when stored.
    pub bytes: Option<i32>,
    /// Why it is gone (a result's `error_code`, e.g. `dns`, `no_icon`).
    pub error_code: Option<String>,
    /// When it was last seen so.
    pub at: DateTime<Utc>,
}

/// `status` of a snapshot with an icon.
pub const FOUND: &str = "found";
/// `status` of a snapshot of a permanent failure.
pub const GONE: &str = "gone";
/// A watched domain's `last_status` after a check that said nothing decisive.
pub const TRANSIENT: &str = "transient";

impl IconSnapshot {
    /// Whether `other` shows the same icon: both gone, or both found with the same content
    /// hash (by URL when either has no hash, as with `ICON_STORE=off`). A different failure
    /// code of a gone domain is no change: it is gone either way.
    pub fn same_icon(&self, other: &IconSnapshot) -> bool {
        match (self.status.as_str(), other.status.as_str()) {
            (GONE, GONE) => true,
            (FOUND, FOUND) => match (&self.sha256, &other.sha256) {
                (Some(a), Some(b)) => a == b,
                _ => self.url == other.url,
            },
            _ => false,
        }
    }
}

/// The flapping rule: a change to `after` is reported only when `after` differs from every
/// state the domain was in during the last [`FLAP_WINDOW`], i.e. from the `before` of each of
/// its changes in that window (`recent_befores`). A → B → A → B within a day reports A → B
/// once; the rest is history with `reported = false`.
pub fn is_reported(after: &IconSnapshot, recent_befores: &[IconSnapshot]) -> bool {
    !recent_befores.iter().any(|before| before.same_icon(after))
}

/// When domain `i` of `n` in a watch created at `created` is first due: spread evenly over
/// one period (`created + every × i / n`, domain 0 at once), so a large watch is checked a
/// few domains a second rather than all at once.
pub fn first_due(created: DateTime<Utc>, every_secs: i64, i: usize, n: usize) -> DateTime<Utc> {
    let offset_ms = (every_secs as i128 * 1000 * i as i128) / (n.max(1) as i128);
    created + Duration::milliseconds(offset_ms as i64)
}

/// The next slot of a domain due at `due`, checked at `now`: one period later, keeping the
/// phase; if the schedule fell behind by more than a period, the first slot after `now`
/// (missed slots are skipped, not caught up in a burst).
pub fn next_due(due: DateTime<Utc>, every_secs: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    let every_ms = (every_secs * 1000).max(1);
    let behind_ms = (now - due).num_milliseconds().max(0);
    let periods = behind_ms / every_ms + 1;
    due + Duration::milliseconds(periods * every_ms)
}

/// A watch as every API shows it (without its domains and changes, which are paged).
// GraphQL flattens these fields into its `Watch`, which adds the paged lists.
#[derive(Clone, Debug, Serialize, SimpleObject, utoipa::ToSchema)]
#[graphql(name = "WatchFields")]
pub struct Watch {
    /// Its id.
    #[schema(value_type = String)]
    pub id: ID,
    /// The owner's name for it.
    pub name: Option<String>,
    /// Seconds between two checks of each domain.
    pub every: i32,
    /// How many domains it watches.
    pub domain_count: i32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The client it belongs to.
    pub client_id: String,
    /// Changes recorded for its domains (reported or not).
    pub change_count: i32,
    /// When the newest of them was detected.
    pub last_change_at: Option<DateTime<Utc>>,
}

/// One watched domain: its last check and the icon it has now.
#[derive(Clone, Debug, Serialize, SimpleObject, utoipa::ToSchema)]
pub struct WatchedDomain {
    /// The domain.
    pub domain: String,
    /// When it was last checked (by this watch or any other look at it).
    pub last_checked_at: Option<DateTime<Utc>>,
    /// `found`, `gone` or `transient` (a failure that may pass: the icon is kept); null
    /// before the first check.
    pub last_status: Option<String>,
    /// The last check's error code, when it failed.
    pub last_error: Option<String>,
    /// When it is next due.
    pub next_check_at: DateTime<Utc>,
    /// What the service knows of its icon now (null before the first decisive check).
    pub current: Option<IconSnapshot>,
}

/// A change of a domain's icon: what it was, what it became.
#[derive(Clone, Debug, Serialize, SimpleObject, utoipa::ToSchema)]
pub struct IconChange {
    /// Its id (the `change_id` of its `icon.changed` event).
    #[schema(value_type = String)]
    pub id: ID,
    /// The domain.
    pub domain: String,
    /// The icon before.
    pub before: IconSnapshot,
    /// The icon after.
    pub after: IconSnapshot,
    /// When it was seen.
    pub detected_at: DateTime<Utc>,
    /// What looked: `watch`, `find`, `refresh` or `stale`.
    pub source: String,
    /// Whether it was sent as `icon.changed`; false for a flapping site's return to a state
    /// it had within the last 24 hours.
    pub reported: bool,
}

/// A page of a watch's domains, in the order they were given.
#[derive(Clone, Debug, Serialize, SimpleObject, utoipa::ToSchema)]
pub struct WatchedDomainPage {
    /// The domains on this page.
    pub items: Vec<WatchedDomain>,
    /// How many the watch has.
    pub total: i32,
    /// This page's number, from 1.
    pub page: i32,
    /// Its size.
    pub per_page: i32,
}

/// A page of a watch's changes, newest first.
#[derive(Clone, Debug, Serialize, SimpleObject, utoipa::ToSchema)]
pub struct IconChangePage {
    /// The changes on this page.
    pub items: Vec<IconChange>,
    /// How many there are.
    pub total: i32,
    /// This page's number, from 1.
    pub page: i32,
    /// Its size.
    pub per_page: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(sha: Option<&str>, url: &str) -> IconSnapshot {
        IconSnapshot {
            status: FOUND.into(),
            url: Some(url.into()),
            sha256: sha.map(Into::into),
            mime: None,
            width: None,
            height: None,
            bytes: None,
            error_code: None,
            at: Utc::now(),
        }
    }

    fn gone(code: &str) -> IconSnapshot {
        IconSnapshot {
            status: GONE.into(),
            url: None,
            sha256: None,
            error_code: Some(code.into()),
            ..found(None, "")
        }
    }

    #[test]
    fn icons_compare_by_hash_then_by_url() {
        assert!(found(Some("a"), "u").same_icon(&found(Some("a"), "v")));
        assert!(!found(Some("a"), "u").same_icon(&found(Some("b"), "u")));
        assert!(found(None, "u").same_icon(&found(Some("b"), "u")));
        assert!(!found(None, "u").same_icon(&found(None, "v")));
        assert!(gone("dns").same_icon(&gone("no_icon")));
        assert!(!gone("dns").same_icon(&found(None, "u")));
    }

    #[test]
    fn a_return_to_a_recent_state_is_not_reported() {
        let (a, b) = (found(Some("a"), "u"), found(Some("b"), "u"));
        assert!(is_reported(&b, &[]));
        // A → B, then B → A: A was the state before the first change.
        assert!(!is_reported(&a, std::slice::from_ref(&a)));
        // A → B → A, then A → B: B was the state before the second change.
        assert!(!is_reported(&b, &[a.clone(), b.clone()]));
        assert!(is_reported(&gone("dns"), &[a, b]));
    }

    #[test]
    fn first_checks_spread_over_one_period() {
        let t = Utc::now();
        assert_eq!(first_due(t, 3600, 0, 100_000), t);
        assert_eq!(
            first_due(t, 3600, 50_000, 100_000),
            t + Duration::minutes(30)
        );
        assert!(first_due(t, 3600, 99_999, 100_000) < t + Duration::hours(1));
    }

    #[test]
    fn the_next_slot_keeps_the_phase_and_skips_missed_ones() {
        let t = Utc::now();
        let s = Duration::seconds;
        assert_eq!(next_due(t, 60, t), t + s(60));
        assert_eq!(next_due(t, 60, t + s(10)), t + s(60));
        assert_eq!(next_due(t, 60, t + s(185)), t + s(240));
    }
}
