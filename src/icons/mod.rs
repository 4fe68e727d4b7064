//! Serving the icons themselves (`GET /icons/{domain}`): the rules behind the adapter in
//! `api/icons.rs`.
//!
//! - **Stored icons.** The newest stored icon of a domain, by its content address (the
//!   ETag), so a revalidation answers 304 without reading the bytes.
//! - **Resizing** (`render`): an N×N PNG from any format the finder accepts, on a blocking
//!   thread under a deadline and a cap on renders at once; results are kept in a cache bounded
//!   by bytes, keyed by (content, size), so a popular icon is resized once. An SVG is measured
//!   before it is drawn (`measure`) and refused when drawing it would be more work than an
//!   icon needs; the drawing checks the deadline between shapes and stops there, and the
//!   render's slot is given back only when its thread is done, so a render that overran
//!   cannot keep using CPU behind a freed slot. Failures are remembered per (content, size)
//!   for [`FAILURE_TTL`], and each caller's render time is budgeted (`budget`,
//!   `ICON_RENDER_MS_PER_MINUTE`; 429 over it).
//! - **Fallback** (`letter`): a monogram, or a 404, when there is no stored icon.
//! - **On-demand lookup** (`?find=1`): runs the finder for a domain the cache would not
//!   answer, single-flight (concurrent requests for one domain share one lookup), waits up to
//!   `ICON_FIND_TIMEOUT_MS`, and records the outcome as a finished job so the next job finds
//!   it in the cache. The lookup goes on after a timeout; only the wait ends.
//! - **Refresh** (`POST /icons/{domain}/refresh`, `lookup`): the finder now, whatever the
//!   cache holds, in the same single flight as `?find=1`, limited per caller
//!   (`ICON_REFRESH_PER_MINUTE`).
//! - **Stale-while-revalidate** (`lookup`): what is served is the newest *decisive* fetch (a
//!   success with a kept icon, or a permanent failure), so a transient failure never replaces
//!   a good icon; one older than `ICON_REFRESH_AFTER_SECS` is served at once and one re-find
//!   starts in the background, remembered for [`REVALIDATE_MEMO`] so a site that keeps failing
//!   transiently is not looked up by every request.
//! - **Variants**: `?theme=dark` serves the dark-scheme icon the site declares (else the
//!   default one, marked as a fallback); `?sha=` one exact stored version of the domain's
//!   icon, which never changes and is cached as immutable.

pub mod budget;
pub mod letter;
mod lookup;
pub mod measure;
pub mod render;
mod request;

use request::etag_matches;
pub use request::{Fallback, IconRequest, Theme, parse_request};

use crate::auth::{Caller, Scope};
use crate::domain::Domain;
use crate::error::{AppError, AppResult, Code};
use crate::finder::Finder;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::model::FindOutcome;
use crate::store::Store;
use budget::Budgets;
use bytes::Bytes;
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

/// The client an on-demand lookup without an API key (`AUTH_MODE=off`) is recorded for: such
/// callers share it, and each is also counted by its address, as for a job without a key.
pub const ON_DEMAND_CLIENT: &str = "icons";
/// How long one resize may take before the answer is a 422.
const RENDER_TIMEOUT: Duration = Duration::from_secs(2);
/// Renders running at once; more wait, so hostile icons cannot take every blocking thread.
const RENDERS_AT_ONCE: usize = 4;
/// How long a failed resize is remembered and answered without rendering again: the same
/// bytes at the same size fail the same way (a deadline missed under load is retried after).
pub const FAILURE_TTL: Duration = Duration::from_secs(600);
/// Failed resizes remembered at most (each a key and a message).
const FAILURES_KEPT: u64 = 10_000;
/// How long a background re-find of a stale icon is not started again for the same domain
/// (and reader): a site that fails transiently keeps its old icon, and is not looked up by
/// every request for it meanwhile.
pub const REVALIDATE_MEMO: Duration = Duration::from_secs(300);
/// Domains whose re-find is remembered at most.
const REVALIDATIONS_KEPT: u64 = 100_000;

