//! The one view of a result: what REST answers, GraphQL resolves, the CSV holds and progress
//! events carry.
//!
//! [`ResultColumns`] is the flat part: every view shows all of it, under the same names
//! (camelCase in GraphQL). [`ResultView`] adds the candidate list, which only the APIs that
//! can nest show (REST and GraphQL pages); the CSV and events leave it out, since it is the
//! bulk of a row and the export reads no more than it writes.
//!
//! A new column is one field of [`ResultColumns`] here (with its line in
//! [`ResultColumns::NAMES`] and [`ResultColumns::csv_record`], which a test keeps in step
//! with the struct): serde gives it to REST and events, async-graphql to GraphQL.

use super::{Candidate, ErrorCategory, ResultStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// One domain's outcome as every view shows it, column by column (in CSV order).
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Serialize,
    Deserialize,
    async_graphql::SimpleObject,
    sea_orm::FromQueryResult,
    utoipa::ToSchema,
)]
#[graphql(name = "ProgressResult")]
// An event from a process of an older version may lack a column; it reads as the default.
#[serde(default)]
pub struct ResultColumns {
    /// The normalised domain.
    pub domain: String,
    /// `PENDING`, `SUCCESS` or `FAILED`.
    pub status: ResultStatus,
    /// The chosen icon, on success.
    pub favicon_url: Option<String>,
    /// Category and human message, on failure.
    pub error: Option<String>,
    /// Tries so far.
    pub tries: i32,
    /// The failure category code (`dns`, `timeout`, `no_icon`, ...).
    pub error_code: Option<ErrorCategory>,
    /// The home page after redirects.
    pub final_url: Option<String>,
    /// Sniffed mime of the chosen icon.
    pub mime: Option<String>,
    /// Real width of the chosen icon.
    pub width: Option<i32>,
    /// Real height of the chosen icon.
    pub height: Option<i32>,
    /// When the stored outcome was fetched (for a cached one, by the earlier job).
    pub fetched_at: Option<DateTime<Utc>>,
    /// Copied from an earlier job's result instead of fetched.
    pub cached: bool,
    /// This service's URL of the stored icon (`/icons/{domain}`, absolute under `PUBLIC_URL`),
    /// when its bytes are stored. GraphQL shows it as `icon.url`.
    #[graphql(skip)]
    pub icon_url: Option<String>,
    /// The stored icon, when its bytes are kept (null otherwise). REST and the CSV show its
    /// URL as `icon_url`.
    #[serde(skip)]
    #[sea_orm(skip)]
    pub icon: Option<IconView>,
    /// The domain's place in its job's order of finishing (1-based), once finished: what a
    /// progress event's cursor is made of. Events carry it between processes; no view shows
    /// it as a column.
    #[serde(skip)]
    #[sea_orm(skip)]
    #[graphql(skip)]
    pub seq: Option<i32>,
}

/// A stored icon as GraphQL's `Result.icon` (and `ProgressResult.icon`) shows it.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, async_graphql::SimpleObject,
)]
#[graphql(name = "Icon")]
pub struct IconView {
    /// This service's URL of the icon: `/icons/{domain}`, absolute under `PUBLIC_URL`.
    pub url: String,
    /// Lowercase hex SHA-256 of the bytes: the content address, and the served `ETag`.
    pub sha256: String,
    /// The mime type sniffing confirmed.
    pub mime: String,
    /// Width in pixels (0 for an SVG without an intrinsic size).
    pub width: i32,
    /// Height in pixels.
    pub height: i32,
    /// Size of the stored bytes.
    pub bytes: i32,
}

/// The wire form of `ProgressEvent::finished`: each row with its icon whole, since REST's
/// serde form of a row shows only the icon's URL and a subscriber's GraphQL `icon` needs all
/// of it.
pub(super) mod wire {
    use super::{IconView, ResultColumns};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Row<C, I> {
        #[serde(flatten)]
        columns: C,
        #[serde(default)]
        icon: I,
        #[serde(default)]
        seq: Option<i32>,
    }

