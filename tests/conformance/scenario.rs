//! The conformance scenario format (README.md beside this file) and its checks, shared by every
//! Rust runner through `#[path]`: `sdk-core/tests/conformance.rs` (the core on a virtual
//! clock) and `sdk-server/tests/conformance.rs` (the tokio client against a scripted HTTP
//! endpoint). A runner performs the actions, drives the SDK until its queue is empty, records
//! every request the endpoint received and the SDK's counters, and hands both to [`check`].

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// One scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows, as a sentence.
    pub name: String,
    /// The rule of docs/SDK_DEFAULTS.md it checks: queue, batching, retry, eviction, dedup.
    pub rule: String,
    /// The policy: a preset and the fields the scenario changes.
    pub policy: PolicySpec,
    /// The endpoint's answers, one per request in order.
    #[serde(default)]
    pub endpoint: Vec<Answer>,
    /// The answer to every request after `endpoint` runs out (default `200`).
    #[serde(default = "Answer::ok")]
    pub then: Answer,
    /// What the application does, in order.
    pub actions: Vec<Action>,
    /// What must hold once the queue is empty.
    pub expect: Expect,
}

/// A policy preset and overrides (milliseconds for durations).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// `mobile`, `browser` or `server`.
    pub preset: String,
    pub flush_at_events: Option<usize>,
    pub flush_interval_ms: Option<u64>,
    pub max_batch_events: Option<usize>,
    pub max_batch_bytes: Option<usize>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_cap_ms: Option<u64>,
    pub paused_delay_ms: Option<u64>,
    pub give_up_age_ms: Option<u64>,
    pub capacity_events: Option<usize>,
    pub capacity_bytes: Option<usize>,
    pub max_concurrent_uploads: Option<usize>,
}

/// One answer of the scripted endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The HTTP status (2xx bodies are `{"accepted": N, "rejected": []}`).
    pub status: u16,
    /// A `Retry-After` header, in seconds.
    #[serde(default)]
    pub retry_after_s: Option<u64>,
}

impl Answer {
    fn ok() -> Self {
        Self {
            status: 200,
            retry_after_s: None,
        }
    }
}

/// One thing the application does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Action {
    /// Track this many events (named `e-<n>`, `data: {"pad": "x…"}` of `pad_bytes` when given).
    Track {
        count: usize,
        #[serde(default)]
        pad_bytes: usize,
    },
    /// Ask for a flush now.
    Flush,
    /// Let this much time pass (the virtual clock moves; a real-time runner sleeps).
    Wait { ms: u64 },
}

/// What must hold at the end. Absent fields are not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Events per request, in the order the endpoint received them.
    pub requests: Option<Vec<usize>>,
    /// At least this many requests (when their number depends on jitter).
    pub min_requests: Option<usize>,
    /// Every request carried the ids of the first one (a retried batch is the same batch).
    #[serde(default)]
    pub same_ids_in_every_request: bool,
    /// The names of the first request's events (`e-<n>`, n counting every track from 0).
    pub first_names: Option<Vec<String>>,
    /// Request `i` (0-based, as a string key) came at least this many ms after the run began.
    #[serde(default)]
    pub request_at_least_ms: BTreeMap<String, u64>,
    /// The accepted events, request after request, are in the order they were tracked.
    #[serde(default)]
    pub accepted_in_order: bool,
    /// Every id accepted (2xx) exactly once, and no id sent in two different batches unless
    /// the first was answered with a failure.
    #[serde(default)]
    pub accepted_once: bool,
    /// Before request `i` (0-based, as a string key), at least this many ms since the previous.
    #[serde(default)]
    pub gap_before_at_least_ms: BTreeMap<String, u64>,
    /// Before request `i`, at most this many ms since the previous. Checked only by runners on
    /// a virtual clock (a real clock adds scheduling delays).
    #[serde(default)]
    pub gap_before_at_most_ms: BTreeMap<String, u64>,
    /// The SDK's counters at the end (names as in docs/SDK_DEFAULTS.md: `delivered`,
    /// `retried`, `evicted`, `dropped_permanent`, `dropped_too_large`, `dropped_expired`,
    /// `dropped_rejected`, `dropped_invalid`, `queued`).
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
}

/// A request the endpoint received.
#[derive(Debug, Clone)]
pub struct Request {
    /// The event ids, in body order.
    pub ids: Vec<String>,
    /// The event names, in body order.
    pub names: Vec<String>,
    /// When, since the run started.
    pub at: Duration,
    /// What the endpoint answered.
    pub status: u16,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub requests: Vec<Request>,
    /// Counter name → value, for every name [`Expect::counters`] may use.
    pub counters: BTreeMap<String, u64>,
}

impl Scenario {
    /// Every scenario under `tests/conformance/scenarios/`, with its file name.
    pub fn all() -> Vec<(String, Scenario)> {
        let dir = scenarios_dir();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&path).unwrap();
                let scenario =
                    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{name}: {error}"));
                (name, scenario)
            })
            .collect()
    }

    /// The endpoint's answer to request `index` (0-based).
    pub fn answer(&self, index: usize) -> Answer {
        self.endpoint.get(index).copied().unwrap_or(self.then)
    }
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance/scenarios")
}