/// The settings the icon rules need, from the configuration.
#[derive(Clone, Debug)]
pub struct IconSettings {
    /// `ICON_CACHE_CONTROL`, for stored and resized icons.
    pub cache_control: String,
    /// `ICON_FIND_TIMEOUT_MS`.
    pub find_timeout: Duration,
    /// `ICONS_PUBLIC`.
    pub public: bool,
    /// `ICON_RESIZE_CACHE_BYTES`.
    pub resize_cache_bytes: u64,
    /// `ICON_RENDER_MS_PER_MINUTE`: render time each caller may use per minute.
    pub render_per_minute: Duration,
    /// `ICON_REFRESH_AFTER_SECS`: the age of a served fetch past which a request for it also
    /// starts a background re-find.
    pub refresh_after: Duration,
    /// `ICON_REFRESH_PER_MINUTE`: refreshes each caller may ask for per minute.
    pub refresh_per_minute: u32,
}

impl IconSettings {
    /// The `Cache-Control` of a stored icon answered as `variant`: an exact version is
    /// immutable; the current icon gets `ICON_CACHE_CONTROL` with `stale-while-revalidate`
    /// for `ICON_REFRESH_AFTER_SECS` (caches may serve it while they ask again, as this
    /// service does with an old icon), unless the setting names one itself.
    pub fn cache_control_for(&self, variant: Variant) -> String {
        if variant.immutable {
            let scope = if self.public { "public" } else { "private" };
            return format!("{scope}, max-age=31536000, immutable");
        }
        if self.cache_control.contains("stale-while-revalidate") {
            return self.cache_control.clone();
        }
        format!(
            "{}, stale-while-revalidate={}",
            self.cache_control,
            self.refresh_after.as_secs()
        )
    }
}

/// How an image answer may be cached, and which variant it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Variant {
    /// An exact version (`?sha=`): its bytes never change.
    pub immutable: bool,
    /// `?theme=dark` asked for a variant the site does not have: this is the default icon.
    pub theme_fallback: bool,
}

/// The answer, for the adapter to map to HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IconAnswer {
    /// Image bytes to send.
    Image {
        /// The mime type sniffing confirmed (or `image/png` for a resize).
        mime: String,
        /// The strong validator: the content address, with the size for a resize.
        etag: String,
        /// The body.
        bytes: Bytes,
        /// Its caching and variant.
        variant: Variant,
    },
    /// The client's copy is current.
    NotModified {
        /// The validator it matched.
        etag: String,
        /// Its caching and variant.
        variant: Variant,
    },
    /// No stored icon: the monogram.
    Letter {
        /// The SVG document.
        svg: String,
    },
    /// No stored icon and `fallback=404`.
    Missing {
        /// Why, for the error message.
        message: String,
    },
}

/// One lookup in flight, shared by every request that waits for it: the outcome it recorded
/// (none when it could not be recorded).
type Flight = Shared<BoxFuture<'static, Option<Arc<FindOutcome>>>>;

/// The icons core: a cheap clone around shared state.
#[derive(Clone)]
pub struct Icons {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// The rules of jobs: who may look a domain up, and whose allowance it counts against.
    jobs: Jobs,
    finder: Arc<Finder>,
    settings: IconSettings,
    /// Resized PNGs by (content address, size), bounded by their bytes.
    resized: moka::sync::Cache<(String, u32), Bytes>,
    /// Why a resize failed, by (content address, size), for [`FAILURE_TTL`]: a hostile icon
    /// is drawn once, not once per request.
    failures: moka::sync::Cache<(String, u32), String>,
    /// Lookups in flight by domain and, where icons are private, by the client that may read
    /// the outcome. An async lock: the leader re-checks the database under it, so a lookup
    /// that just finished (and wrote its row) is never started again.
    flights: Mutex<HashMap<(Domain, Option<String>), Flight>>,
    /// Render slots; a slot moves into the render's thread and is freed when the thread ends.
    renders: Arc<Semaphore>,
    /// Render time per caller.
    budgets: Budgets,
    /// Refreshes per caller (`ICON_REFRESH_PER_MINUTE`).
    refreshes: Budgets,
    /// Stale domains (by reader) whose background re-find started within [`REVALIDATE_MEMO`].
    revalidated: moka::sync::Cache<(Domain, Option<String>), ()>,
    metrics: Arc<Metrics>,
}

