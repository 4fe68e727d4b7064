//! Watches: a client names domains to keep fresh and how often; workers re-check each one
//! when it is due, as an ordinary low-priority job, and a change of a domain's icon is kept
//! in its history, sent as `icon.changed` to the client's webhooks and on the `iconChanged`
//! subscription.
//!
//! [`Watches`] holds the use cases the adapters call (create, list, read with domains and
//! changes, delete, follow changes), each checked against the request's [`Caller`] the way
//! jobs and webhooks are: a watch belongs to its key's client, other clients are told it
//! does not exist, admins see all. [`schedule::Scheduler`] is the worker side.

pub mod schedule;

use crate::auth::{Caller, Scope};
use crate::error::{AppError, AppResult, Code};
use crate::jobs::{Entry, parse_domains};
use crate::model::watch::{IconChange, IconChangePage, Watch, WatchedDomainPage};
use crate::model::{Fields, Page, parse_client_id};
use crate::store::{Store, now};
use futures::Stream;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use uuid::Uuid;

/// The longest period a watch may ask for: 30 days.
pub const MAX_EVERY_SECS: i64 = 30 * 86_400;
/// The longest name taken, in characters.
const MAX_NAME_CHARS: usize = 200;
/// How far back each poll of a subscription looks again, so a change whose transaction
/// committed after a later one's is still seen (each is sent once: the ids sent are kept for
/// as long).
const POLL_OVERLAP: chrono::Duration = chrono::Duration::seconds(60);

/// The watches' rules (from the `WATCH_*` settings).
#[derive(Clone, Debug)]
pub struct WatchSettings {
    /// The shortest period a watch may ask for.
    pub min_every: Duration,
    /// The most domains one client's watches may hold together.
    pub max_domains: usize,
    /// How often the scheduler and a subscription look.
    pub tick: Duration,
}

/// What a client asks to watch, as an adapter read it.
pub struct NewWatch<'a> {
    /// The client (`client_id`), checked against the key as for jobs.
    pub client_id: Option<&'a str>,
    /// The domain entries.
    pub domains: Vec<Entry<'a>>,
    /// Seconds between two checks of each domain.
    pub every: i64,
    /// The owner's name for it.
    pub name: Option<&'a str>,
    /// How the caller's API names the fields.
    pub fields: Fields,
}

/// The watches' use cases, for the adapters.
#[derive(Clone)]
pub struct Watches {
    store: Store,
    settings: WatchSettings,
}

impl Watches {
    /// The handle over `store`.
    pub fn new(store: Store, settings: WatchSettings) -> Self {
        Self { store, settings }
    }

    /// Creates a watch; its domains are first checked spread over one period.
    pub async fn create(&self, caller: &Caller, new: NewWatch<'_>) -> AppResult<Watch> {
        caller.require(Scope::Submit)?;
        let requested = new
            .client_id
            .map(|raw| parse_client_id(raw, new.fields))
            .transpose()?;
        let client = caller.client_for(requested.as_deref())?;
        let min = self.settings.min_every.as_secs() as i64;
        if !(min..=MAX_EVERY_SECS).contains(&new.every) {
            return Err(AppError::bad_request(
                Code::InvalidInput,
                format!(
                    "every must be between {min} (WATCH_MIN_EVERY_SECS) and {MAX_EVERY_SECS} \
                     seconds, got {}",
                    new.every
                ),
            ));
        }
        let name = new.name.map(str::trim).filter(|n| !n.is_empty());
        if name.is_some_and(|n| n.chars().count() > MAX_NAME_CHARS) {
            return Err(AppError::bad_request(
                Code::InvalidInput,
                format!("name is longer than {MAX_NAME_CHARS} characters"),
            ));
        }
        let max = self.settings.max_domains;
        let held = self.store.watched_domain_count(&client).await? as usize;
        let asked = new.domains.len();
        if held + asked > max {
            return Err(AppError::bad_request(
                Code::TooManyDomains,
                format!(
                    "client {client:?} watches {held} domains and asks for {asked} more; its \
                     watches may hold at most {max} together (WATCH_MAX_DOMAINS)"
                ),
            ));
        }
        let domains = parse_domains(new.domains.into_iter(), max, new.fields)?;
        let watch = self
            .store
            .create_watch(&client, name, new.every, &domains)
            .await?;
        tracing::info!(watch = %watch.id.as_str(), client = %client, domains = domains.len(), "watch created");
        Ok(watch)
    }

