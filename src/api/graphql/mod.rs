//! The GraphQL API: `createJob`, `job`, `jobs` and paginated `results`; webhooks
//! (`webhooks`, `webhookDeliveries`, `createWebhook` and the rest).
//!
//! Resolvers parse their arguments, call the core ([`crate::jobs::Jobs`],
//! [`crate::webhooks::Webhooks`]) and map the answer;
//! every rule (validation, paging, not-found) lives there and is shared with the REST API. Layout: `types` (the objects and inputs),
//! `query`, `mutation`, `subscription` (the roots), `errors` (a code on every error), `gate`
//! (what one operation may take from the database), `over_http` (the `/graphql` handlers:
//! GET and POST, media types and status codes).

use crate::api::AppState;
use crate::auth::Caller;
use crate::error::{AppError, Code};
use crate::jobs::{self, Entry, Fields, NewJob, ResultPage};
use crate::model::webhook::WebhookEvent;
use crate::model::{JobStatus, Page, Priority, ProgressEvent, ResultColumns};
use async_graphql::{Context, ID, InputObject, Object, Result, Schema, SimpleObject, Subscription};
use futures::{Stream, StreamExt};
use std::sync::Arc;

/// The assembled schema.
pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Builds the schema; resolvers reach the service through the [`AppState`] in its data
/// (none when only the SDL is wanted).
pub fn build_schema(state: Option<AppState>) -> AppSchema {
    let builder = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .extension(ErrorCodesFactory)
        .extension(DbGateFactory)
        .extension(timing::TimingFactory);
    match state {
        // INTROSPECTION=false: the schema is not browsable by whoever holds a key, and a
        // typo's "Did you mean …?" would list its fields and arguments all the same.
        Some(state) if !state.config.introspection => builder
            .disable_introspection()
            .disable_suggestions()
            .limit_depth(state.config.graphql_max_depth)
            .limit_complexity(state.config.graphql_max_complexity)
            .data(SubscriptionCaps::new(&state.config))
            .data(state)
            .finish(),
        Some(state) => builder
            .limit_depth(state.config.graphql_max_depth)
            .limit_complexity(state.config.graphql_max_complexity)
            .data(SubscriptionCaps::new(&state.config))
            .data(state)
            .finish(),
        None => builder.finish(),
    }
}

/// Subscriptions running on one WebSocket connection, against `WS_MAX_SUBSCRIPTIONS`.
#[derive(Clone)]
pub struct ConnectionSubscriptions {
    running: Arc<std::sync::atomic::AtomicUsize>,
    limit: usize,
}

impl ConnectionSubscriptions {
    /// A fresh count for a new connection.
    pub fn new(limit: usize) -> Self {
        Self {
            running: Arc::default(),
            limit,
        }
    }

    /// Takes a slot, or says the connection is full.
    fn enter(&self) -> Result<ConnectionSlot, AppError> {
        use std::sync::atomic::Ordering;
        let taken = self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(ConnectionSlot(self.running.clone())),
            Err(_) => Err(AppError::bad_request(
                Code::TooManySubscriptions,
                format!(
                    "this connection already runs {} subscriptions, the most allowed (WS_MAX_SUBSCRIPTIONS); open another connection or stop one",
                    self.limit
                ),
            )),
        }
    }
}

/// A subscription's place on its connection, given back when the stream ends.
struct ConnectionSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Subscriptions running in this process by client address and by API key, across every
/// connection, against `WS_MAX_SUBSCRIPTIONS_PER_IP` and `WS_MAX_SUBSCRIPTIONS_PER_KEY`: the
/// per-connection cap alone let one address open 10,000 subscriptions over 1,000 connections.
#[derive(Clone)]
pub struct SubscriptionCaps(Arc<CapsInner>);

/// The counts behind [`SubscriptionCaps`], shared by every connection.
struct CapsInner {
    /// `WS_MAX_SUBSCRIPTIONS_PER_IP`.
    per_address: usize,
    /// `WS_MAX_SUBSCRIPTIONS_PER_KEY`.
    per_key: usize,
    /// Open subscriptions by holder; a holder with none is removed, so the map stays as
    /// small as the set of current subscribers.
    running: std::sync::Mutex<std::collections::HashMap<Holder, usize>>,
}

/// Who a subscription is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Holder {
    /// A client address: IPv4 as is, IPv6 by its /64 (one host usually holds a whole /64).
    Address(std::net::IpAddr),
    /// An API key, by its id.
    Key(uuid::Uuid),
}

impl Holder {
    /// The holder for address `ip`: the same rule as the WebSocket connection cap's.
    fn address(ip: std::net::IpAddr) -> Self {
        Self::Address(crate::api::ws::client_key(ip))
    }
}

