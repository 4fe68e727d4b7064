//! A domain's icon looked up again on demand: what a refresh answers ([`IconRefresh`]); why
//! the lookup ran is the [`super::ChangeSource`] its outcome is observed under.

use super::{ErrorCategory, FindOutcome, ResultStatus};
use serde::Serialize;

/// What a refresh found, and what `GET /icons/{domain}` serves after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
pub struct IconRefresh {
    /// The domain, normalised.
    pub domain: String,
    /// `success` or `failed`: the outcome of this lookup.
    pub status: ResultStatus,
    /// The chosen icon's URL, on success.
    pub favicon_url: Option<String>,
    /// The chosen icon's SHA-256, when its bytes were kept.
    pub sha256: Option<String>,
    /// The chosen icon's sniffed type.
    pub mime: Option<String>,
    /// The chosen icon's real width.
    pub width: Option<i32>,
    /// The chosen icon's real height.
    pub height: Option<i32>,
    /// Why the lookup failed.
    pub error: Option<String>,
    /// The failure's category. A transient one (`timeout`, `connect`, ...) never replaces
    /// the icon served.
    pub error_code: Option<ErrorCategory>,
    /// Whether what `GET /icons/{domain}` serves changed with this lookup.
    pub changed: bool,
    /// The SHA-256 of the icon `GET /icons/{domain}` serves now; null when it serves the
    /// fallback.
    pub served: Option<String>,
}

impl IconRefresh {
    /// The answer for `domain` from a lookup's `outcome`, with what was served before and is
    /// served now.
    pub fn new(
        domain: &str,
        outcome: &FindOutcome,
        before: Option<String>,
        served: Option<String>,
    ) -> Self {
        let changed = before != served;
        let base = Self {
            domain: domain.to_owned(),
            status: ResultStatus::Failed,
            favicon_url: None,
            sha256: None,
            mime: None,
            width: None,
            height: None,
            error: None,
            error_code: None,
            changed,
            served,
        };
        match outcome {
            Ok(found) => Self {
                status: ResultStatus::Success,
                favicon_url: Some(found.favicon_url.clone()),
                sha256: found.icon.as_ref().map(|i| i.sha256.clone()),
                mime: Some(found.mime.clone()),
                width: Some(i32::try_from(found.width).unwrap_or(i32::MAX)),
                height: Some(i32::try_from(found.height).unwrap_or(i32::MAX)),
                ..base
            },
            Err(err) => Self {
                error: Some(format!("{}: {}", err.category.as_str(), err.message)),
                error_code: Some(err.category),
                ..base
            },
        }
    }
}
