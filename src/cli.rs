//! The command line: `serve` (default), `worker`, `migrate`, `find`, `schema`, `openapi`, `keys`.

use crate::app::{Application, Roles};
use crate::config::Config;
use crate::domain::Domain;
use crate::finder::{FindOutcome, Finder};
use crate::store::Store;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Finds the favicons of many websites at once.
#[derive(Parser, Debug)]
#[command(name = "favicon-finder", version, about)]
pub struct Cli {
    /// What to run; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API (GraphQL, REST, CSV, health) and run an in-process worker pool.
    Serve {
        /// Serve the API only; leave the work to `worker` processes.
        #[arg(long)]
        no_worker: bool,
    },
    /// Run the worker pool only (for scaling out).
    Worker,
    /// Apply the database migrations and exit.
    Migrate,
    /// Find favicons directly, without a server or database; one line per domain.
    Find {
        /// Domains or URLs.
        domains: Vec<String>,
        /// Read domains from a file too, one per line (`#` starts a comment).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print one JSON object per line, with every candidate.
        #[arg(long)]
        json: bool,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Print the REST API's OpenAPI 3.1 document (what `/openapi.json` serves).
    Openapi,
    /// Manage API keys (create, list, revoke).
    Keys {
        /// What to do with keys.
        #[command(subcommand)]
        command: crate::auth::cli::KeysCommand,
    },
}

/// Runs the command line and turns failures into an exit code and a message.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Schema) = cli.command {
        print!("{}", crate::api::graphql::sdl());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Openapi) = cli.command {
        print!("{}", crate::api::openapi::json());
        return ExitCode::SUCCESS;
    }
    // A missing .env is normal; a malformed one is worth saying.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: cannot read .env: {e}");
        return ExitCode::FAILURE;
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the trace exporter's task and channel live on it.
    let telemetry = match runtime.block_on(async { crate::telemetry::init(&config) }) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: cannot start the trace exporter: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(
        cli.command.unwrap_or(Command::Serve { no_worker: false }),
        config,
    ));
    runtime.block_on(telemetry.flush());
    // Dropping the runtime would wait for every blocking task without limit (a connect or
    // lookup to a database that went away, say); the grace period is already spent.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { no_worker } => {
            let app = Application::build(
                config,
                Roles {
                    api: true,
                    worker: !no_worker,
                },
            )
            .await?;
            app.run_until_stopped(shutdown_on_signal()).await?;
        }
        Command::Worker => {
            let app = Application::build(
                config,
                Roles {
                    api: false,
                    worker: true,
                },
            )
            .await?;
            app.run_until_stopped(shutdown_on_signal()).await?;
        }
        Command::Migrate => {
            let store = Store::connect(&config.database_url, 1).await?;
            store.migrate().await?;
            tracing::info!("migrations applied");
        }
        Command::Find {
            domains,
            file,
            json,
        } => return find(config, domains, file, json).await,
        Command::Keys { command } => {
            let store = Store::connect(&config.database_url, 1).await?;
            if config.run_migrations {
                store.migrate().await?;
            }
            // Keys are created, listed and revoked here, never signed into links: any signer
            // will do.
            let accounts = crate::auth::Accounts::new(
                store,
                crate::auth::LinkSigner::new(None, Default::default()),
            );
            return crate::auth::cli::run(accounts, command, &mut std::io::stdout().lock()).await;
        }
        Command::Schema | Command::Openapi => {
            unreachable!("handled before configuration is read")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A token cancelled at the first SIGINT or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received; shutting down"),
            _ = term => tracing::info!("SIGTERM received; shutting down"),
        }
        cancel.cancel();
    });
    token
}

