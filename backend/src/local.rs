//! Local mode: the whole pipeline in one process (`tributary serve`).
//!
//! ingest (axum) → embedded log → one delivery worker per destination → connectors → DLQ,
//! plus `/healthz`, `/metrics`, the status page and the privacy admin endpoints.
//!
//! # Invariants
//! - Nothing is served before the rules loaded, every rule names a configured destination, and
//!   every connector was built: a bad config fails at start, not at the first event.
//! - On SIGTERM or SIGINT the listener stops taking requests, requests in progress finish,
//!   workers finish their in-flight batches (a few seconds at most) and commit their offsets,
//!   then the log closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::connectors::retry::RetryPolicy;
use crate::delivery::DestinationWorker;
use crate::delivery::job::JobContext;
use crate::delivery::runtime::DeliveryRuntime;
use crate::dlq::DeadLetterQueue;
use crate::dlq::redrive::RedriveTarget;
use crate::ingest::{self, Admission, IngestState, RateLimiter, WriteKeys};
use crate::log::{EventLog, LogOptions, maintenance};
use crate::ops::metrics::Metrics;
use crate::ops::{self, AdminAccess};
use crate::privacy::requests::ErasureTarget;
use crate::privacy::{
    self, ConsentRequirement, IngestPrivacy, LiveSuppressions, PrivacyRequests, SuppressionFile,
};
use crate::routing::RoutingRules;
use crate::{clock, connectors};

/// Batches in flight (or waiting for a retry) per destination.
const JOBS_PER_DESTINATION: usize = 4;
/// How often retention runs.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// The least time between two sweeps asked for by a full log (each refused append asks).
const FULL_SWEEP_SPACING: Duration = Duration::from_secs(1);
/// How often the DLQ depth gauge is refreshed (the `dlq` commands change it from outside).
const DLQ_DEPTH_INTERVAL: Duration = Duration::from_secs(2);
/// How often the suppression list file is checked for changes made by `tributary privacy`.
pub const SUPPRESSION_INTERVAL: Duration = Duration::from_millis(500);

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration, rules or a destination is unusable.
    #[error("{0}")]
    Setup(String),
    /// The listener failed.
    #[error("cannot listen on {address}: {error}")]
    Listen {
        /// The address.
        address: String,
        /// The OS error.
        error: std::io::Error,
    },
}

/// Loads and checks the routing rules of a configuration against its destinations.
///
/// # Errors
/// The rules file's `FILE:LINE:COLUMN: message`, or why it cannot be read.
pub fn load_rules(config: &Config) -> Result<RoutingRules, String> {
    let (text, file) = config.rules_text().map_err(|error| error.to_string())?;
    let rules = RoutingRules::parse(&text, &file).map_err(|error| error.to_string())?;
    rules
        .check_destinations(config.destinations.keys().map(String::as_str))
        .map_err(|error| error.to_string())?;
    Ok(rules)
}

/// Builds every configured destination's connector.
///
/// # Errors
/// The first destination that cannot be built.
pub fn build_targets(config: &Config) -> Result<HashMap<String, RedriveTarget>, String> {
    let mut targets = HashMap::new();
    for (name, destination) in &config.destinations {
        let connector = connectors::build(name, destination).map_err(|error| error.to_string())?;
        targets.insert(
            name.clone(),
            RedriveTarget {
                connector,
                batch_size: destination.batch_size,
            },
        );
    }
    Ok(targets)
}

