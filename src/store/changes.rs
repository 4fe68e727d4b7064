//! Change detection, the one place a fetch's outcome is compared with what the service knew
//! of the domain's icon: [`observe`] keeps `icon_state` (the last decisive outcome per
//! domain), the watched domains' last check, the history in `icon_change`, and queues the
//! `icon.changed` webhook deliveries of a reported change, all in the caller's transaction.
//! It also holds the outbox's one insert ([`insert_delivery`]), which job events share.
//!
//! A leaf below [`super::write`]: `write::settle` calls it when a watch's check job ends, and
//! the icons' lookups call it from `icons`; it calls no other part of the store.

use crate::model::watch::{
    ChangeSource, FLAP_WINDOW, FOUND, GONE, IconChange, IconSnapshot, TRANSIENT, is_reported,
};
use crate::model::webhook::WebhookEvent;
use crate::model::{ErrorCategory, ResultStatus};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement};
use std::collections::BTreeMap;
use uuid::Uuid;

/// One fetch's outcome for a domain, as change detection sees it.
#[derive(Clone, Debug)]
pub(super) struct Observed {
    /// The domain.
    pub domain: String,
    /// The decisive state it shows, or `None` for a failure that may pass (which changes
    /// nothing but the watched domains' last check).
    pub snapshot: Option<IconSnapshot>,
    /// The failure's code, when it failed.
    pub error_code: Option<ErrorCategory>,
}

/// The columns of a finished result that change detection reads.
pub(super) struct Outcome<'a> {
    /// Success or failure.
    pub status: ResultStatus,
    /// A failure's category.
    pub error_code: Option<ErrorCategory>,
    /// The chosen icon's URL.
    pub url: Option<&'a str>,
    /// Its content hash, when stored.
    pub sha256: Option<&'a str>,
    /// Its media type.
    pub mime: Option<&'a str>,
    /// Its width.
    pub width: Option<i32>,
    /// Its height.
    pub height: Option<i32>,
    /// Its size, when stored.
    pub bytes: Option<i32>,
}

impl Observed {
    /// What `outcome` of `domain` at `at` says; `None` when it says nothing about the site
    /// (a cancelled or unfinished row).
    pub fn new(domain: &str, outcome: Outcome<'_>, at: DateTime<Utc>) -> Option<Self> {
        let snapshot = |status: &str| IconSnapshot {
            status: status.to_owned(),
            url: None,
            sha256: None,
            mime: None,
            width: None,
            height: None,
            bytes: None,
            error_code: None,
            at,
        };
        let snapshot = match (outcome.status, outcome.error_code) {
            (ResultStatus::Success, _) => Some(IconSnapshot {
                url: outcome.url.map(str::to_owned),
                sha256: outcome.sha256.map(str::to_owned),
                mime: outcome.mime.map(str::to_owned),
                width: outcome.width,
                height: outcome.height,
                bytes: outcome.bytes,
                ..snapshot(FOUND)
            }),
            (ResultStatus::Failed, Some(ErrorCategory::Cancelled)) => return None,
            (ResultStatus::Failed, Some(code)) if code.is_cacheable() => Some(IconSnapshot {
                error_code: Some(code.as_str().to_owned()),
                ..snapshot(GONE)
            }),
            (ResultStatus::Failed, _) => None,
            _ => return None,
        };
        Some(Self {
            domain: domain.to_owned(),
            snapshot,
            error_code: outcome.error_code,
        })
    }
}

/// The icon state's columns, for one side of a change (`before_`, `after_`) or the state
/// itself (no prefix).
const SNAPSHOT_COLUMNS: [&str; 9] = [
    "status",
    "url",
    "sha256",
    "mime",
    "width",
    "height",
    "bytes",
    "error_code",
    "at",
];