    pub fn serialize<S: Serializer>(rows: &[ResultColumns], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(rows.iter().map(|c| Row {
            columns: c,
            icon: &c.icon,
            seq: c.seq,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ResultColumns>, D::Error> {
        let rows = Vec::<Row<ResultColumns, Option<IconView>>>::deserialize(d)?;
        Ok(rows
            .into_iter()
            .map(|row| ResultColumns {
                icon: row.icon,
                seq: row.seq,
                ..row.columns
            })
            .collect())
    }
}

/// Where a domain's icon is served: every path under it names a domain.
pub const ICONS_PREFIX: &str = "/icons/";

/// The path of a domain's icon on this service, before `PUBLIC_URL`; with `{domain}` for the
/// domain, the route the router and the OpenAPI document spell.
pub fn icon_path(domain: &str) -> String {
    format!("{ICONS_PREFIX}{domain}")
}

impl ResultColumns {
    /// Makes the icon's URL absolute under `public_url` (a URL without a trailing slash);
    /// without one it stays a path, as download links do.
    pub fn link_icon(&mut self, public_url: Option<&str>) {
        let Some(base) = public_url else {
            return;
        };
        let absolute = |url: &mut String| {
            if url.starts_with('/') {
                url.insert_str(0, base);
            }
        };
        if let Some(url) = &mut self.icon_url {
            absolute(url);
        }
        if let Some(icon) = &mut self.icon {
            absolute(&mut icon.url);
        }
    }
}

impl ResultColumns {
    /// The columns' names, in order: the CSV header, the database columns the export reads
    /// (`icon_url` is made from `icon_sha256` and the domain), and the REST field names.
    pub const NAMES: [&'static str; 13] = [
        "domain",
        "status",
        "favicon_url",
        "error",
        "tries",
        "error_code",
        "final_url",
        "mime",
        "width",
        "height",
        "fetched_at",
        "cached",
        "icon_url",
    ];

    /// The row as CSV cells, in [`Self::NAMES`] order: absent values empty, times in RFC 3339.
    pub fn csv_record(&self) -> [Cow<'_, str>; Self::NAMES.len()] {
        fn text(v: &Option<String>) -> Cow<'_, str> {
            Cow::Borrowed(v.as_deref().unwrap_or(""))
        }
        let number = |v: Option<i32>| Cow::Owned(v.map(|n| n.to_string()).unwrap_or_default());
        [
            Cow::Borrowed(self.domain.as_str()),
            Cow::Borrowed(self.status.as_str()),
            text(&self.favicon_url),
            text(&self.error),
            Cow::Owned(self.tries.to_string()),
            Cow::Borrowed(self.error_code.map_or("", ErrorCategory::as_str)),
            text(&self.final_url),
            text(&self.mime),
            number(self.width),
            number(self.height),
            Cow::Owned(self.fetched_at.map(|t| t.to_rfc3339()).unwrap_or_default()),
            Cow::Borrowed(if self.cached { "true" } else { "false" }),
            text(&self.icon_url),
        ]
    }
}

/// One domain's result as the REST and GraphQL pages show it: every column, then what the
/// finder considered.
#[derive(
    Clone, Debug, Default, PartialEq, Serialize, async_graphql::SimpleObject, utoipa::ToSchema,
)]
#[graphql(name = "Result")]
pub struct ResultView {
    /// The columns every view shows.
    #[serde(flatten)]
    #[graphql(flatten)]
    pub columns: ResultColumns,
    /// Every candidate found, in rank order (at most a fixed number; see `candidatesDropped`).
    pub candidates: Vec<Candidate>,
    /// How many more candidates the page declared than `candidates` holds.
    pub candidates_dropped: i32,
}

/// A view reads as its columns (`view.domain`), since it is them plus the candidates.
impl std::ops::Deref for ResultView {
    type Target = ResultColumns;

    fn deref(&self) -> &ResultColumns {
        &self.columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names, the CSV cells and the struct's serde fields are one list, in one order:
    /// each cell holds the value serde gives the field of that name.
    #[test]
    fn names_csv_and_fields_agree() {
        let row = ResultColumns {
            domain: "a.test".into(),
            status: ResultStatus::Failed,
            favicon_url: Some("https://a.test/i.png".into()),
            error: Some("no_icon: none".into()),
            tries: 3,
            error_code: Some(ErrorCategory::NoIcon),
            final_url: Some("https://a.test/".into()),
            mime: Some("image/png".into()),
            width: Some(16),
            height: Some(32),
            fetched_at: Some(Utc::now()),
            cached: true,
            icon_url: Some("/icons/a.test".into()),
            icon: None,
            seq: Some(7),
        };
        let json = serde_json::to_value(&row).unwrap();
        let object = json.as_object().unwrap();
        assert_eq!(object.len(), ResultColumns::NAMES.len(), "{json}");
        for (name, cell) in ResultColumns::NAMES.iter().zip(row.csv_record()) {
            let value = &object[*name];
            match value {
                serde_json::Value::String(s) if *name == "fetched_at" => assert_eq!(
                    DateTime::parse_from_rfc3339(s).unwrap(),
                    DateTime::parse_from_rfc3339(&cell).unwrap()
                ),
                serde_json::Value::String(s) => assert_eq!(s, &cell, "{name}"),
                other => assert_eq!(other.to_string(), cell, "{name}"),
            }
        }
    }

    /// REST shows the icon as its URL only; a progress event carries it whole across
    /// processes, so a subscriber's GraphQL `icon` has every field.
    #[test]
    fn events_carry_the_whole_icon() {
        let icon = IconView {
            url: "/icons/a.test".into(),
            sha256: "ab".repeat(32),
            mime: "image/png".into(),
            width: 16,
            height: 16,
            bytes: 99,
        };
        let row = ResultColumns {
            icon_url: Some(icon.url.clone()),
            icon: Some(icon),
            seq: Some(3),
            ..ResultColumns::default()
        };
        let rest = serde_json::to_value(&row).unwrap();
        assert_eq!(rest["icon_url"], "/icons/a.test");
        assert!(rest.get("icon").is_none(), "{rest}");
        let event = crate::model::ProgressEvent {
            job_id: uuid::Uuid::nil(),
            status: crate::model::JobStatus::Completed,
            total: 1,
            completed: 1,
            failed: 0,
            progress: 100,
            finished: vec![row],
            cursor: 3,
        };
        let wire = serde_json::to_string(&event).unwrap();
        let back: crate::model::ProgressEvent = serde_json::from_str(&wire).unwrap();
        assert_eq!(back, event);
    }

    /// The view is the columns plus the candidates, flat in JSON.
    #[test]
    fn the_view_flattens_its_columns() {
        let json = serde_json::to_value(ResultView::default()).unwrap();
        let object = json.as_object().unwrap();
        assert_eq!(object.len(), ResultColumns::NAMES.len() + 2);
        assert_eq!(object["candidates"], serde_json::json!([]));
        for name in ResultColumns::NAMES {
            assert!(object.contains_key(name), "{name}");
        }
    }
}