/// `find`: runs the finder on each domain, in input order, printing as results arrive.
async fn find(
    config: Config,
    mut inputs: Vec<String>,
    file: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        inputs.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    if inputs.is_empty() {
        anyhow::bail!("no domains given: pass them as arguments or with --file");
    }
    let total = inputs.len();
    let finder = std::sync::Arc::new(Finder::new(config.finder())?);
    let concurrency = config.worker_concurrency.max(1);
    let mut results = futures::stream::iter(inputs)
        .map(|input| {
            let finder = finder.clone();
            async move {
                match Domain::parse(&input) {
                    Ok(domain) => {
                        let outcome = finder.find(domain.as_str()).await;
                        (domain.to_string(), Ok(outcome))
                    }
                    Err(e) => (input, Err(e.to_string())),
                }
            }
        })
        .buffered(concurrency);
    let mut progress = Progress::new(total);
    let mut any_invalid = false;
    let stdout = std::io::stdout();
    while let Some((domain, outcome)) = results.next().await {
        let line = match &outcome {
            Ok(found) => format_find_line(&domain, Some(found), None, json),
            Err(reason) => {
                any_invalid = true;
                format_find_line(&domain, None, Some(reason), json)
            }
        };
        // Results printed to the same terminal go above the bar, not through it.
        progress.suspend(|| -> std::io::Result<()> {
            let mut out = stdout.lock();
            writeln!(out, "{line}")?;
            out.flush()
        })?;
        progress.finished(!matches!(outcome, Ok(Ok(_))));
    }
    progress.summary();
    Ok(if any_invalid {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `find`'s progress on stderr: a bar with done, failed, rate and ETA, then a one-line
/// summary; only for a person watching (stderr a terminal) and a run of more than one
/// domain. Piped, it is nothing, so scripts see exactly the result lines.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    failed: u64,
    started: std::time::Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        use std::io::IsTerminal;
        let bar = (total > 1 && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            let style = indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} done, {msg} failed, {per_sec}, ETA {eta}",
            );
            if let Ok(style) = style {
                bar.set_style(style);
            }
            bar.set_message("0");
            bar
        });
        Self {
            bar,
            failed: 0,
            started: std::time::Instant::now(),
        }
    }

    /// Runs `f` with the bar cleared from the screen, so printed lines stay readable.
    fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// One more domain finished, found or not.
    fn finished(&mut self, failed: bool) {
        if let Some(bar) = &self.bar {
            self.failed += u64::from(failed);
            bar.set_message(self.failed.to_string());
            bar.inc(1);
        }
    }

    /// Replaces the bar with one summary line.
    fn summary(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            let done = bar.position();
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "{done} domains in {secs:.1} s: {} found, {} failed ({:.1}/s)",
                done - self.failed,
                self.failed,
                done as f64 / secs.max(0.001)
            );
        }
    }
}

/// One output line of `find`: tab-separated text, or a JSON object.
pub fn format_find_line(
    domain: &str,
    outcome: Option<&FindOutcome>,
    invalid: Option<&str>,
    json: bool,
) -> String {
    match (outcome, json) {
        (Some(Ok(found)), false) => format!("{domain}\tsuccess\t{}", found.favicon_url),
        (Some(Err(err)), false) => {
            format!(
                "{domain}\tfailed\t{}: {}",
                err.category.as_str(),
                err.message
            )
        }
        (None, false) => format!("{domain}\tinvalid\t{}", invalid.unwrap_or_default()),
        (Some(Ok(found)), true) => serde_json::json!({
            "domain": domain,
            "status": "success",
            "favicon_url": found.favicon_url,
            "final_url": found.final_url,
            "mime": found.mime,
            "width": found.width,
            "height": found.height,
            "candidates": found.candidates,
        })
        .to_string(),
        (Some(Err(err)), true) => serde_json::json!({
            "domain": domain,
            "status": "failed",
            "error_code": err.category.as_str(),
            "error": err.message,
            "final_url": err.final_url,
            "candidates": err.candidates,
        })
        .to_string(),
        (None, true) => serde_json::json!({
            "domain": domain,
            "status": "invalid",
            "error": invalid.unwrap_or_default(),
        })
        .to_string(),
    }
}
