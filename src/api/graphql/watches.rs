//! Watches over GraphQL: the `Watch` object with its paged domains and changes, and the input
//! of `createWatch`. The root fields are in `query`, `mutation` and `subscription`.

use super::*;
use crate::model::watch::{IconChangePage, WatchedDomainPage};

/// A set of domains the service re-checks every `every` seconds.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Watch {
    /// The watch as the core shows it.
    #[graphql(flatten)]
    watch: crate::model::watch::Watch,
}

impl From<crate::model::watch::Watch> for Watch {
    fn from(watch: crate::model::watch::Watch) -> Self {
        Self { watch }
    }
}

#[async_graphql::ComplexObject]
impl Watch {
    /// A page of its domains, in the order given: each one's last check and current icon.
    #[graphql(complexity = "page_cost(per_page, child_complexity)")]
    async fn domains(
        &self,
        c: &Context<'_>,
        #[graphql(default = 1)] page: i64,
        #[graphql(default = 50)] per_page: i64,
    ) -> Result<WatchedDomainPage> {
        let page = Page::new(page, per_page).map_err(AppError::into_graphql)?;
        let id = self.id()?;
        let _turn = db_turn(c).await;
        ctx(c)
            .watches
            .domains(caller(c)?, id, page)
            .await
            .map_err(AppError::into_graphql)
    }

    /// A page of the changes of its domains since it was created, newest first (reported or
    /// held back as flapping: see `IconChange.reported`).
    #[graphql(complexity = "page_cost(per_page, child_complexity)")]
    async fn changes(
        &self,
        c: &Context<'_>,
        #[graphql(default = 1)] page: i64,
        #[graphql(default = 50)] per_page: i64,
    ) -> Result<IconChangePage> {
        let page = Page::new(page, per_page).map_err(AppError::into_graphql)?;
        let id = self.id()?;
        let _turn = db_turn(c).await;
        ctx(c)
            .watches
            .changes(caller(c)?, id, page)
            .await
            .map_err(AppError::into_graphql)
    }
}

impl Watch {
    /// Its id, parsed back.
    fn id(&self) -> Result<uuid::Uuid> {
        crate::watches::parse_watch_id(&self.watch.id).map_err(AppError::into_graphql)
    }
}

/// Input of `createWatch`.
#[derive(InputObject)]
pub struct CreateWatchInput {
    /// The domains to keep fresh (parsed as a job's are; duplicates merged).
    pub domains: Vec<String>,
    /// Seconds between two checks of each domain: at least `WATCH_MIN_EVERY_SECS` (an hour
    /// by default), at most 30 days.
    pub every: i64,
    /// A name for it.
    pub name: Option<String>,
    /// The client it is for; required without an API key (the key names it otherwise, and
    /// only an admin's may name another).
    pub client_id: Option<String>,
}
