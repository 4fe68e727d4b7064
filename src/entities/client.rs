//! `client`: who submitted jobs, by the name they gave themselves.

use sea_orm::entity::prelude::*;

/// One row of `client`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "client")]
pub struct Model {
    /// Our id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The caller's name for itself (`client_id` in the API); unique.
    #[sea_orm(unique)]
    pub client_id: String,
    /// When first seen.
    pub created_at: DateTimeUtc,
    /// When last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `client`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The client's jobs.
    #[sea_orm(has_many = "super::job::Entity")]
    Job,
}

impl Related<super::job::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Job.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
