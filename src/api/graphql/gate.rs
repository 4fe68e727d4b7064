//! What one GraphQL operation may take from the database: a cost for every field that reads
//! it, so aliases cannot multiply reads past `GRAPHQL_MAX_COMPLEXITY`, and a cap on the
//! connections it holds at once, so the reads it is allowed cannot take the whole pool.
//!
//! Fields of a query resolve concurrently; before the cap, 4,999 aliases of a one-row count
//! took every connection of the pool, and another client's `GET /jobs/{id}` waited 12–15 s
//! for a 1 ms read.

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::{Context, Request, ServerResult};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a field that reads the database adds to an operation's complexity, in place of the
/// 1 every field costs. The default `GRAPHQL_MAX_COMPLEXITY` (10,000) so allows about a
/// hundred reads in one request: more than any screen needs, far fewer than it takes to
/// keep a database busy.
pub const DB_FIELD_COST: usize = 100;

/// Database connections one operation may hold at once. Two let a request's reads overlap a
/// little and leave the rest of the pool to every other request; a pool smaller than three
/// cannot protect anyone, whatever this is.
pub const DB_CONNECTIONS_PER_OPERATION: usize = 2;

/// One operation's share of the pool, in its data: every resolver that reads the database
/// waits for a turn ([`db_turn`]) and holds it while it reads.
#[derive(Clone)]
struct DbGate(Arc<Semaphore>);

/// Waits for the operation's turn at the database; the turn lasts while the returned permit
/// is held (a resolver's body). `None` where no gate was set up (an operation run outside
/// the schema's extensions), which is then not capped.
pub(super) async fn db_turn(c: &Context<'_>) -> Option<OwnedSemaphorePermit> {
    let gate = c.data_opt::<DbGate>()?;
    // The semaphore is never closed, so acquiring cannot fail.
    gate.0.clone().acquire_owned().await.ok()
}

/// Installs a fresh [`DbGate`] in every operation, over HTTP or WebSocket alike.
pub struct DbGateFactory;

impl ExtensionFactory for DbGateFactory {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DbGateExtension)
    }
}

/// Gives each request its own gate before it runs.
struct DbGateExtension;

#[async_trait::async_trait]
impl Extension for DbGateExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let gate = DbGate(Arc::new(Semaphore::new(DB_CONNECTIONS_PER_OPERATION)));
        next.run(ctx, request.data(gate)).await
    }
}
