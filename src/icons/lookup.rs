//! Looking a domain up on demand: one flight per (domain, reader) shared by `?find=1`, a
//! refresh and the background re-find of a stale icon, each recording its outcome as a
//! finished one-domain job (`Store::record_lookup`) with why it ran.

use super::{Flight, Icons, ON_DEMAND_CLIENT, render_payer, required};
use crate::auth::Caller;
use crate::domain::Domain;
use crate::error::{AppError, AppResult};
use crate::jobs::LookupPayer;
use crate::model::{ChangeSource, IconRefresh};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use std::net::IpAddr;
use std::sync::Arc;

/// The key of a flight: the domain, and the client whose results the outcome must reach
/// where icons are private.
type Key = (Domain, Option<String>);

impl Icons {
    /// `?find=1`: looks `domain` up now unless the cache answers it, sharing a lookup already
    /// in flight (a refresh's too), and waits for it up to `ICON_FIND_TIMEOUT_MS`. A new
    /// lookup is recorded for `payer`; one already in flight is shared and charged to whoever
    /// started it.
    pub(super) async fn find(
        &self,
        domain: &Domain,
        reader: Option<&str>,
        payer: LookupPayer,
    ) -> AppResult<()> {
        let key = (domain.clone(), reader.map(str::to_owned));
        if let Some(flight) = self.flight(key, payer, ChangeSource::Find).await? {
            // Past the wait the lookup goes on; this answer is the fallback, a later one the
            // icon.
            let _ = tokio::time::timeout(self.inner.settings.find_timeout, flight).await;
        }
        Ok(())
    }

    /// Runs the finder for `domain` now, whatever the cache holds (sharing a lookup already
    /// in flight for it), and answers its outcome with what `GET /icons/{domain}` serves
    /// before and after. Admitted as a lookup ([`crate::jobs::Jobs::admit_lookup`]: the
    /// `submit` scope and the payer's allowance), and limited to `ICON_REFRESH_PER_MINUTE` per
    /// caller. A transient failure is answered as it is, and leaves the served icon alone.
    pub async fn refresh(
        &self,
        caller: Option<&Caller>,
        source_ip: Option<IpAddr>,
        domain: &Domain,
    ) -> AppResult<IconRefresh> {
        let caller = required(caller)?;
        let payer = self
            .inner
            .jobs
            .admit_lookup(caller, source_ip, ON_DEMAND_CLIENT)
            .await?;
        if let Err(retry_after_secs) = self
            .inner
            .refreshes
            .take_one(&render_payer(Some(caller), source_ip))
        {
            return Err(AppError::RateLimited {
                message: format!(
                    "this caller may refresh {} icons a minute (ICON_REFRESH_PER_MINUTE); \
                     stored icons are still served",
                    self.inner.settings.refresh_per_minute
                ),
                retry_after_secs,
            });
        }
        // Where icons are private the answer says what the caller's own client is served.
        let reader = if self.inner.settings.public {
            None
        } else {
            caller.own_client()
        };
        let served = |newest: Option<crate::store::Served>| newest.and_then(|n| n.icon_sha256);
        let store = &self.inner.store;
        let before = served(store.served(domain.as_str(), reader).await?);
        let key = (domain.clone(), reader.map(str::to_owned));
        let Some(flight) = self.flight(key, payer, ChangeSource::Refresh).await? else {
            return Err(AppError::Internal(anyhow::anyhow!(
                "a refresh started no lookup"
            )));
        };
        let Some(outcome) = flight.await else {
            return Err(AppError::Internal(anyhow::anyhow!(
                "the lookup of {} could not be recorded",
                domain.as_str()
            )));
        };
        let after = served(store.served(domain.as_str(), reader).await?);
        Ok(IconRefresh::new(domain.as_str(), &outcome, before, after))
    }

