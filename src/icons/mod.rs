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

pub mod budget;
pub mod letter;
pub mod measure;
pub mod render;
mod request;

use request::etag_matches;
pub use request::{Fallback, IconRequest, parse_request};

use crate::auth::{Caller, Scope};
use crate::domain::Domain;
use crate::error::{AppError, AppResult, Code};
use crate::finder::Finder;
use crate::jobs::{Jobs, LookupPayer};
use crate::metrics::Metrics;
use crate::store::Store;
use budget::Budgets;
use bytes::Bytes;
use futures::FutureExt;
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
    },
    /// The client's copy is current.
    NotModified {
        /// The validator it matched.
        etag: String,
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

/// One lookup in flight, shared by every request that waits for it.
type Flight = Shared<BoxFuture<'static, ()>>;

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
            self.lookup(&request.domain, reader, payer).await?;
        }
        let Some(sha) = store.newest_icon_sha(domain, reader).await? else {
            return Ok(fallback(request));
        };
        let etag = match request.size {
            Some(n) => format!("\"{sha}-{n}\""),
            None => format!("\"{sha}\""),
        };
        if request
            .if_none_match
            .as_deref()
            .is_some_and(|inm| etag_matches(inm, &etag))
        {
            return Ok(IconAnswer::NotModified { etag });
        }
        if let Some(n) = request.size
            && let Some(remembered) = self.remembered(&sha, n, &etag)
        {
            return remembered;
        }
        let Some(blob) = store.icon_blob(&sha).await? else {
            // A result names a blob that is not there: only if someone deleted blobs by hand.
            tracing::warn!(domain, sha, "a result points at a missing icon blob");
            return Ok(fallback(request));
        };
        let Some(n) = request.size else {
            return Ok(IconAnswer::Image {
                mime: blob.mime,
                etag,
                bytes: Bytes::from(blob.bytes),
            });
        };
        let payer = render_payer(caller, source_ip);
        self.resize(blob.bytes, blob.mime, (sha, n), etag, &payer)
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
    fn remembered(&self, sha: &str, n: u32, etag: &str) -> Option<AppResult<IconAnswer>> {
        let key = (sha.to_owned(), n);
        if let Some(png) = self.inner.resized.get(&key) {
            return Some(Ok(IconAnswer::Image {
                mime: "image/png".into(),
                etag: etag.to_owned(),
                bytes: png,
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
        etag: String,
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

    /// Looks `domain` up now, sharing a lookup already in flight, and waits for it up to
    /// `ICON_FIND_TIMEOUT_MS`. A new lookup is recorded for `payer`; one already in flight
    /// is shared and charged to whoever started it.
    async fn lookup(
        &self,
        domain: &Domain,
        reader: Option<&str>,
        payer: LookupPayer,
    ) -> AppResult<()> {
        let key = (domain.clone(), reader.map(str::to_owned));
        let flight = {
            let mut flights = self.inner.flights.lock().await;
            match flights.get(&key) {
                Some(flight) => flight.clone(),
                None => {
                    // The lock is held: a lookup that finished has written its row already.
                    let store = &self.inner.store;
                    if store
                        .answered_by_cache(domain.as_str(), self.inner.jobs.default_cache(), reader)
                        .await?
                    {
                        return Ok(());
                    }
                    let flight = self.start_lookup(key.clone(), payer);
                    flights.insert(key, flight.clone());
                    flight
                }
            }
        };
        // Past the wait the lookup goes on; this answer is the fallback, a later one the icon.
        let _ = tokio::time::timeout(self.inner.settings.find_timeout, flight).await;
        Ok(())
    }

    /// Runs the finder in a task of its own (so it outlives a caller that stops waiting),
    /// records the outcome, then leaves the table of flights.
    fn start_lookup(&self, key: (Domain, Option<String>), payer: LookupPayer) -> Flight {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let domain = &key.0;
            let outcome = crate::clean::outcome(inner.finder.find(domain.as_str()).await);
            match inner
                .store
                .record_lookup(&payer.client_id, payer.source_ip, domain.as_str(), outcome)
                .await
            {
                Ok(job_id) => {
                    tracing::info!(domain = domain.as_str(), %job_id, "on-demand icon lookup")
                }
                Err(err) => {
                    tracing::error!(domain = domain.as_str(), error = %err, "could not record an on-demand lookup")
                }
            }
            inner.flights.lock().await.remove(&key);
        });
        task.map(|_| ()).boxed().shared()
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