/// Records what `observed` (outcomes seen at `now` by `source`) says about each domain, in
/// the caller's transaction: every watched row of the domain gets its last check; a decisive
/// outcome becomes the domain's state, and one that differs from the state before is a
/// change, kept in the history and, unless the flapping rule holds it back
/// ([`is_reported`]), queued as `icon.changed` for every endpoint of every client watching
/// the domain. The first decisive outcome of a domain only sets its state. Answers the
/// changes, reported or not.
pub(super) async fn observe(
    db: &impl ConnectionTrait,
    mut observed: Vec<Observed>,
    source: ChangeSource,
    now: DateTime<Utc>,
) -> Result<Vec<IconChange>, DbErr> {
    // In domain order, so two transactions lock their states in the same order.
    observed.sort_by(|a, b| a.domain.cmp(&b.domain));
    let backend = db.get_database_backend();
    let mut changes = Vec::new();
    for seen in observed {
        let last_status = seen
            .snapshot
            .as_ref()
            .map_or(TRANSIENT, |s| s.status.as_str());
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE watch_domain SET last_checked_at = $2, last_status = $3, \
               last_error_code = $4 WHERE domain = $1",
            [
                seen.domain.clone().into(),
                now.into(),
                last_status.into(),
                seen.error_code.map(|c| c.as_str()).into(),
            ],
        ))
        .await?;
        let Some(after) = seen.snapshot else {
            continue;
        };
        let lock = if backend == DbBackend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let state = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT status, url, sha256, mime, width, height, bytes, error_code, \
                       checked_at AS at, changed_at FROM icon_state WHERE domain = $1{lock}"
                ),
                [seen.domain.clone().into()],
            ))
            .await?;
        let before = state
            .map(|row| Ok::<_, DbErr>((snapshot(&row, "")?, row.try_get("", "changed_at")?)))
            .transpose()?;
        let changed = before.as_ref().is_some_and(|(b, _)| !b.same_icon(&after));
        let changed_at = match &before {
            Some((_, since)) if !changed => *since,
            _ => now,
        };
        write_state(db, &seen.domain, &after, changed_at).await?;
        let Some((before, _)) = before.filter(|_| changed) else {
            continue;
        };
        let change = record_change(db, &seen.domain, before, after, source, now).await?;
        if change.reported {
            enqueue_icon_changed(db, &change, now).await?;
        }
        changes.push(change);
    }
    Ok(changes)
}

/// Makes `state` the domain's icon state, last seen at its `at`, in it since `changed_at`.
async fn write_state(
    db: &impl ConnectionTrait,
    domain: &str,
    state: &IconSnapshot,
    changed_at: DateTime<Utc>,
) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO icon_state (domain, status, url, sha256, mime, width, height, bytes, \
           error_code, checked_at, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (domain) DO UPDATE SET status = excluded.status, url = excluded.url, \
           sha256 = excluded.sha256, mime = excluded.mime, width = excluded.width, \
           height = excluded.height, bytes = excluded.bytes, error_code = excluded.error_code, \
           checked_at = excluded.checked_at, changed_at = excluded.changed_at",
        [
            domain.into(),
            state.status.clone().into(),
            state.url.clone().into(),
            state.sha256.clone().into(),
            state.mime.clone().into(),
            state.width.into(),
            state.height.into(),
            state.bytes.into(),
            state.error_code.clone().into(),
            state.at.into(),
            changed_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Keeps the change `before` → `after` of `domain` in the history, reported unless the
/// domain was in the `after` state within the last [`FLAP_WINDOW`].
async fn record_change(
    db: &impl ConnectionTrait,
    domain: &str,
    before: IconSnapshot,
    after: IconSnapshot,
    source: ChangeSource,
    now: DateTime<Utc>,
) -> Result<IconChange, DbErr> {
    let backend = db.get_database_backend();
    let before_columns = prefixed("before_");
    let recent = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT {before_columns} FROM icon_change \
                 WHERE domain = $1 AND detected_at >= $2"
            ),
            [domain.into(), (now - FLAP_WINDOW).into()],
        ))
        .await?
        .iter()
        .map(|row| snapshot(row, "before_"))
        .collect::<Result<Vec<_>, _>>()?;
    let reported = is_reported(&after, &recent);
    let id = Uuid::now_v7();
    let mut values: Vec<sea_orm::Value> = vec![id.into(), domain.into()];
    for side in [&before, &after] {
        values.extend([
            side.status.clone().into(),
            side.url.clone().into(),
            side.sha256.clone().into(),
            side.mime.clone().into(),
            side.width.into(),
            side.height.into(),
            side.bytes.into(),
            side.error_code.clone().into(),
            side.at.into(),
        ]);
    }
    values.extend([now.into(), source.as_str().into(), reported.into()]);
    let placeholders: Vec<String> = (1..=values.len()).map(|n| format!("${n}")).collect();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        format!(
            "INSERT INTO icon_change (id, domain, {before_columns}, {}, detected_at, source, \
               reported) VALUES ({})",
            prefixed("after_"),
            placeholders.join(", ")
        ),
        values,
    ))
    .await?;
    Ok(IconChange {
        id: id.to_string().into(),
        domain: domain.to_owned(),
        before,
        after,
        detected_at: now,
        source: source.as_str().to_owned(),
        reported,
    })
}