    /// The caller's watches, oldest first; `requested` as for webhooks (an admin or a caller
    /// without keys sees every client's without it).
    pub async fn list(&self, caller: &Caller, requested: Option<&str>) -> AppResult<Vec<Watch>> {
        caller.require(Scope::Read)?;
        let client = match (caller.own_client(), requested.map(str::trim)) {
            (Some(_), requested) => Some(caller.client_for(requested)?),
            (None, requested) => requested.map(str::to_owned),
        };
        Ok(self.store.watches(client.as_deref()).await?)
    }

    /// Watch `id` as the caller sees it; another client's is NOT_FOUND.
    pub async fn get(&self, caller: &Caller, id: Uuid) -> AppResult<Watch> {
        caller.require(Scope::Read)?;
        let found = self.store.watch(id).await?;
        match found {
            Some(watch) if caller.own_client().is_none_or(|c| c == watch.client_id) => Ok(watch),
            _ => Err(AppError::NotFound(format!("no watch with id {id}"))),
        }
    }

    /// A page of watch `id`'s domains: each one's last check and current icon.
    pub async fn domains(
        &self,
        caller: &Caller,
        id: Uuid,
        page: Page,
    ) -> AppResult<WatchedDomainPage> {
        self.get(caller, id).await?;
        let (items, total) = self.store.watched_domains(id, page).await?;
        Ok(WatchedDomainPage {
            items,
            total: i32::try_from(total).unwrap_or(i32::MAX),
            page: i32::try_from(page.page).unwrap_or(i32::MAX),
            per_page: page.per_page as i32,
        })
    }

    /// A page of the changes of watch `id`'s domains since it was made, newest first.
    pub async fn changes(
        &self,
        caller: &Caller,
        id: Uuid,
        page: Page,
    ) -> AppResult<IconChangePage> {
        self.get(caller, id).await?;
        let (items, total) = self.store.watch_changes(id, page).await?;
        Ok(IconChangePage {
            items,
            total: i32::try_from(total).unwrap_or(i32::MAX),
            page: i32::try_from(page.page).unwrap_or(i32::MAX),
            per_page: page.per_page as i32,
        })
    }

    /// Deletes watch `id`: nothing more is scheduled for it at once; its rows go with the
    /// retention task's next pass.
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> AppResult<()> {
        caller.require(Scope::Submit)?;
        self.get(caller, id).await?;
        if !self.store.delete_watch(id).await? {
            return Err(AppError::NotFound(format!("no watch with id {id}")));
        }
        tracing::info!(watch = %id, "watch deleted");
        Ok(())
    }

    /// Every reported change of watch `id`'s domains detected from now on, each once; the
    /// stream ends (the subscriber is told it is complete) once the watch is deleted.
    ///
    /// The stream polls the database every `WATCH_TICK_MS` rather than listening for
    /// events: a change is detected in whichever worker process ran the check, and the
    /// database is what every process of a fleet shares, Redis or not. Each poll looks
    /// [`POLL_OVERLAP`] back, so a change committed late is not missed. A poll that finds
    /// nothing new also asks whether the watch still lives: a deleted watch's subscribers
    /// would otherwise keep polling until they left.
    pub async fn follow(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> AppResult<impl Stream<Item = IconChange> + Send + 'static> {
        self.get(caller, id).await?;
        let store = self.store.clone();
        let tick = self.settings.tick;
        let start = now();
        let state = (VecDeque::<IconChange>::new(), HashMap::new(), true);
        Ok(futures::stream::unfold(
            state,
            move |(mut ready, mut sent, mut first)| {
                let store = store.clone();
                async move {
                    loop {
                        if let Some(change) = ready.pop_front() {
                            return Some((change, (ready, sent, first)));
                        }
                        if !first {
                            tokio::time::sleep(tick).await;
                        }
                        first = false;
                        let since = start.max(now() - POLL_OVERLAP);
                        match store.reported_changes_since(id, since).await {
                            Ok(found) => {
                                // Only ids the next poll can see again need remembering.
                                sent.retain(|_, at| *at >= since);
                                for change in found {
                                    if sent
                                        .insert(change.id.to_string(), change.detected_at)
                                        .is_none()
                                    {
                                        ready.push_back(change);
                                    }
                                }
                                if ready.is_empty()
                                    && matches!(store.watch_is_live(id).await, Ok(false))
                                {
                                    return None;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(watch = %id, error = %e, "could not read a watch's changes");
                            }
                        }
                    }
                }
            },
        ))
    }
}

/// Parses a watch id given by a client.
pub fn parse_watch_id(raw: &str) -> AppResult<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| {
        AppError::bad_request(
            Code::InvalidId,
            format!("watch id {raw:?} is not a valid id (expected a UUID)"),
        )
    })
}
