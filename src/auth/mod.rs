//! Accounts: API keys, the caller a request acts for, and signed download links.
//!
//! A key is `ffk_` and 43 characters of base64url (32 random bytes). It is shown once, when
//! created, and stored only as its SHA-256: the token is random and long, so a slow password
//! hash would add nothing but latency, and a hash lets the lookup be an index probe. Keys are
//! named everywhere else (lists, logs, errors) by their id.
//!
//! The adapters (`api/auth.rs`) turn a request's key into a [`Caller`]; the core asks the
//! caller which client it acts for ([`Caller::client_for`]) and whether it may see a job
//! ([`Caller::can_see`]).

pub mod cli;
pub mod signed;

use crate::entities::api_key;
use crate::error::{AppError, AppResult, Code};
use crate::model::{Fields, parse_client_id};
use crate::store::{NewKey, Store};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub use signed::LinkSigner;

/// The start of every generated key, so a leaked one is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "ffk_";
/// Random bytes in a generated key.
const KEY_BYTES: usize = 32;
/// Characters of a key kept in clear (`ffk_` and four more) so a person can tell keys apart.
const SHOWN_PREFIX_LEN: usize = KEY_PREFIX.len() + 4;
/// The longest key looked up; anything longer is refused without a query.
const MAX_KEY_LEN: usize = 512;
/// A key's `last_used_at` is written at most this often: a busy key must not turn every read
/// into a write.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// The name of the key `BOOTSTRAP_API_KEY` keeps.
pub const BOOTSTRAP_KEY_NAME: &str = "BOOTSTRAP_API_KEY";
/// The client the bootstrap key acts for when it acts for itself.
pub const BOOTSTRAP_CLIENT: &str = "admin";

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Create jobs.
    Submit,
    /// Read jobs, results, CSV and progress.
    Read,
    /// Everything, for any client.
    Admin,
    /// Create jobs of `high` priority (with `submit`); without it a key's jobs are at most
    /// `normal`.
    Priority,
}

