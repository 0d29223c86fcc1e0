//! One batch's delivery: attempts with backoff, partial failures, and the DLQ.
//!
//! Before the first attempt, events whose `context.consent` lacks a category the destination
//! requires are set aside (counted in `destination_consent_denied`, never dead-lettered);
//! before every attempt, events of users deleted or suppressed meanwhile are set aside
//! (`destination_privacy_dropped`). This is the router's side of the privacy controls, so it
//! also covers events read ahead or waiting for a retry when a deletion arrives.

use std::sync::Arc;
use std::time::Duration;

use crate::connectors::retry::RetryPolicy;
use crate::connectors::{Connector, Delivery, Failure, FailureClass, OutgoingEvent};
use crate::dlq::{DeadLetterMessage, DeadLetterSink};
use crate::ops::metrics::Metrics;
use crate::privacy::{ConsentRequirement, LiveSuppressions};

/// How long to wait before trying a failed DLQ write again.
const DLQ_RETRY_DELAY: Duration = Duration::from_secs(1);

/// What every job of one destination shares.
pub struct JobContext {
    /// The destination's name.
    pub destination: String,
    /// Its connector.
    pub connector: Arc<dyn Connector>,
    /// Its retry rule.
    pub retry: RetryPolicy,
    /// Where exhausted batches go.
    pub dlq: Arc<dyn DeadLetterSink>,
    /// When retries must stop (a Lambda function's time budget): a retry whose wait would end
    /// after it dead-letters the batch at once instead. `None`: no deadline.
    pub deadline: Option<tokio::time::Instant>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The consent categories the destination requires.
    pub consent: ConsentRequirement,
    /// Deleted and suppressed users.
    pub suppressions: Arc<LiveSuppressions>,
}

/// What happened to a batch in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobOutcome {
    /// Events delivered.
    pub delivered: usize,
    /// Events written to the DLQ.
    pub dead_lettered: usize,
}

/// Delivers `events` until each is delivered or dead-lettered.
pub async fn run(context: Arc<JobContext>, events: Vec<OutgoingEvent>) -> JobOutcome {
    let label = Metrics::destination(&context.destination);
    let mut rng = fastrand::Rng::new();
    let mut pending = events;
    if !context.consent.is_empty() {
        let before = pending.len();
        pending.retain(|event| context.consent.allows_json(&event.json));
        let denied = before - pending.len();
        if denied > 0 {
            context
                .metrics
                .consent_denied
                .get_or_create(&label)
                .inc_by(denied as u64);
        }
    }
    let mut outcome = JobOutcome::default();
    let mut attempts = 0u32;
    let mut first_failed_at: Option<String> = None;
    loop {
        let suppressions = context.suppressions.current();
        if !suppressions.is_empty() {
            let before = pending.len();
            pending.retain(|event| suppressions.router_drops_json(&event.json).is_none());
            let dropped = before - pending.len();
            if dropped > 0 {
                context
                    .metrics
                    .privacy_dropped
                    .get_or_create(&label)
                    .inc_by(dropped as u64);
            }
        }
        if pending.is_empty() {
            break;
        }
        attempts += 1;
        let delivery = context.connector.deliver(&pending).await;
        let (retry, failure) = match delivery {
            Delivery::Delivered => {
                outcome.delivered += pending.len();
                context
                    .metrics
                    .delivered
                    .get_or_create(&label)
                    .inc_by(pending.len() as u64);
                return outcome;
            }
            Delivery::Failed(failure) => (std::mem::take(&mut pending), failure),
            Delivery::Partial(failures) => {
                let (retry, permanent, delivered) = split_partial(&pending, failures);
                outcome.delivered += delivered;
                context
                    .metrics
                    .delivered
                    .get_or_create(&label)
                    .inc_by(delivered as u64);
                for (event, failure) in &permanent {
                    first_failed_at.get_or_insert_with(crate::clock::now_rfc3339);
                    dead_letter(
                        &context,
                        std::slice::from_ref(event),
                        failure,
                        attempts,
                        &first_failed_at,
                        &mut outcome,
                    )
                    .await;
                }
                match retry.first() {
                    Some((_, failure)) => {
                        let failure = failure.clone();
                        (retry.into_iter().map(|(event, _)| event).collect(), failure)
                    }
                    None => return outcome,
                }
            }
        };
        first_failed_at.get_or_insert_with(crate::clock::now_rfc3339);
        let delay = context.retry.delay(attempts, failure.retry_after, &mut rng);
        let out_of_time = context
            .deadline
            .is_some_and(|deadline| tokio::time::Instant::now() + delay >= deadline);
        if failure.class == FailureClass::Permanent
            || attempts >= context.retry.max_attempts()
            || out_of_time
        {
            dead_letter(
                &context,
                &retry,
                &failure,
                attempts,
                &first_failed_at,
                &mut outcome,
            )
            .await;
            return outcome;
        }
        tracing::debug!(
            message = "delivery failed, retrying",
            destination = %context.destination,
            events = retry.len(),
            attempts,
            delay_ms = delay.as_millis() as u64,
            error = %failure.message
        );
        context
            .metrics
            .retried
            .get_or_create(&label)
            .inc_by(retry.len() as u64);
        let retrying = context.metrics.retrying.get_or_create(&label).clone();
        retrying.inc_by(retry.len() as i64);
        tokio::time::sleep(delay).await;
        retrying.dec_by(retry.len() as i64);
        pending = retry;
    }
    outcome
}

type FailedEvents = Vec<(OutgoingEvent, Failure)>;

/// Splits a partial outcome into retryable and permanent failures and the delivered count.
fn split_partial(
    events: &[OutgoingEvent],
    failures: Vec<(usize, Failure)>,
) -> (FailedEvents, FailedEvents, usize) {
    let mut retry = Vec::new();
    let mut permanent = Vec::new();
    let failed = failures.len();
    for (index, failure) in failures {
        let Some(event) = events.get(index) else {
            continue;
        };
        match failure.class {
            FailureClass::Retryable => retry.push((event.clone(), failure)),
            FailureClass::Permanent => permanent.push((event.clone(), failure)),
        }
    }
    (retry, permanent, events.len().saturating_sub(failed))
}

/// Writes a DLQ message, trying again until it is stored (the offset must not be committed
/// before; if the process stops meanwhile, the batch is redelivered after restart).
async fn dead_letter(
    context: &JobContext,
    events: &[OutgoingEvent],
    failure: &Failure,
    attempts: u32,
    first_failed_at: &Option<String>,
    outcome: &mut JobOutcome,
) {
    let now = crate::clock::now_rfc3339();
    let message = DeadLetterMessage::new(
        &context.destination,
        events,
        failure,
        attempts,
        first_failed_at.clone().unwrap_or_else(|| now.clone()),
        now,
    );
    loop {
        match context.dlq.write(&message).await {
            Ok(()) => break,
            Err(error) => tracing::error!(message = "cannot write to the DLQ; retrying", %error),
        }
        tokio::time::sleep(DLQ_RETRY_DELAY).await;
    }
    tracing::warn!(
        message = "events dead-lettered",
        destination = %context.destination,
        events = events.len(),
        attempts,
        class = failure.class.as_str(),
        error = %failure.message
    );
    let label = Metrics::destination(&context.destination);
    context
        .metrics
        .dead_lettered
        .get_or_create(&label)
        .inc_by(events.len() as u64);
    context.metrics.dlq_depth.get_or_create(&label).inc();
    outcome.dead_lettered += events.len();
}