impl Icons {
    /// The icons core over this database and finder.
    pub fn new(
        store: Store,
        jobs: Jobs,
        finder: Arc<Finder>,
        settings: IconSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let failures = moka::sync::Cache::builder()
            .max_capacity(FAILURES_KEPT)
            .time_to_live(FAILURE_TTL)
            .build();
        let budgets = Budgets::new(settings.render_per_minute);
        let refreshes = Budgets::counted(settings.refresh_per_minute);
        let revalidated = moka::sync::Cache::builder()
            .max_capacity(REVALIDATIONS_KEPT)
            .time_to_live(REVALIDATE_MEMO)
            .build();
        let resized = moka::sync::Cache::builder()
            .max_capacity(settings.resize_cache_bytes)
            .weigher(|(sha, _): &(String, u32), png: &Bytes| {
                u32::try_from(png.len() + sha.len()).unwrap_or(u32::MAX)
            })
            .build();
        Self {
            inner: Arc::new(Inner {
                store,
                jobs,
                finder,
                settings,
                resized,
                failures,
                flights: Mutex::new(HashMap::new()),
                renders: Arc::new(Semaphore::new(RENDERS_AT_ONCE)),
                budgets,
                refreshes,
                revalidated,
                metrics,
            }),
        }
    }

    /// The settings, for the adapter's headers.
    pub fn settings(&self) -> &IconSettings {
        &self.inner.settings
    }

    /// Answers one request of `caller` (none: no key where `AUTH_MODE=required`) from
    /// `source_ip`: the stored icon (maybe resized), or the fallback; with `find`, after
    /// looking the domain up if the cache would not answer it.
    ///
    /// Serving needs nothing with `ICONS_PUBLIC=true`, and otherwise the `read` scope and an
    /// icon the caller's client found itself (one of its jobs has it; every client's for an
    /// admin key or without keys): an icon only another client found is answered exactly as
    /// a domain nobody found, so a private deployment is no oracle of who looked up what. A
    /// lookup follows the rules of creating a job ([`Jobs::admit_lookup`]): the `submit`
    /// scope, and a one-domain job against the caller's allowance.
    pub async fn answer(
        &self,
        caller: Option<&Caller>,
        source_ip: Option<IpAddr>,
        request: &IconRequest,
    ) -> AppResult<IconAnswer> {
        let reader = self.reader(caller)?;
        let store = &self.inner.store;
        let domain = request.domain.as_str();
        if request.lookup
            && !store
                .answered_by_cache(domain, self.inner.jobs.default_cache(), reader)
                .await?
        {
            let payer = self
                .inner
                .jobs
                .admit_lookup(required(caller)?, source_ip, ON_DEMAND_CLIENT)
                .await?;
            self.find(&request.domain, reader, payer).await?;
        }
        if let Some(sha) = &request.sha {
            if !store.names_icon(domain, sha, reader).await? {
                return Ok(fallback(request));
            }
            let variant = Variant {
                immutable: true,
                theme_fallback: false,
            };
            return self
                .image(request, sha.clone(), variant, caller, source_ip)
                .await;
        }
        let Some(newest) = store.served(domain, reader).await? else {
            return Ok(fallback(request));
        };
        if self.is_stale(newest.fetched_at) {
            self.revalidate(caller, source_ip, &request.domain, reader);
        }
        let Some(sha) = newest.icon_sha256 else {
            return Ok(fallback(request));
        };
        let (sha, theme_fallback) = match (request.theme, newest.dark_icon_sha256) {
            (Theme::Dark, Some(dark)) => (dark, false),
            (Theme::Dark, None) => (sha, true),
            (Theme::Default, _) => (sha, false),
        };
        let variant = Variant {
            immutable: false,
            theme_fallback,
        };
        self.image(request, sha, variant, caller, source_ip).await
    }

