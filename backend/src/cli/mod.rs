//! The `tributary` command: `serve`, `rules check`, `dlq …`, `privacy …`, `send`. `docs/CLI.md` is its
//! reference.

mod dlq;
mod privacy;
mod rules;
mod send;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Tributary: collect events from web, mobile and server apps and deliver each one, without
/// loss, to the destinations that want it.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline in one process: ingest, durable log, routing, delivery, DLQ.
    Serve(ServeArgs),
    /// Routing rules.
    Rules {
        /// What to do with them.
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Inspect, back up, redrive or purge the dead-letter queue (works while `serve` runs).
    Dlq(DlqArgs),
    /// Delete or suppress a user's events, and show the suppression list and the audit trail
    /// (works while `serve` runs).
    Privacy(PrivacyArgs),
    /// Send demo traffic to a running server through the server SDK (tributary-server).
    Send(SendArgs),
}

/// `tributary privacy …`.
#[derive(Debug, clap::Args)]
pub struct PrivacyArgs {
    /// The configuration file (default: ./tributary.toml if present, else built-in defaults).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// AWS mode: keep the suppression list in this S3 object (`s3://BUCKET/KEY`, beside the
    /// rules; the router reads it) instead of the data dir; needs a build with the `aws`
    /// feature. Deletions then clean only the configured destinations.
    #[arg(long, value_name = "s3://BUCKET/KEY", global = true)]
    pub s3: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: PrivacyCommand,
}

/// Whose events a privacy command is about (at least one; each may repeat).
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = true)]
pub struct SubjectArgs {
    /// A user id (the events' `user_id`).
    #[arg(long = "user", value_name = "ID")]
    pub user_ids: Vec<String>,
    /// An anonymous id (the events' `anonymous_id`).
    #[arg(long = "anonymous-id", value_name = "ID")]
    pub anonymous_ids: Vec<String>,
}

/// The privacy subcommands.
#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// Delete the events of these users from the log, the DLQ and every destination that can
    /// delete (SQLite, PostgreSQL, JSON Lines), and record the request.
    Delete {
        /// Whose events.
        #[command(flatten)]
        subjects: SubjectArgs,
        /// Also suppress them (drop their future events).
        #[arg(long)]
        suppress: bool,
        /// Why, for the audit trail.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Print the audit record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drop these users' future events at the ingest (counted, answered as accepted).
    Suppress {
        /// Whose events.
        #[command(flatten)]
        subjects: SubjectArgs,
        /// Why, for the audit trail.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Collect these users' events again.
    Unsuppress {
        /// Whose events.
        #[command(flatten)]
        subjects: SubjectArgs,
        /// Why, for the audit trail.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Show the suppressed users.
    List {
        /// Print the whole suppression list file (JSON), deletions included.
        #[arg(long)]
        json: bool,
    },
    /// Show the audit trail of privacy requests.
    Requests {
        /// One JSON object per line, as stored.
        #[arg(long)]
        json: bool,
    },
}

/// `tributary serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (default: ./tributary.toml if present, else built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen on this address instead of `server.listen` (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Also consume a Kinesis stream (`kinesis:STREAM`): its events are routed and delivered
    /// like those the ingest accepts; checkpoints in the data dir. Needs the `aws` feature.
    #[arg(long, value_name = "kinesis:STREAM")]
    pub source: Option<String>,
    /// Log lines as text or JSON (to stderr).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// `tributary rules …`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check a rules file's syntax and structure (and, with --config, that every destination
    /// exists); errors are printed as FILE:LINE:COLUMN: message.
    Check {
        /// The rules file.
        file: PathBuf,
        /// Also check destination names against this configuration.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// `tributary dlq …`.
#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    /// The configuration file (default: ./tributary.toml if present, else built-in defaults).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// An SQS queue (AWS mode's DLQs) instead of the local DLQ; needs a build with the `aws`
    /// feature. Credentials and region from the standard AWS chain.
    #[arg(long, value_name = "URL", global = true)]
    pub queue: Option<String>,
    /// With `--queue`: the suppression list `redrive` honours is this S3 object
    /// (`s3://BUCKET/KEY`, the one the router reads) instead of the data dir's.
    #[arg(
        long,
        value_name = "s3://BUCKET/KEY",
        global = true,
        requires = "queue"
    )]
    pub suppressions: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// The DLQ subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the messages: id, destination, events, attempts, error.
    List {
        /// Only this destination's messages.
        #[arg(long, value_name = "NAME")]
        destination: Option<String>,
    },
    /// Append every message to a backup file (one JSON object per line).
    Backup {
        /// The file to append to.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Remove the messages once they are written.
        #[arg(long)]
        purge: bool,
        /// Only this destination's messages.
        #[arg(long, value_name = "NAME")]
        destination: Option<String>,
    },
    /// Deliver the messages again; what fails again stays in the DLQ with attempts raised.
    Redrive {
        /// Only this destination's messages (required for bare arrays of events).
        #[arg(long, value_name = "NAME")]
        destination: Option<String>,
        /// Read messages from a backup file instead of the DLQ.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Show what would be redriven without delivering anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete the messages.
    Purge {
        /// Only this destination's messages.
        #[arg(long, value_name = "NAME")]
        destination: Option<String>,
    },
}

/// `tributary send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// How many events.
    #[arg(long, default_value_t = 300)]
    pub count: u64,
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub endpoint: String,
    /// The write key.
    #[arg(long, default_value = "dev-write-key", env = "TRIBUTARY_WRITE_KEY")]
    pub write_key: String,
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    };
    init_tracing(log_format, matches!(cli.command, Command::Serve(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tributary: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Rules {
                command: RulesCommand::Check { file, config },
            } => rules::check(&file, config.as_deref()),
            Command::Dlq(args) => dlq::run(args).await,
            Command::Privacy(args) => privacy::run(args).await,
            Command::Send(args) => send::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tributary: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat, serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
