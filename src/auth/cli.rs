//! `favicon-finder keys …`: create, list and revoke API keys from a shell.

use super::{Accounts, Scope, parse_scopes};
use crate::error::Code;
use clap::Subcommand;
use std::io::Write;
use std::process::ExitCode;
use uuid::Uuid;

/// `keys` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key and print it once; only its hash is stored.
    Create {
        /// The client the key acts for (the `client_id` its jobs belong to).
        #[arg(long)]
        client: String,
        /// A label for people, shown by `keys list`.
        #[arg(long, default_value = "")]
        name: String,
        /// What the key may do: `submit`, `read`, `admin` or `priority` (with `submit`, jobs of
        /// `high` priority); repeat for several (default: submit and read).
        #[arg(long = "scope", value_parser = clap::builder::ValueParser::new(parse_scope))]
        scopes: Vec<Scope>,
    },
    /// List every key: id, client, name, scopes, created, last used, revoked (never the key).
    List,
    /// Revoke a key by its id; it is refused from its next request on.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: Uuid,
    },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
}

/// Runs one `keys` subcommand through `accounts`, writing to `out`.
pub async fn run(
    accounts: Accounts,
    command: KeysCommand,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create {
            client,
            name,
            mut scopes,
        } => {
            if scopes.is_empty() {
                scopes = vec![Scope::Submit, Scope::Read];
            }
            let (row, key) = accounts
                .create_key(&client, name.trim(), &scopes)
                .await
                .map_err(|e| match e.code() {
                    // The one field a client can get wrong here.
                    Code::InvalidInput => anyhow::anyhow!("--client: {e}"),
                    _ => anyhow::anyhow!("cannot create the key: {e}"),
                })?;
            tracing::info!(key_id = %row.id, client = %row.client_id, "API key created");
            eprintln!(
                "Created key {} for client {:?} with scopes {}. It is shown only now; store it safely:",
                row.id, row.client_id, row.scopes
            );
            writeln!(out, "{key}")?;
        }
        KeysCommand::List => {
            let keys = accounts.list_keys().await?;
            writeln!(
                out,
                "id\tclient\tname\tscopes\tprefix\tcreated\tlast_used\trevoked"
            )?;
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
            };
            for key in keys {
                let scopes: Vec<&str> = parse_scopes(&key.scopes)
                    .into_iter()
                    .map(Scope::as_str)
                    .collect();
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}…\t{}\t{}\t{}",
                    key.id,
                    key.client_id,
                    if key.name.is_empty() { "-" } else { &key.name },
                    scopes.join(","),
                    key.prefix,
                    key.created_at.to_rfc3339(),
                    time(key.last_used_at),
                    time(key.revoked_at),
                )?;
            }
        }
        KeysCommand::Revoke { id } => match accounts.revoke_key(id).await? {
            Some(key) => {
                tracing::info!(key_id = %id, "API key revoked");
                eprintln!(
                    "Key {id} (client {:?}) is revoked since {}.",
                    key.client_id,
                    key.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                );
            }
            None => {
                eprintln!("error: no key with id {id}");
                return Ok(ExitCode::FAILURE);
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}