/// A running local pipeline.
pub struct LocalPipeline {
    /// Where it listens.
    pub address: SocketAddr,
    log: EventLog,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl LocalPipeline {
    /// Starts everything and binds the listener (`listen` overrides `server.listen`).
    ///
    /// # Errors
    /// A [`ServeError`] saying what cannot be set up.
    pub async fn start(config: &Config, listen: Option<&str>) -> Result<Self, ServeError> {
        let setup = ServeError::Setup;
        let rules = Arc::new(load_rules(config).map_err(setup)?);
        let targets = build_targets(config).map_err(setup)?;
        let options = LogOptions {
            dedup_window: config.storage.dedup_window,
            retention: config.storage.retention,
            max_bytes: config.storage.max_log_bytes,
        };
        let log = EventLog::open(&config.storage.data_dir, &options)
            .map_err(|error| setup(error.to_string()))?;
        let dlq = DeadLetterQueue::open(&config.storage.data_dir)
            .map_err(|error| setup(error.to_string()))?;
        let metrics = Arc::new(Metrics::new());
        let suppressions = Arc::new(
            LiveSuppressions::open(SuppressionFile::in_data_dir(&config.storage.data_dir))
                .map_err(|error| setup(error.to_string()))?,
        );

        let address = listen.unwrap_or(&config.server.listen).to_owned();
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|error| ServeError::Listen {
                address: address.clone(),
                error,
            })?;
        let local_address = listener
            .local_addr()
            .map_err(|error| ServeError::Listen { address, error })?;
        let access = admin_access(local_address, &config.server.admin_token_env);
        if let AdminAccess::Closed { variable } = &access {
            tracing::warn!(message = "listening beyond loopback without an admin token: / and /metrics answer 401", variable = %variable);
        }

        let ingest_state = Arc::new(IngestState {
            sink: Arc::new(log.clone()),
            write_keys: WriteKeys::new(config.server.write_keys.clone()),
            rate_limiter: (config.server.rate_limit_per_key > 0)
                .then(|| RateLimiter::new(config.server.rate_limit_per_key)),
            metrics: metrics.clone(),
            rules: Some(rules.clone()),
            privacy: IngestPrivacy {
                ip_mode: config.privacy.ip_mode,
                trusted_proxies: config.server.trusted_proxies.clone(),
                suppressions: suppressions.clone(),
            },
            body_timeout: config.server.body_timeout,
            admission: Admission::new(config.server.max_pending_bytes),
        });
        let erasure_targets = config
            .destinations
            .iter()
            .map(|(name, destination)| {
                let target = match connectors::erased_elsewhere(&destination.kind) {
                    Some(elsewhere) => ErasureTarget::Elsewhere(elsewhere.to_owned()),
                    None => ErasureTarget::Connector(targets[name].connector.clone()),
                };
                (name.clone(), target)
            })
            .collect();
        let privacy_requests = Arc::new(PrivacyRequests::new(
            &config.storage.data_dir,
            erasure_targets,
            Some(suppressions.clone()),
            Duration::ZERO,
        ));
        let app = ingest::router(ingest_state, &config.server.allowed_origins)
            .merge(privacy::admin::router(privacy_requests, access.clone()))
            .merge(ops::router(metrics.clone(), access));

        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut workers = JoinSet::new();
        let delivery = DeliveryRuntime::start()
            .map_err(|error| setup(format!("cannot start the delivery threads: {error}")))?;
        for (name, destination) in &config.destinations {
            metrics.declare_destination(name);
            let target = &targets[name];
            let worker = DestinationWorker {
                context: Arc::new(JobContext {
                    destination: name.clone(),
                    connector: target.connector.clone(),
                    retry: RetryPolicy::new(destination.retry),
                    dlq: Arc::new(dlq.clone()),
                    deadline: None,
                    metrics: metrics.clone(),
                    consent: ConsentRequirement::new(&destination.requires_consent),
                    suppressions: suppressions.clone(),
                }),
                batch_size: destination.batch_size,
                max_jobs: JOBS_PER_DESTINATION,
                rules: rules.clone(),
                log: log.clone(),
            };
            let token = shutdown.clone();
            let name = name.clone();
            workers.spawn_on(
                async move {
                    if let Err(error) = worker.run(token).await {
                        tracing::error!(message = "delivery worker stopped", destination = %name, %error);
                    }
                },
                delivery.handle(),
            );
        }
        let destinations: Vec<String> = config.destinations.keys().cloned().collect();
        tasks.spawn(maintain(
            log.clone(),
            dlq,
            metrics,
            destinations,
            options,
            shutdown.clone(),
        ));
        tasks.spawn(follow_suppressions(suppressions, shutdown.clone()));

        let server_shutdown = shutdown.clone();
        let server_log = log.clone();
        let limits = crate::http_listener::ConnectionLimits {
            header_timeout: config.server.header_timeout,
            max_connections: config.server.max_connections,
        };
        tasks.spawn(async move {
            crate::http_listener::serve(listener, app, limits, server_shutdown.clone()).await;
            // The listener is closed: stop the workers, then the log.
            server_shutdown.cancel();
            while workers.join_next().await.is_some() {}
            drop(delivery);
            server_log.close().await;
        });
        Ok(Self {
            address: local_address,
            log,
            shutdown,
            tasks,
        })
    }