    /// The stored icon `sha` as `request` asks for it (maybe resized), or 304.
    async fn image(
        &self,
        request: &IconRequest,
        sha: String,
        variant: Variant,
        caller: Option<&Caller>,
        source_ip: Option<IpAddr>,
    ) -> AppResult<IconAnswer> {
        let domain = request.domain.as_str();
        let etag = match request.size {
            Some(n) => format!("\"{sha}-{n}\""),
            None => format!("\"{sha}\""),
        };
        if request
            .if_none_match
            .as_deref()
            .is_some_and(|inm| etag_matches(inm, &etag))
        {
            return Ok(IconAnswer::NotModified { etag, variant });
        }
        if let Some(n) = request.size
            && let Some(remembered) = self.remembered(&sha, n, &etag, variant)
        {
            return remembered;
        }
        let Some(blob) = self.inner.store.icon_blob(&sha).await? else {
            // A result names a blob that is not there: only if someone deleted blobs by hand.
            tracing::warn!(domain, sha, "a result points at a missing icon blob");
            return Ok(fallback(request));
        };
        let Some(n) = request.size else {
            return Ok(IconAnswer::Image {
                mime: blob.mime,
                etag,
                bytes: Bytes::from(blob.bytes),
                variant,
            });
        };
        let payer = render_payer(caller, source_ip);
        self.resize(blob.bytes, blob.mime, (sha, n), (etag, variant), &payer)
            .await
    }

    /// Whose icons `caller` may read: `None` for every client's (public icons, an admin key,
    /// no keys), else its own client's; without the `read` scope, refused.
    fn reader<'c>(&self, caller: Option<&'c Caller>) -> AppResult<Option<&'c str>> {
        if self.inner.settings.public {
            return Ok(None);
        }
        let caller = required(caller)?;
        caller.require(Scope::Read)?;
        Ok(caller.own_client())
    }

    /// The answer memory holds for a resize of `sha` to `n`: the PNG drawn before, or the
    /// failure remembered; `None` when it must be drawn.
    fn remembered(
        &self,
        sha: &str,
        n: u32,
        etag: &str,
        variant: Variant,
    ) -> Option<AppResult<IconAnswer>> {
        let key = (sha.to_owned(), n);
        if let Some(png) = self.inner.resized.get(&key) {
            return Some(Ok(IconAnswer::Image {
                mime: "image/png".into(),
                etag: etag.to_owned(),
                bytes: png,
                variant,
            }));
        }
        let message = self.inner.failures.get(&key)?;
        self.count("cached_failure");
        Some(Err(undecodable(message)))
    }

    /// Draws the icon at the requested size and remembers the PNG, or the failure, for the
    /// next request of the same `(sha, size)`.
    async fn resize(
        &self,
        bytes: Vec<u8>,
        mime: String,
        (sha, n): (String, u32),
        (etag, variant): (String, Variant),
        payer: &str,
    ) -> AppResult<IconAnswer> {
        let png = match self.render(bytes, mime, n, payer).await {
            Ok(png) => png,
            Err(Rendered::Failed(message)) => {
                self.inner.failures.insert((sha, n), message.clone());
                return Err(undecodable(message));
            }
            Err(Rendered::NotNow(error)) => return Err(error),
        };
        self.inner.resized.insert((sha, n), png.clone());
        Ok(IconAnswer::Image {
            mime: "image/png".into(),
            etag,
            bytes: png,
            variant,
        })
    }

    /// Resizes on a blocking thread, at most [`RENDERS_AT_ONCE`] at once, within
    /// [`RENDER_TIMEOUT`], charged to `payer`'s render time.
    async fn render(
        &self,
        bytes: Vec<u8>,
        mime: String,
        size: u32,
        payer: &str,
    ) -> Result<Bytes, Rendered> {
        let slot = self
            .inner
            .renders
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Rendered::NotNow(AppError::Internal(e.into())))?;
        // Admitted with a slot held, so the renders this caller has finished are charged.
        let bucket = self.inner.budgets.of(payer);
        if let Err(retry_after_secs) = self.inner.budgets.admit(&bucket) {
            self.count("over_budget");
            return Err(Rendered::NotNow(AppError::RateLimited {
                message: "this caller's time for resizing icons is spent for now; stored \
                          icons and sizes resized before are still served"
                    .into(),
                retry_after_secs,
            }));
        }
        let budgets = self.inner.budgets.clone();
        let deadline = Instant::now() + RENDER_TIMEOUT;
        let work = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let png = render::to_png(&bytes, &mime, size, deadline);
            budgets.charge(&bucket, started.elapsed());
            // The slot is free when this thread is, not when the caller stops waiting.
            drop(slot);
            png
        });
        // The drawing checks the same deadline between shapes, so the thread ends about when
        // this wait does; a little longer lets its own answer (often a refusal) arrive first.
        let outcome = tokio::time::timeout(RENDER_TIMEOUT + Duration::from_millis(100), work).await;
        let (label, result) = match outcome {
            Ok(Ok(Ok(png))) => ("rendered", Ok(Bytes::from(png))),
            Ok(Ok(Err(e))) if e.is_refusal() => ("refused", Err(e.0)),
            Ok(Ok(Err(e))) if e.is_overrun() => ("timeout", Err(overrun())),
            Ok(Ok(Err(e))) => ("failed", Err(e.0)),
            Ok(Err(join)) => ("failed", Err(format!("the renderer failed: {join}"))),
            Err(_) => ("timeout", Err(overrun())),
        };
        self.count(label);
        result.map_err(Rendered::Failed)
    }

    fn count(&self, outcome: &str) {
        self.inner
            .metrics
            .icon_renders
            .with_label_values(&[outcome])
            .inc();
    }
}

