//! API keys: create, list, revoke, find by hash, and note when a key was last used.
//!
//! Only the SHA-256 of a key reaches this file; the key itself never does.

use super::{Store, StoreResult, now};
use crate::entities::api_key;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, TryInsertResult,
};
use uuid::Uuid;

/// What a new key row holds, besides what the store stamps (id, creation time).
#[derive(Clone, Debug)]
pub struct NewKey {
    /// The client the key acts for.
    pub client_id: String,
    /// A label for people.
    pub name: String,
    /// Space-separated scopes.
    pub scopes: String,
    /// Lower-case hex SHA-256 of the key.
    pub hash: String,
    /// The key's first characters.
    pub prefix: String,
}

impl Store {
    /// Stores a new key.
    pub async fn create_api_key(&self, key: NewKey) -> StoreResult<api_key::Model> {
        let row = new_row(key);
        Ok(api_key::Entity::insert(row)
            .exec_with_returning(&self.db)
            .await?)
    }

    /// Stores a key unless one with the same hash exists (revoked or not), and returns the
    /// row that holds that hash: the way `BOOTSTRAP_API_KEY` is kept across restarts and
    /// replicas starting at once.
    pub async fn ensure_api_key(&self, key: NewKey) -> StoreResult<api_key::Model> {
        let hash = key.hash.clone();
        let row = new_row(key);
        let inserted = api_key::Entity::insert(row)
            .on_conflict_do_nothing_on([api_key::Column::Hash])
            .exec(&self.db)
            .await?;
        if let TryInsertResult::Empty = inserted {
            return Err(DbErr::Custom("no key row to insert".into()).into());
        }
        self.api_key_by_hash(&hash)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("the key just stored".into()).into())
    }

    /// Revokes every other key named `name` (the key `BOOTSTRAP_API_KEY` replaced); returns
    /// how many.
    pub async fn revoke_other_named_keys(&self, name: &str, keep: Uuid) -> StoreResult<u64> {
        let done = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(now()))
            .filter(api_key::Column::Name.eq(name))
            .filter(api_key::Column::Id.ne(keep))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(done.rows_affected)
    }

    /// Every key, oldest first.
    pub async fn list_api_keys(&self) -> StoreResult<Vec<api_key::Model>> {
        Ok(api_key::Entity::find()
            .order_by_asc(api_key::Column::CreatedAt)
            .order_by_asc(api_key::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Revokes a key; `None` when there is no such key. Revoking twice keeps the first time.
    pub async fn revoke_api_key(&self, id: Uuid) -> StoreResult<Option<api_key::Model>> {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(now()))
            .filter(api_key::Column::Id.eq(id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(api_key::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// The key with this hash, revoked or not.
    pub async fn api_key_by_hash(&self, hash: &str) -> StoreResult<Option<api_key::Model>> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::Hash.eq(hash))
            .one(&self.db)
            .await?)
    }

    /// Notes that a key was used at `at`, unless a later use is already noted.
    pub async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::LastUsedAt, Expr::value(at))
            .filter(api_key::Column::Id.eq(id))
            .filter(
                api_key::Column::LastUsedAt
                    .is_null()
                    .or(api_key::Column::LastUsedAt.lt(at)),
            )
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// A never-used, unrevoked row for a new key.
fn new_row(key: NewKey) -> api_key::ActiveModel {
    api_key::ActiveModel {
        id: Set(Uuid::now_v7()),
        client_id: Set(key.client_id),
        name: Set(key.name),
        scopes: Set(key.scopes),
        hash: Set(key.hash),
        prefix: Set(key.prefix),
        created_at: Set(now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
}