impl Scope {
    /// The name used on the command line and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Read => "read",
            Self::Admin => "admin",
            Self::Priority => "priority",
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "submit" => Ok(Self::Submit),
            "read" => Ok(Self::Read),
            "admin" => Ok(Self::Admin),
            "priority" => Ok(Self::Priority),
            other => Err(format!(
                "unknown scope {other:?}; expected submit, read, admin or priority"
            )),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scopes as stored: sorted, space-separated.
pub fn format_scopes(scopes: &[Scope]) -> String {
    let mut scopes = scopes.to_vec();
    scopes.sort_unstable();
    scopes.dedup();
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Scopes from their stored form; unknown words are dropped, so a row written by a newer
/// version grants nothing this one does not know.
pub fn parse_scopes(stored: &str) -> Vec<Scope> {
    stored
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// A key just generated: the only moment the key itself exists outside its holder.
pub struct GeneratedKey {
    /// The key, to show once.
    pub key: String,
    /// Its first characters, stored in clear.
    pub prefix: String,
    /// Its SHA-256, stored.
    pub hash: String,
}

/// Never print the key itself.
impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A new random key.
pub fn generate_key() -> GeneratedKey {
    let mut bytes = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    GeneratedKey {
        prefix: shown_prefix(&key),
        hash: hash_key(&key),
        key,
    }
}

/// The lower-case hex SHA-256 of a key.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

fn shown_prefix(key: &str) -> String {
    key.chars().take(SHOWN_PREFIX_LEN).collect()
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Who a request acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No key, in `AUTH_MODE=off`: acts as before keys existed.
    Anonymous,
    /// A valid, unrevoked key.
    Key(KeyCaller),
    /// A valid signed download link: may read that one job's CSV and nothing else.
    Link {
        /// The job the link was signed for.
        job_id: Uuid,
    },
}

/// What a valid key says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCaller {
    /// The key's id (may be logged; the key may not).
    pub key_id: Uuid,
    /// The client the key acts for.
    pub client_id: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// Whether the caller holds an `admin` key.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Key(key) if key.scopes.contains(&Scope::Admin))
    }

    /// The key's id, for logs.
    pub fn key_id(&self) -> Option<Uuid> {
        match self {
            Self::Key(key) => Some(key.key_id),
            _ => None,
        }
    }

    /// Whether the caller may do `scope`. Without a key (`AUTH_MODE=off`) everything but
    /// admin is allowed; `admin` includes every scope.
    pub fn may(&self, scope: Scope) -> bool {
        match self {
            Self::Anonymous => scope != Scope::Admin,
            Self::Key(key) => key.scopes.contains(&scope) || key.scopes.contains(&Scope::Admin),
            Self::Link { .. } => false,
        }
    }

    /// Refuses a caller that may not do `scope` (see [`Caller::may`]).
    pub fn require(&self, scope: Scope) -> AppResult<()> {
        if self.may(scope) {
            Ok(())
        } else {
            Err(AppError::Forbidden {
                code: Code::Forbidden,
                message: format!("this key does not have the `{scope}` scope"),
            })
        }
    }

    /// The client a request acts for. `requested` is the `client_id` (`clientId`) the caller
    /// wrote, already validated: kept for compatibility, it must name the key's own client;
    /// an admin key may act for any client. Without a key it is required, as before.
    pub fn client_for(&self, requested: Option<&str>) -> AppResult<String> {
        match (self, requested) {
            (Self::Anonymous, Some(requested)) => Ok(requested.to_owned()),
            (Self::Anonymous, None) => Err(AppError::bad_request(
                Code::InvalidInput,
                "client_id is required when no API key is sent",
            )),
            (Self::Key(key), None) => Ok(key.client_id.clone()),
            (Self::Key(key), Some(requested)) if requested == key.client_id || self.is_admin() => {
                Ok(requested.to_owned())
            }
            (Self::Key(key), Some(requested)) => Err(AppError::Forbidden {
                code: Code::Forbidden,
                message: format!(
                    "this key acts for client {:?}; it cannot act for {requested:?} (omit client_id, or send that client's key)",
                    key.client_id
                ),
            }),
            (Self::Link { .. }, _) => Err(AppError::Forbidden {
                code: Code::Forbidden,
                message: "a download link only downloads its job's CSV".into(),
            }),
        }
    }

    /// The one client whose data the caller may read, or `None` for a caller that reads every
    /// client's (no key in `AUTH_MODE=off`, an admin key) or none (a download link, which
    /// [`Caller::require`] refuses first).
    pub fn own_client(&self) -> Option<&str> {
        match self {
            Self::Key(key) if !self.is_admin() => Some(&key.client_id),
            _ => None,
        }
    }

    /// Whether the caller may see job `job_id` of client `job_client`. Anyone else is told
    /// the job does not exist (404), so ids reveal nothing.
    pub fn can_see(&self, job_id: Uuid, job_client: &str) -> bool {
        match self {
            Self::Anonymous => true,
            Self::Key(key) => key.client_id == job_client || self.is_admin(),
            Self::Link { job_id: linked } => *linked == job_id,
        }
    }
}

/// Keys and links: the one handle the adapters authenticate through.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    signer: std::sync::Arc<LinkSigner>,
    /// Every live key as last read, and when: see [`Accounts::still_valid`].
    live_keys: std::sync::Arc<tokio::sync::Mutex<Option<LiveKeys>>>,
}

/// The unrevoked keys by id, as read at one moment.
type LiveKeys = (
    tokio::time::Instant,
    std::sync::Arc<HashMap<Uuid, KeyCaller>>,
);

/// How old the keys [`Accounts::still_valid`] answers from may be: one read of the key table
/// per process this often, however many connections ask.
pub const LIVE_KEYS_MAX_AGE: Duration = Duration::from_secs(1);

impl Accounts {
    /// A handle over the store, signing links with `signer`.
    pub fn new(store: Store, signer: LinkSigner) -> Self {
        Self {
            store,
            signer: std::sync::Arc::new(signer),
            live_keys: Default::default(),
        }
    }

    /// How many keys are issued and not revoked.
    pub async fn live_key_count(&self) -> AppResult<usize> {
        let keys = self.store.list_api_keys().await?;
        Ok(keys.iter().filter(|row| row.revoked_at.is_none()).count())
    }