/// The caller, or the 401 of a request without a key where keys are required.
fn required(caller: Option<&Caller>) -> AppResult<&Caller> {
    caller.ok_or_else(|| {
        AppError::Unauthorized(
            "an API key is required: send Authorization: Bearer <key> (or set ICONS_PUBLIC=true \
             to serve stored icons without one)"
                .into(),
        )
    })
}

fn fallback(request: &IconRequest) -> IconAnswer {
    match request.fallback {
        Fallback::Letter => IconAnswer::Letter {
            svg: letter::monogram(&request.domain),
        },
        Fallback::NotFound => IconAnswer::Missing {
            message: format!("no icon is stored for {}", request.domain.as_str()),
        },
    }
}

/// Whose render time a resize spends: the key's client, or the address without a key.
fn render_payer(caller: Option<&Caller>, source_ip: Option<IpAddr>) -> String {
    match caller {
        Some(Caller::Key(key)) => format!("client:{}", key.client_id),
        _ => format!(
            "ip:{}",
            source_ip.map_or("unknown".into(), |ip| ip.to_string())
        ),
    }
}

/// Why a render gave no PNG.
enum Rendered {
    /// The icon cannot be resized (remembered for [`FAILURE_TTL`]).
    Failed(String),
    /// This request may not render now (over budget), or could not wait for a slot.
    NotNow(AppError),
}

fn overrun() -> String {
    format!(
        "resizing took longer than {} ms",
        RENDER_TIMEOUT.as_millis()
    )
}

/// The 422 of an icon that cannot be resized.
fn undecodable(message: String) -> AppError {
    AppError::Unprocessable {
        code: Code::IconUndecodable,
        message,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// A real, decodable RGBA PNG (opaque) of `w`×`h`.
    pub(crate) fn real_png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_pixel(w, h, image::Rgba([10, 20, 30, 255]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgba8(img)
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }
}
