//! Webhooks: clients register endpoints, and the service calls them back when their jobs
//! end, signed the Standard Webhooks way, retried, and never lost.
//!
//! [`Webhooks`] holds the use cases the adapters call (register, list, delete, rotate a
//! secret, enable, deliveries, redeliver, send a test event), each checked against the
//! request's [`Caller`] the way jobs are: an endpoint belongs to its key's client, other
//! clients are told it does not exist, admins see all. [`deliver::Deliverer`] is the worker
//! side: it leases due deliveries from the outbox, sends them through the SSRF guard and
//! records every attempt.

pub mod deliver;
pub mod sign;

use crate::auth::{Caller, Scope};
use crate::error::{AppError, AppResult, Code};
use crate::finder::resolve::{GuardedResolver, ResolveError, is_public};
use crate::model::webhook::{Backoff, Webhook, WebhookDelivery, WebhookEvent};
use crate::model::{Fields, Page, parse_client_id};
use crate::store::{Store, StoredEndpoint};
use sign::{Sealer, Secret};
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use uuid::Uuid;

/// The longest webhook URL taken.
const MAX_URL_LEN: usize = 2_048;
/// The longest description taken, in characters.
const MAX_DESCRIPTION_CHARS: usize = 500;
/// The most endpoints one client may register.
pub const MAX_ENDPOINTS_PER_CLIENT: usize = 20;
/// The longest a rotated-out secret may keep signing: 30 days.
pub const MAX_ROTATION_OVERLAP: Duration = Duration::from_secs(30 * 86_400);

/// How webhooks are delivered (from the `WEBHOOK_*` settings).
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// The retry schedule.
    pub backoff: Backoff,
    /// One attempt's whole time.
    pub timeout: Duration,
    /// An endpoint failing this long is disabled.
    pub disable_after: Duration,
    /// How long a rotated-out secret keeps signing.
    pub rotation_overlap: Duration,
    /// Attempts in flight per process (0: this process sends none).
    pub concurrency: usize,
    /// The least time between two `job.progress` events of one job to one endpoint.
    pub progress_interval: Duration,
    /// How often a worker looks for due deliveries.
    pub poll: Duration,
    /// `FETCH_ALLOW_PRIVATE_NETWORKS`: endpoints may be on private addresses.
    pub allow_private: bool,
    /// `FETCH_EXTRA_ROOT_CERTS`: CAs trusted beside the system's, as for fetches (an
    /// endpoint inside a company, certified by its own CA).
    pub extra_root_certs: Option<std::path::PathBuf>,
}

/// A registered endpoint with its secret in the clear: answered once, when it is made or its
/// secret rotated.
#[derive(Clone, Debug)]
pub struct WithSecret {
    /// The endpoint.
    pub webhook: Webhook,
    /// The secret that signs from now on (`whsec_…`).
    pub secret: String,
}

/// What a client asks to register.
#[derive(Clone, Debug, Default)]
pub struct NewWebhook<'a> {
    /// The client (`client_id`), checked against the key as for jobs.
    pub client_id: Option<&'a str>,
    /// Where to send events.
    pub url: &'a str,
    /// The events to send (`None`: a job's end, whatever it was).
    pub events: Option<Vec<WebhookEvent>>,
    /// A note for its owner.
    pub description: Option<&'a str>,
}

/// The webhooks' use cases, for the adapters.
#[derive(Clone)]
pub struct Webhooks {
    store: Store,
    sealer: Option<Sealer>,
    guard: GuardedResolver,
    settings: Arc<WebhookSettings>,
}

impl Webhooks {
    /// The handle; `key` is `WEBHOOK_SECRET_KEY` (without it nothing can be registered).
    pub fn new(
        store: Store,
        key: Option<&str>,
        guard: GuardedResolver,
        settings: WebhookSettings,
    ) -> anyhow::Result<Self> {
        let sealer = key
            .map(Sealer::new)
            .transpose()
            .map_err(|reason| anyhow::anyhow!("WEBHOOK_SECRET_KEY {reason}"))?;
        Ok(Self {
            store,
            sealer,
            guard,
            settings: Arc::new(settings),
        })
    }

    /// The settings, for the deliverer.
    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    /// The sealer, or the error that says webhooks are off.
    fn sealer(&self) -> AppResult<&Sealer> {
        self.sealer.as_ref().ok_or_else(|| {
            AppError::bad_request(
                Code::WebhooksNotConfigured,
                "webhooks are off on this server: its operator must set WEBHOOK_SECRET_KEY \
                 (32 random bytes in base64, e.g. `openssl rand -base64 32`)",
            )
        })
    }