    /// Whether `key` still stands as it did when its connection began: not revoked, same
    /// client, same scopes. For what outlives one request (a WebSocket authenticates once);
    /// answered from a read of every key at most [`LIVE_KEYS_MAX_AGE`] old, so a thousand
    /// connections asking cost one query.
    pub async fn still_valid(&self, key: &KeyCaller) -> AppResult<bool> {
        let mut live = self.live_keys.lock().await;
        let now = tokio::time::Instant::now();
        let fresh = match &*live {
            Some((read_at, keys)) if now.duration_since(*read_at) < LIVE_KEYS_MAX_AGE => {
                keys.clone()
            }
            _ => {
                let read = match self.store.list_api_keys().await {
                    Ok(rows) => rows,
                    // The database is away: answer from what was read last, for another
                    // period, rather than have every connection ask again at once.
                    Err(e) => match &mut *live {
                        Some((read_at, keys)) => {
                            *read_at = now;
                            return Ok(keys.get(&key.key_id) == Some(key));
                        }
                        None => return Err(e.into()),
                    },
                };
                let keys: HashMap<Uuid, KeyCaller> = read
                    .into_iter()
                    .filter(|row| row.revoked_at.is_none())
                    .map(|row| {
                        let key = KeyCaller {
                            key_id: row.id,
                            client_id: row.client_id,
                            scopes: parse_scopes(&row.scopes),
                        };
                        (key.key_id, key)
                    })
                    .collect();
                let keys = std::sync::Arc::new(keys);
                *live = Some((now, keys.clone()));
                keys
            }
        };
        Ok(fresh.get(&key.key_id) == Some(key))
    }

    /// The signer of download links.
    pub fn signer(&self) -> &LinkSigner {
        &self.signer
    }