    /// The embedded log (`tributary serve --source` appends what it reads from a stream).
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// A token that stops the pipeline when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the pipeline has stopped (after [`LocalPipeline::shutdown_token`] is
    /// cancelled).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Open on loopback; elsewhere the admin token from `variable`, or closed when it is unset.
pub(crate) fn admin_access(address: SocketAddr, variable: &str) -> AdminAccess {
    if address.ip().is_loopback() {
        return AdminAccess::Open;
    }
    match std::env::var(variable) {
        Ok(token) if !token.is_empty() => AdminAccess::Token(token),
        _ => AdminAccess::Closed {
            variable: variable.to_owned(),
        },
    }
}

/// Re-reads the suppression list when another process (`tributary privacy …`) changed it.
async fn follow_suppressions(suppressions: Arc<LiveSuppressions>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(SUPPRESSION_INTERVAL);
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {
                let suppressions = suppressions.clone();
                match tokio::task::spawn_blocking(move || suppressions.refresh()).await {
                    Ok(Ok(true)) => {
                        failing = false;
                        tracing::info!(message = "suppression list reloaded");
                    }
                    Ok(Ok(false)) => failing = false,
                    Ok(Err(error)) => {
                        if !failing {
                            tracing::error!(message = "suppression list unreadable; the previous one stays in force", %error);
                        }
                        failing = true;
                    }
                    Err(error) => tracing::warn!(message = "suppression reload task failed", %error),
                }
            }
        }
    }
}

/// Retention, dedup expiry and the DLQ depth gauge, until shutdown.
async fn maintain(
    log: EventLog,
    dlq: DeadLetterQueue,
    metrics: Arc<Metrics>,
    destinations: Vec<String>,
    options: LogOptions,
    shutdown: CancellationToken,
) {
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    let mut depth = tokio::time::interval(DLQ_DEPTH_INTERVAL);
    let full = log.full_signal();
    let mut last_sweep: Option<tokio::time::Instant> = None;
    let reader = match log.reader() {
        Ok(reader) => Arc::new(std::sync::Mutex::new(reader)),
        Err(error) => {
            tracing::error!(message = "maintenance cannot open the log", %error);
            return;
        }
    };
    let run_sweep = |reason: &'static str| {
        let reader = reader.clone();
        let destinations = destinations.clone();
        let options = options.clone();
        async move {
            let swept = tokio::task::spawn_blocking(move || {
                let reader = reader
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                maintenance::sweep(
                    &reader,
                    &destinations,
                    clock::now(),
                    options.retention,
                    options.dedup_window,
                )
            })
            .await;
            match swept {
                Ok(Ok(outcome)) if outcome.records > 0 || outcome.ids > 0 => {
                    tracing::info!(
                        message = "retention sweep",
                        reason,
                        records = outcome.records,
                        ids = outcome.ids
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::warn!(message = "retention sweep failed", %error),
                Err(error) => tracing::warn!(message = "retention sweep task failed", %error),
            }
        }
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = sweep.tick() => {
                run_sweep("interval").await;
                last_sweep = Some(tokio::time::Instant::now());
            }
            () = full.notified() => {
                // A full log frees space as soon as retention allows, not a minute later.
                if last_sweep.is_none_or(|at| at.elapsed() >= FULL_SWEEP_SPACING) {
                    run_sweep("the log is full").await;
                    last_sweep = Some(tokio::time::Instant::now());
                }
            }
            _ = depth.tick() => {
                let dlq = dlq.clone();
                if let Ok(Ok(depths)) = tokio::task::spawn_blocking(move || dlq.depth()).await {
                    for name in &destinations {
                        let count = depths.get(name).copied().unwrap_or(0);
                        metrics.dlq_depth.get_or_create(&Metrics::destination(name)).set(i64::try_from(count).unwrap_or(i64::MAX));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_access_depends_on_the_address() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(matches!(
            admin_access(loopback, "TRIBUTARY_TEST_UNSET_VARIABLE"),
            AdminAccess::Open
        ));
        let ipv6_loopback: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(matches!(
            admin_access(ipv6_loopback, "TRIBUTARY_TEST_UNSET_VARIABLE"),
            AdminAccess::Open
        ));
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(matches!(
            admin_access(public, "TRIBUTARY_TEST_UNSET_VARIABLE"),
            AdminAccess::Closed { variable } if variable == "TRIBUTARY_TEST_UNSET_VARIABLE"
        ));
        // PATH is set in every environment: it stands in for a configured token.
        assert!(matches!(
            admin_access(public, "PATH"),
            AdminAccess::Token(_)
        ));
    }
}