    /// Registers an endpoint; its URL is checked by the SSRF guard now, and again before
    /// every attempt.
    pub async fn create(&self, caller: &Caller, new: NewWebhook<'_>) -> AppResult<WithSecret> {
        caller.require(Scope::Submit)?;
        let sealer = self.sealer()?;
        // The same rule as a job's or a key's client: before it, an empty or 10 kB name was
        // taken and made a client of its own.
        let requested = new
            .client_id
            .map(|raw| parse_client_id(raw, Fields::REST))
            .transpose()?;
        let client = caller.client_for(requested.as_deref())?;
        let url = check_url(new.url)?;
        guard_target(&self.guard, self.settings.allow_private, &url)
            .await
            .map_err(|reason| AppError::bad_request(Code::WebhookUrlRefused, reason))?;
        let events = match new.events {
            Some(events) if events.is_empty() => {
                return Err(AppError::bad_request(
                    Code::InvalidInput,
                    "events is empty: name at least one of job.completed, job.failed, \
                     job.cancelled, job.progress, icon.changed (or leave it out for all but \
                     job.progress)",
                ));
            }
            Some(events) => {
                if let Some(e) = events
                    .iter()
                    .find(|e| !WebhookEvent::SUBSCRIBABLE.contains(e))
                {
                    return Err(AppError::bad_request(
                        Code::InvalidInput,
                        format!(
                            "events: {} is sent to every endpoint and cannot be subscribed to; \
                             use job.completed, job.failed, job.cancelled, job.progress or icon.changed",
                            e.as_str()
                        ),
                    ));
                }
                let mut unique = Vec::with_capacity(events.len());
                for event in events {
                    if !unique.contains(&event) {
                        unique.push(event);
                    }
                }
                unique
            }
            None => WebhookEvent::DEFAULT.to_vec(),
        };
        let description = new.description.map(str::trim).filter(|d| !d.is_empty());
        if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
            return Err(AppError::bad_request(
                Code::InvalidInput,
                format!("description is longer than {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if self.store.webhooks(Some(&client)).await?.len() >= MAX_ENDPOINTS_PER_CLIENT {
            return Err(AppError::bad_request(
                Code::InvalidInput,
                format!(
                    "client {client:?} already has {MAX_ENDPOINTS_PER_CLIENT} webhooks, the most \
                     one client may have; delete one first"
                ),
            ));
        }
        let id = Uuid::now_v7();
        let secret = Secret::generate();
        let stored = self
            .store
            .create_webhook(
                id,
                &client,
                url.as_str(),
                description,
                &events,
                &sealer.seal(id, &secret),
            )
            .await?;
        tracing::info!(webhook = %id, client = %client, "webhook registered");
        Ok(WithSecret {
            webhook: stored.view,
            secret: secret.expose().to_owned(),
        })
    }

    /// The caller's endpoints: its client's with a key (`requested` must name it unless it is
    /// an admin's), every client's for an admin or a keyless caller that names none.
    pub async fn list(&self, caller: &Caller, requested: Option<&str>) -> AppResult<Vec<Webhook>> {
        caller.require(Scope::Read)?;
        let client = match (caller.own_client(), requested.map(str::trim)) {
            (Some(_), requested) => Some(caller.client_for(requested)?),
            (None, requested) => requested.map(str::to_owned),
        };
        Ok(self
            .store
            .webhooks(client.as_deref())
            .await?
            .into_iter()
            .map(|s| s.view)
            .collect())
    }

    /// Endpoint `id` if the caller may see it; anyone else is told it does not exist.
    async fn find(&self, caller: &Caller, id: Uuid) -> AppResult<StoredEndpoint> {
        let found = self.store.webhook(id).await?;
        match found {
            Some(stored) if may_see(caller, &stored.view.client_id) => Ok(stored),
            _ => Err(AppError::NotFound(format!("no webhook with id {id}"))),
        }
    }

    /// Endpoint `id` as the caller sees it.
    pub async fn get(&self, caller: &Caller, id: Uuid) -> AppResult<Webhook> {
        caller.require(Scope::Read)?;
        Ok(self.find(caller, id).await?.view)
    }

    /// Deletes endpoint `id`; its deliveries still waiting fail.
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> AppResult<()> {
        caller.require(Scope::Submit)?;
        self.find(caller, id).await?;
        if !self.store.delete_webhook(id).await? {
            return Err(AppError::NotFound(format!("no webhook with id {id}")));
        }
        tracing::info!(webhook = %id, "webhook deleted");
        Ok(())
    }

    /// Gives endpoint `id` a new secret; the old one keeps signing beside it for `overlap`
    /// (`None`: `WEBHOOK_ROTATION_OVERLAP_SECS`).
    pub async fn rotate(
        &self,
        caller: &Caller,
        id: Uuid,
        overlap: Option<Duration>,
    ) -> AppResult<WithSecret> {
        caller.require(Scope::Submit)?;
        let sealer = self.sealer()?;
        self.find(caller, id).await?;
        if overlap.is_some_and(|o| o > MAX_ROTATION_OVERLAP) {
            return Err(AppError::bad_request(
                Code::InvalidInput,
                format!(
                    "the overlap is at most {} seconds (30 days)",
                    MAX_ROTATION_OVERLAP.as_secs()
                ),
            ));
        }
        let overlap = overlap.unwrap_or(self.settings.rotation_overlap);
        let until = crate::store::now()
            + chrono::Duration::from_std(overlap).map_err(|_| {
                AppError::bad_request(Code::InvalidInput, "the overlap is too large")
            })?;
        let secret = Secret::generate();
        let stored = self
            .store
            .rotate_webhook_secret(id, &sealer.seal(id, &secret), until)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no webhook with id {id}")))?;
        tracing::info!(webhook = %id, overlap_secs = overlap.as_secs(), "webhook secret rotated");
        Ok(WithSecret {
            webhook: stored.view,
            secret: secret.expose().to_owned(),
        })
    }

    /// Enables endpoint `id` again after it was disabled for failing.
    pub async fn enable(&self, caller: &Caller, id: Uuid) -> AppResult<Webhook> {
        caller.require(Scope::Submit)?;
        self.find(caller, id).await?;
        let stored = self
            .store
            .enable_webhook(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no webhook with id {id}")))?;
        Ok(stored.view)
    }

    /// A page of endpoint `id`'s deliveries, newest first, each with its attempts.
    pub async fn deliveries(
        &self,
        caller: &Caller,
        id: Uuid,
        page: Page,
    ) -> AppResult<Vec<WebhookDelivery>> {
        caller.require(Scope::Read)?;
        self.find(caller, id).await?;
        Ok(self
            .store
            .webhook_deliveries(id, page.offset(), page.per_page)
            .await?)
    }

    /// Sends delivery `id`'s event again, with the same `webhook-id`.
    pub async fn redeliver(&self, caller: &Caller, id: Uuid) -> AppResult<WebhookDelivery> {
        caller.require(Scope::Submit)?;
        let not_found = || AppError::NotFound(format!("no webhook delivery with id {id}"));
        match self.store.webhook_delivery(id).await? {
            Some((_, owner)) if may_see(caller, &owner) => {}
            _ => return Err(not_found()),
        }
        self.store
            .redeliver_webhook(id)
            .await?
            .ok_or_else(not_found)
    }

    /// Queues a `webhook.test` event for endpoint `id`.
    pub async fn send_test(&self, caller: &Caller, id: Uuid) -> AppResult<WebhookDelivery> {
        caller.require(Scope::Submit)?;
        let stored = self.find(caller, id).await?;
        let data = serde_json::json!({
            "webhook_id": id,
            "client_id": stored.view.client_id,
            "message": "a test event, sent from the dashboard or the API",
        });
        Ok(self
            .store
            .enqueue_webhook_event(id, WebhookEvent::WebhookTest, None, &data.to_string())
            .await?)
    }
}

/// Parses the id of a webhook or of a delivery (`what` names which) as an adapter got it.
pub fn parse_id(raw: &str, what: &str) -> AppResult<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| {
        AppError::bad_request(
            Code::InvalidId,
            format!("{what} id {raw:?} is not a valid id (expected a UUID)"),
        )
    })
}

/// Whether `caller` may see an endpoint of client `owner`: its own client's, or any with an
/// admin key or without keys.
fn may_see(caller: &Caller, owner: &str) -> bool {
    match caller {
        Caller::Anonymous => true,
        Caller::Key(key) => key.client_id == owner || caller.is_admin(),
        Caller::Link { .. } => false,
    }
}

/// Parses a webhook URL: `http` or `https`, a host, no credentials (they would be stored and
/// shown), at most [`MAX_URL_LEN`] bytes.
fn check_url(raw: &str) -> AppResult<Url> {
    let refuse =
        |why: &str| AppError::bad_request(Code::WebhookUrlRefused, format!("url {raw:?} {why}"));
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(refuse(&format!("is longer than {MAX_URL_LEN} bytes")));
    }
    let url = Url::parse(raw).map_err(|e| refuse(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse("must start with http:// or https://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(
            "carries credentials; put a secret in the path instead, or verify the signature",
        ));
    }
    if url.host().is_none() {
        return Err(refuse("has no host"));
    }
    Ok(url)
}

/// Whether `url`'s host may be called: its addresses (an IP literal, or what the guarded
/// resolver answers) are public, unless private networks are allowed. Err(why not).
pub(crate) async fn guard_target(
    guard: &GuardedResolver,
    allow_private: bool,
    url: &Url,
) -> Result<(), String> {
    let host = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => return Err("the URL has no host".into()),
    };
    if let Some(ip) = host {
        // An IP literal never reaches the resolver, so the guard's rule is applied here.
        return if allow_private || is_public(ip) {
            Ok(())
        } else {
            Err(format!(
                "{ip} is not a public address (set FETCH_ALLOW_PRIVATE_NETWORKS to allow it)"
            ))
        };
    }
    let name = url.host_str().unwrap_or_default();
    match guard.lookup(name).await {
        Ok(_) => Ok(()),
        Err(e @ ResolveError::Blocked { .. }) => Err(format!(
            "{e} (set FETCH_ALLOW_PRIVATE_NETWORKS to allow it)"
        )),
        Err(e) => Err(e.to_string()),
    }
}