    /// The caller a key stands for; `None` for an unknown, malformed or revoked key. Writes
    /// nothing but, at most once per [`TOUCH_EVERY`], the key's `last_used_at`.
    pub async fn authenticate(&self, key: &str) -> AppResult<Option<KeyCaller>> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Ok(None);
        }
        let hash = hash_key(key);
        let Some(row) = self.store.api_key_by_hash(&hash).await? else {
            return Ok(None);
        };
        // The database matched on the hash already; comparing again in constant time costs
        // nothing and keeps the check independent of how the database compares strings.
        if !secrets_equal(row.hash.as_bytes(), hash.as_bytes()) || row.revoked_at.is_some() {
            return Ok(None);
        }
        let now = crate::store::now();
        let stale = row.last_used_at.is_none_or(|at| {
            now.signed_duration_since(at).to_std().unwrap_or_default() >= TOUCH_EVERY
        });
        if stale {
            // A lost `last_used_at` is not worth failing the request for.
            if let Err(e) = self.store.touch_api_key(row.id, now).await {
                tracing::warn!(key_id = %row.id, error = %e, "could not note the key's last use");
            }
        }
        Ok(Some(KeyCaller {
            key_id: row.id,
            client_id: row.client_id,
            scopes: parse_scopes(&row.scopes),
        }))
    }

    /// Creates a key for `client_id` (a client name as jobs take it); returns its row and the
    /// key, which is never stored.
    pub async fn create_key(
        &self,
        client_id: &str,
        name: &str,
        scopes: &[Scope],
    ) -> AppResult<(api_key::Model, String)> {
        let client_id = parse_client_id(client_id, Fields::REST)?;
        let generated = generate_key();
        let row = self
            .store
            .create_api_key(NewKey {
                client_id,
                name: name.to_owned(),
                scopes: format_scopes(scopes),
                hash: generated.hash,
                prefix: generated.prefix,
            })
            .await?;
        Ok((row, generated.key))
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn list_keys(&self) -> AppResult<Vec<api_key::Model>> {
        Ok(self.store.list_api_keys().await?)
    }

    /// Revokes key `id`; its row, or `None` when there is no such key.
    pub async fn revoke_key(&self, id: Uuid) -> AppResult<Option<api_key::Model>> {
        Ok(self.store.revoke_api_key(id).await?)
    }

    /// Creates, or keeps, the admin key `BOOTSTRAP_API_KEY` holds, and revokes an earlier
    /// bootstrap key it replaced. A bootstrap key revoked by hand stays revoked.
    pub async fn bootstrap(&self, key: &str) -> anyhow::Result<Uuid> {
        let row = self
            .store
            .ensure_api_key(NewKey {
                client_id: BOOTSTRAP_CLIENT.to_owned(),
                name: BOOTSTRAP_KEY_NAME.to_owned(),
                scopes: format_scopes(&[Scope::Admin]),
                hash: hash_key(key),
                prefix: shown_prefix(key),
            })
            .await?;
        if row.revoked_at.is_some() {
            tracing::warn!(key_id = %row.id, "BOOTSTRAP_API_KEY names a revoked key; it stays revoked");
        }
        let replaced = self
            .store
            .revoke_other_named_keys(BOOTSTRAP_KEY_NAME, row.id)
            .await?;
        if replaced > 0 {
            tracing::info!(key_id = %row.id, replaced, "BOOTSTRAP_API_KEY changed; the earlier bootstrap key is revoked");
        }
        Ok(row.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_recognisable() {
        let a = generate_key();
        let b = generate_key();
        assert!(a.key.starts_with(KEY_PREFIX));
        assert_eq!(a.key.len(), KEY_PREFIX.len() + 43);
        assert_ne!(a.key, b.key);
        assert_eq!(a.hash, hash_key(&a.key));
        assert_eq!(a.hash.len(), 64);
        assert!(a.key.starts_with(&a.prefix));
        assert!(!format!("{a:?}").contains(&a.key));
    }

    #[test]
    fn scopes_round_trip_and_unknown_words_grant_nothing() {
        let stored = format_scopes(&[Scope::Read, Scope::Submit, Scope::Read]);
        assert_eq!(stored, "submit read");
        assert_eq!(parse_scopes("read admin root"), [Scope::Read, Scope::Admin]);
        assert!("root".parse::<Scope>().is_err());
    }

    fn key(client: &str, scopes: &[Scope]) -> Caller {
        Caller::Key(KeyCaller {
            key_id: Uuid::nil(),
            client_id: client.into(),
            scopes: scopes.to_vec(),
        })
    }

    #[test]
    fn the_client_comes_from_the_key() {
        let acme = key("acme", &[Scope::Submit, Scope::Read]);
        assert_eq!(acme.client_for(None).unwrap(), "acme");
        assert_eq!(acme.client_for(Some("acme")).unwrap(), "acme");
        let err = acme.client_for(Some("globex")).unwrap_err();
        assert_eq!(err.code(), Code::Forbidden);
        let admin = key("ops", &[Scope::Admin]);
        assert_eq!(admin.client_for(Some("globex")).unwrap(), "globex");
        assert_eq!(Caller::Anonymous.client_for(Some("c1")).unwrap(), "c1");
        assert!(Caller::Anonymous.client_for(None).is_err());
    }

    #[test]
    fn visibility_and_scopes() {
        let job = Uuid::now_v7();
        let acme = key("acme", &[Scope::Read]);
        assert!(acme.can_see(job, "acme"));
        assert!(!acme.can_see(job, "globex"));
        assert!(key("ops", &[Scope::Admin]).can_see(job, "globex"));
        assert!(Caller::Anonymous.can_see(job, "anyone"));
        let link = Caller::Link { job_id: job };
        assert!(link.can_see(job, "acme"));
        assert!(!link.can_see(Uuid::now_v7(), "acme"));
        assert!(acme.require(Scope::Read).is_ok());
        assert!(!key("acme", &[Scope::Submit]).may(Scope::Read));
        assert!(!link.may(Scope::Read));
        assert_eq!(
            acme.require(Scope::Submit).unwrap_err().code(),
            Code::Forbidden
        );
        assert!(key("ops", &[Scope::Admin]).require(Scope::Submit).is_ok());
        assert!(Caller::Anonymous.require(Scope::Admin).is_err());
    }
}