    /// Whether a fetch made at `fetched_at` is older than `ICON_REFRESH_AFTER_SECS`.
    pub(super) fn is_stale(&self, fetched_at: DateTime<Utc>) -> bool {
        let age = Utc::now().signed_duration_since(fetched_at);
        age.to_std()
            .is_ok_and(|age| age > self.inner.settings.refresh_after)
    }

    /// Starts one background re-find of a stale `domain` for `reader`, unless one started
    /// within [`super::REVALIDATE_MEMO`]; never waits for it. Paid by the caller's client
    /// (or the on-demand client and address, [`crate::jobs::Jobs::admit_refind`]); a payer
    /// over its allowance gets no re-find, nor does a private reader whose key may not
    /// submit (a lookup for another client would not reach what it reads).
    pub(super) fn revalidate(
        &self,
        caller: Option<&Caller>,
        source_ip: Option<IpAddr>,
        domain: &Domain,
        reader: Option<&str>,
    ) {
        let key = (domain.clone(), reader.map(str::to_owned));
        // Atomic: of many requests at once, one inserts the entry and starts the re-find.
        if !self
            .inner
            .revalidated
            .entry(key.clone())
            .or_insert(())
            .is_fresh()
        {
            return;
        }
        let icons = self.clone();
        let caller = caller.cloned();
        tokio::spawn(async move {
            let payer = match icons
                .inner
                .jobs
                .admit_refind(caller.as_ref(), source_ip, ON_DEMAND_CLIENT)
                .await
            {
                // Where icons are private, only the reader's own lookup reaches what it reads.
                Ok(payer) if key.1.as_ref().is_none_or(|r| *r == payer.client_id) => payer,
                Ok(_) => return,
                Err(err) => {
                    tracing::debug!(domain = key.0.as_str(), error = %err, "no re-find of a stale icon");
                    return;
                }
            };
            if let Err(err) = icons.flight(key.clone(), payer, ChangeSource::Stale).await {
                tracing::warn!(domain = key.0.as_str(), error = %err, "could not start a re-find");
            }
        });
    }

    /// The lookup in flight for `key`, or a new one for `payer`. A `?find=1` starts none when
    /// the cache answers the domain (checked under the lock, so a lookup that just finished,
    /// and wrote its row, is never started again).
    async fn flight(
        &self,
        key: Key,
        payer: LookupPayer,
        source: ChangeSource,
    ) -> AppResult<Option<Flight>> {
        let mut flights = self.inner.flights.lock().await;
        if let Some(flight) = flights.get(&key) {
            return Ok(Some(flight.clone()));
        }
        if source == ChangeSource::Find
            && self
                .inner
                .store
                .answered_by_cache(
                    key.0.as_str(),
                    self.inner.jobs.default_cache(),
                    key.1.as_deref(),
                )
                .await?
        {
            return Ok(None);
        }
        let flight = self.start_lookup(key.clone(), payer, source);
        flights.insert(key, flight.clone());
        Ok(Some(flight))
    }

    /// Runs the finder in a task of its own (so it outlives a caller that stops waiting),
    /// records the outcome, then leaves the table of flights.
    fn start_lookup(&self, key: Key, payer: LookupPayer, source: ChangeSource) -> Flight {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let domain = key.0.as_str();
            let outcome = crate::clean::outcome(inner.finder.find(domain).await);
            let recorded = inner
                .store
                .record_lookup(
                    &payer.client_id,
                    payer.source_ip,
                    domain,
                    outcome.clone(),
                    source,
                )
                .await;
            inner.flights.lock().await.remove(&key);
            match recorded {
                Ok(job_id) => {
                    tracing::info!(domain, %job_id, source = source.as_str(), "on-demand icon lookup");
                    Some(Arc::new(outcome))
                }
                Err(err) => {
                    tracing::error!(domain, error = %err, "could not record an on-demand lookup");
                    None
                }
            }
        });
        task.map(Result::ok).map(Option::flatten).boxed().shared()
    }
}