/// Checks a run against the scenario's expectations; `virtual_clock` enables the upper
/// bounds on gaps. Panics with the file name and what differs.
pub fn check(file: &str, scenario: &Scenario, run: &RunRecord, virtual_clock: bool) {
    let counts: Vec<usize> = run
        .requests
        .iter()
        .map(|request| request.ids.len())
        .collect();
    let context = || {
        format!(
            "{file} ({}): requests {counts:?}, counters {:?}",
            scenario.name, run.counters
        )
    };
    let expect = &scenario.expect;
    if let Some(requests) = &expect.requests {
        assert_eq!(&counts, requests, "{}", context());
    }
    if let Some(least) = expect.min_requests {
        assert!(
            counts.len() >= least,
            "at least {least} requests: {}",
            context()
        );
    }
    if let Some(names) = &expect.first_names {
        assert_eq!(
            Some(names),
            run.requests.first().map(|request| &request.names),
            "{}",
            context()
        );
    }
    for (index, least) in &expect.request_at_least_ms {
        let index: usize = index.parse().expect("a request index");
        let at = run
            .requests
            .get(index)
            .unwrap_or_else(|| panic!("request {index}: {}", context()))
            .at;
        assert!(
            at >= Duration::from_millis(*least),
            "request {index} at {at:?}, at least {least} ms: {}",
            context()
        );
    }
    if expect.accepted_in_order {
        let order: Vec<u64> = run
            .requests
            .iter()
            .filter(|request| (200..300).contains(&request.status))
            .flat_map(|request| &request.names)
            .map(|name| name.trim_start_matches("e-").parse().expect("e-<n>"))
            .collect();
        assert!(
            order.windows(2).all(|pair| pair[0] < pair[1]),
            "accepted in tracking order: {order:?}: {}",
            context()
        );
    }
    if expect.same_ids_in_every_request {
        for request in &run.requests {
            assert_eq!(request.ids, run.requests[0].ids, "{}", context());
        }
    }
    if expect.accepted_once {
        let mut accepted = HashSet::new();
        for request in run
            .requests
            .iter()
            .filter(|request| (200..300).contains(&request.status))
        {
            for id in &request.ids {
                assert!(
                    accepted.insert(id.clone()),
                    "{id} accepted twice: {}",
                    context()
                );
            }
        }
    }
    let gap = |index: &str| {
        let index: usize = index.parse().expect("a request index");
        assert!(
            index >= 1 && index < run.requests.len(),
            "request {index}: {}",
            context()
        );
        run.requests[index]
            .at
            .saturating_sub(run.requests[index - 1].at)
    };
    for (index, least) in &expect.gap_before_at_least_ms {
        let gap = gap(index);
        assert!(
            gap >= Duration::from_millis(*least),
            "gap before request {index} is {gap:?}, at least {least} ms: {}",
            context()
        );
    }
    if virtual_clock {
        for (index, most) in &expect.gap_before_at_most_ms {
            let gap = gap(index);
            assert!(
                gap <= Duration::from_millis(*most),
                "gap before request {index} is {gap:?}, at most {most} ms: {}",
                context()
            );
        }
    }
    for (name, value) in &expect.counters {
        let actual = run
            .counters
            .get(name)
            .unwrap_or_else(|| panic!("unknown counter {name}: {}", context()));
        assert_eq!(actual, value, "counter {name}: {}", context());
    }
}

/// The counters a runner reports, from the core's [`tributary_core::queue::Counters`].
pub fn counter_map(
    counters: &tributary_core::queue::Counters,
    queued: usize,
) -> BTreeMap<String, u64> {
    let dropped = &counters.dropped;
    [
        ("delivered", counters.delivered),
        ("retried", counters.retried),
        ("evicted", counters.evicted),
        ("dropped_permanent", dropped.permanent),
        ("dropped_too_large", dropped.too_large),
        ("dropped_expired", dropped.expired),
        ("dropped_rejected", dropped.rejected),
        ("dropped_invalid", dropped.invalid),
        ("queued", queued as u64),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// The policy a scenario asks for.
pub fn policy(spec: &PolicySpec) -> tributary_core::Policy {
    use tributary_core::Policy;
    let mut policy = match spec.preset.as_str() {
        "mobile" => Policy::mobile(),
        "browser" => Policy::browser(),
        "server" => Policy::server(),
        other => panic!("unknown preset {other}"),
    };
    let ms = Duration::from_millis;
    if let Some(value) = spec.flush_at_events {
        policy.flush_at_events = value;
    }
    if let Some(value) = spec.flush_interval_ms {
        policy.flush_interval = ms(value);
    }
    if let Some(value) = spec.max_batch_events {
        policy.max_batch_events = value;
    }
    if let Some(value) = spec.max_batch_bytes {
        policy.max_batch_bytes = value;
    }
    if let Some(value) = spec.backoff_base_ms {
        policy.backoff_base = ms(value);
    }
    if let Some(value) = spec.backoff_cap_ms {
        policy.backoff_cap = ms(value);
    }
    if let Some(value) = spec.paused_delay_ms {
        policy.paused_delay = ms(value);
    }
    if let Some(value) = spec.give_up_age_ms {
        policy.give_up_age = ms(value);
    }
    if let Some(value) = spec.capacity_events {
        policy.capacity_events = value;
    }
    if let Some(value) = spec.capacity_bytes {
        policy.capacity_bytes = value;
    }
    if let Some(value) = spec.max_concurrent_uploads {
        policy.max_concurrent_uploads = value;
    }
    policy
}