/// The snapshot columns with `prefix`, comma-separated.
pub(super) fn prefixed(prefix: &str) -> String {
    SNAPSHOT_COLUMNS
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The snapshot in `row`'s columns named with `prefix`.
pub(super) fn snapshot(row: &QueryResult, prefix: &str) -> Result<IconSnapshot, DbErr> {
    let col = |c: &str| format!("{prefix}{c}");
    Ok(IconSnapshot {
        status: row.try_get("", &col("status"))?,
        url: row.try_get("", &col("url"))?,
        sha256: row.try_get("", &col("sha256"))?,
        mime: row.try_get("", &col("mime"))?,
        width: row.try_get("", &col("width"))?,
        height: row.try_get("", &col("height"))?,
        bytes: row.try_get("", &col("bytes"))?,
        error_code: row.try_get("", &col("error_code"))?,
        at: row.try_get("", &col("at"))?,
    })
}

/// Queues `icon.changed` for `change` to every enabled endpoint that takes it of every client
/// with a watch of the domain: one event (one `webhook-id`) per client, whose data names that
/// client's watches of the domain.
async fn enqueue_icon_changed(
    db: &impl ConnectionTrait,
    change: &IconChange,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let event = WebhookEvent::IconChanged;
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT w.client_id, w.id AS watch_id, e.id AS endpoint_id FROM watch_domain wd \
             JOIN watch w ON w.id = wd.watch_id AND w.deleted_at IS NULL \
             JOIN webhook_endpoint e ON e.client_id = w.client_id \
               AND e.deleted_at IS NULL AND e.disabled_at IS NULL \
               AND (',' || e.events || ',') LIKE $2 \
             WHERE wd.domain = $1",
            [
                change.domain.clone().into(),
                format!("%,{},%", event.as_str()).into(),
            ],
        ))
        .await?;
    // Per client: its watches of the domain, and its endpoints.
    let mut clients: BTreeMap<Uuid, (Vec<String>, Vec<Uuid>)> = BTreeMap::new();
    for row in rows {
        let entry = clients.entry(row.try_get("", "client_id")?).or_default();
        let watch = row.try_get::<Uuid>("", "watch_id")?.to_string();
        let endpoint = row.try_get::<Uuid>("", "endpoint_id")?;
        if !entry.0.contains(&watch) {
            entry.0.push(watch);
        }
        if !entry.1.contains(&endpoint) {
            entry.1.push(endpoint);
        }
    }
    for (mut watch_ids, endpoints) in clients.into_values() {
        watch_ids.sort();
        let payload = serde_json::json!({
            "watch_ids": watch_ids,
            "domain": change.domain,
            "before": change.before,
            "after": change.after,
            "detected_at": change.detected_at,
            "source": change.source,
            "change_id": change.id,
        })
        .to_string();
        let event_id = Uuid::now_v7();
        for endpoint in endpoints {
            insert_delivery(
                db,
                Uuid::now_v7(),
                endpoint,
                event_id,
                event,
                None,
                Some(&payload),
                now,
            )
            .await?;
        }
    }
    Ok(())
}

/// Writes one delivery of event `event_id` to endpoint `endpoint_id`, due at `now`; `payload`
/// is its `data` when already made (otherwise its first attempt makes it from the job).
#[expect(clippy::too_many_arguments, reason = "one column each")]
pub(super) async fn insert_delivery(
    db: &impl ConnectionTrait,
    id: Uuid,
    endpoint_id: Uuid,
    event_id: Uuid,
    event: WebhookEvent,
    job_id: Option<Uuid>,
    payload: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO webhook_delivery (id, endpoint_id, event_id, event_type, job_id, event_at, \
           payload, status, attempts, run_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $6, $6)",
        [
            id.into(),
            endpoint_id.into(),
            event_id.into(),
            event.as_str().into(),
            job_id.into(),
            now.into(),
            payload.map(str::to_owned).into(),
        ],
    ))
    .await?;
    Ok(())
}