impl SubscriptionCaps {
    /// Empty counts under the configured caps.
    pub fn new(config: &crate::config::Config) -> Self {
        Self(Arc::new(CapsInner {
            per_address: config.ws_max_subscriptions_per_ip,
            per_key: config.ws_max_subscriptions_per_key,
            running: Default::default(),
        }))
    }

    /// Takes a place for one more subscription from `address` with key `key`, or says which
    /// cap is full; both counts go up together or neither does.
    fn enter(
        &self,
        address: Option<std::net::IpAddr>,
        key: Option<uuid::Uuid>,
    ) -> Result<CapsSlot, AppError> {
        let holders: Vec<(Holder, usize)> = address
            .map(|ip| (Holder::address(ip), self.0.per_address))
            .into_iter()
            .chain(key.map(|id| (Holder::Key(id), self.0.per_key)))
            .collect();
        let mut running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        for (holder, cap) in &holders {
            let now = running.get(holder).copied().unwrap_or(0);
            if now >= *cap {
                let (who, setting) = match holder {
                    Holder::Address(_) => ("this address", "WS_MAX_SUBSCRIPTIONS_PER_IP"),
                    Holder::Key(_) => ("this API key", "WS_MAX_SUBSCRIPTIONS_PER_KEY"),
                };
                return Err(AppError::bad_request(
                    Code::TooManySubscriptions,
                    format!(
                        "{who} already runs {now} subscriptions across its connections, the most allowed ({setting}); stop one first"
                    ),
                ));
            }
        }
        for (holder, _) in &holders {
            *running.entry(*holder).or_default() += 1;
        }
        Ok(CapsSlot {
            caps: self.clone(),
            holders: holders.into_iter().map(|(holder, _)| holder).collect(),
        })
    }
}

/// A subscription's place in the address and key counts, given back when the stream ends.
struct CapsSlot {
    /// The counts to give the place back to.
    caps: SubscriptionCaps,
    /// What the subscription was counted against: its address, its key, or both.
    holders: Vec<Holder>,
}

impl Drop for CapsSlot {
    fn drop(&mut self) {
        let mut running = self
            .caps
            .0
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for holder in &self.holders {
            if let Some(n) = running.get_mut(holder) {
                *n -= 1;
                if *n == 0 {
                    running.remove(holder);
                }
            }
        }
    }
}

/// The SDL of the schema, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    build_schema(None).sdl()
}

mod errors;
mod gate;
mod mutation;
pub mod over_http;
mod query;
mod subscription;
mod timing;
mod types;
mod watches;

pub use errors::ErrorCodesFactory;
use gate::db_turn;
pub use gate::{DB_CONNECTIONS_PER_OPERATION, DB_FIELD_COST, DbGateFactory};
pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::{JobProgress, SubscriptionRoot};
pub use types::*;
pub use watches::{CreateWatchInput, Watch};

/// The complexity of a paged field: its read ([`DB_FIELD_COST`]), and what is selected under
/// it once per row the page may hold, so aliases of `results(perPage: 500)` cannot multiply a
/// response past `GRAPHQL_MAX_COMPLEXITY`. An out-of-range `perPage` is refused by the
/// resolver; here it counts as the nearest legal size.
pub(super) fn page_cost(per_page: i64, child_complexity: usize) -> usize {
    let rows = per_page.clamp(1, crate::model::MAX_PER_PAGE as i64) as usize;
    rows.saturating_mul(child_complexity)
        .saturating_add(DB_FIELD_COST)
}

/// The complexity of a field that reads the database once for what it answers.
pub(super) fn read_cost(child_complexity: usize) -> usize {
    child_complexity.saturating_add(DB_FIELD_COST)
}

/// Who asked: the door put the [`Caller`] in an HTTP request's data, `connection_init` in a
/// WebSocket's. A request without one was let through by mistake, so it is refused.
pub(super) fn caller<'a>(c: &'a Context<'_>) -> Result<&'a Caller> {
    c.data_opt::<Caller>()
        .ok_or_else(|| AppError::Unauthorized("an API key is required".into()).into_graphql())
}

/// The address an HTTP request came from (after `TRUSTED_PROXY_HEADERS`), in its data: a
/// caller without a key is held to the hourly allowances per address too.
#[derive(Clone, Copy, Debug)]
pub struct SourceIp(pub std::net::IpAddr);

/// The [`AppState`] in the schema's data.
pub(super) fn ctx<'a>(c: &'a Context<'_>) -> &'a AppState {
    c.data_unchecked::<AppState>()
}
