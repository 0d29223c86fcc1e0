//! The conformance scenarios (`tests/conformance/scenarios/`) through the web SDK's wasm
//! module in headless Chromium (wasm-bindgen-test): each scenario drives a [`WebQueue`] through
//! the calls the TypeScript client makes (`enqueue`, `request_flush`, `poll`, `upload_body`,
//! `completed_accepted`/`completed_status`, `counters`, `notices`) with the events the client
//! builds, and answers every upload as the scenario's endpoint would, at once. The clock is the
//! injectable one (the `now` every call takes), virtual: it moves only to the instants the queue
//! asks to be woken at (or a `wait` action's end), so the upper bounds on gaps are checked too.
//!
//! The browser preset's defaults apply, with what the client's options can change
//! (`flushAt`, `flushIntervalMs`, `maxQueueEvents`, `maxQueueBytes`) and the scenario's own
//! fields; a scenario whose preset differs from the browser's elsewhere without setting the
//! field is skipped with the reason. The drop counters by reason come from the notices (the
//! client's `onEvent`), the others from `counters()`.

#![cfg(target_arch = "wasm32")]

#[path = "../../tests/conformance/scenario.rs"]
mod scenario;

mod scenarios {
    include!(concat!(env!("OUT_DIR"), "/conformance_scenarios.rs"));
}

use std::collections::BTreeMap;
use std::time::Duration;

use scenario::{Action, PolicySpec, Request, RunRecord, Scenario};
use serde_json::{Value, json};
use tributary_core::Policy;
use tributary_web::WebQueue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const IDLE: u32 = 0;
const WAIT: u32 = 1;
const UPLOAD: u32 = 2;

const T0: f64 = 1_795_000_000_000.0;

/// The policy fields the web client's options set (`flushAt`, `flushIntervalMs`,
/// `maxQueueEvents`, `maxQueueBytes`), taken from the scenario's preset when it leaves them out.
fn with_client_options(spec: &PolicySpec, preset: &Policy) -> PolicySpec {
    PolicySpec {
        preset: "browser".into(),
        flush_at_events: spec.flush_at_events.or(Some(preset.flush_at_events)),
        flush_interval_ms: spec
            .flush_interval_ms
            .or(Some(preset.flush_interval.as_millis() as u64)),
        capacity_events: spec.capacity_events.or(Some(preset.capacity_events)),
        capacity_bytes: spec.capacity_bytes.or(Some(preset.capacity_bytes)),
        ..spec.clone()
    }
}

/// The policy a browser client gets for this scenario, or why it cannot have the scenario's.
fn browser_policy(spec: &PolicySpec) -> Result<Policy, String> {
    let wanted = scenario::policy(spec);
    let ours = scenario::policy(&with_client_options(spec, &wanted));
    if ours == wanted {
        Ok(ours)
    } else {
        Err(format!(
            "preset {:?} differs from \"browser\" in a field the scenario leaves to the preset \
             and the web client cannot set: wanted {wanted:?}, the browser gets {ours:?}",
            spec.preset
        ))
    }
}

struct Runner<'a> {
    scenario: &'a Scenario,
    queue: WebQueue,
    now: f64,
    /// When the queue asked to be polled again (`None`: it is idle).
    wake: Option<f64>,
    requests: Vec<Request>,
    tracked: usize,
    /// Events dropped, by reason, from the notices.
    dropped: BTreeMap<String, u64>,
}

impl Runner<'_> {
    /// The event the TypeScript client builds for `track(name, data)`.
    fn event(&self, name: &str, pad_bytes: usize) -> String {
        let data = if pad_bytes > 0 {
            json!({"pad": "x".repeat(pad_bytes)})
        } else {
            json!({})
        };
        json!({
            "id": format!("0193f0a0-0000-7000-8000-{:012x}", self.tracked),
            "name": name,
            "data": data,
            "timestamp": "2026-11-18T11:06:40.000Z",
            "anonymous_id": "0193f0a0-0000-7000-8000-ffffffffffff",
            "source": "web",
            "context": {"library": {"name": "@tributary/web", "version": "0.1.0"}},
        })
        .to_string()
    }

    /// Polls and answers uploads until the queue waits or idles, without moving the clock.
    fn settle(&mut self) {
        loop {
            match self.queue.poll(self.now) {
                UPLOAD => self.answer(),
                WAIT => {
                    self.wake = Some(self.queue.wait_until());
                    break;
                }
                IDLE => {
                    self.wake = None;
                    break;
                }
                // Storage work (persist, delete, save the retry state): the store is not under
                // test here, so it is done at once.
                _ => {}
            }
        }
        self.read_notices();
    }

    fn answer(&mut self) {
        let body: Value = serde_json::from_slice(&self.queue.upload_body()).unwrap();
        let batch = body["batch"].as_array().unwrap();
        let field = |key: &str| -> Vec<String> {
            batch
                .iter()
                .map(|event| event[key].as_str().unwrap().to_owned())
                .collect()
        };
        let answer = self.scenario.answer(self.requests.len());
        self.requests.push(Request {
            ids: field("id"),
            names: field("name"),
            at: Duration::from_millis((self.now - T0) as u64),
            status: answer.status,
        });
        let id = self.queue.upload_id();
        if (200..300).contains(&answer.status) {
            self.queue
                .completed_accepted(id, Vec::new(), String::new(), self.now);
        } else {
            let retry_after_ms = answer
                .retry_after_s
                .map_or(f64::NAN, |seconds| seconds as f64 * 1000.0);
            self.queue
                .completed_status(id, answer.status, retry_after_ms, self.now);
        }
    }

    fn read_notices(&mut self) {
        for line in self.queue.notices().lines() {
            let mut parts = line.splitn(3, ' ');
            let (kind, count, detail) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("0").parse::<u64>().unwrap(),
                parts.next().unwrap_or(""),
            );
            if kind == "dropped" {
                let reason = detail.split(':').next().unwrap_or("").to_owned();
                *self.dropped.entry(reason).or_default() += count;
            }
        }
    }

    /// Lets `ms` pass, waking the queue whenever it asked to be.
    fn wait(&mut self, ms: u64) {
        let until = self.now + ms as f64;
        loop {
            self.settle();
            match self.wake {
                Some(wake) if wake <= until => self.now = self.now.max(wake),
                _ => {
                    self.now = until;
                    self.settle();
                    return;
                }
            }
        }
    }

    /// Runs until the queue is empty (every event delivered, dropped or evicted).
    fn finish(&mut self) {
        for _ in 0..100_000 {
            self.settle();
            if self.queue.counters()[7] == 0.0 {
                return;
            }
            let wake = self
                .wake
                .unwrap_or_else(|| panic!("{}: events queued, the queue idle", self.scenario.name));
            self.now = self.now.max(wake);
        }
        panic!("{}: the queue never emptied", self.scenario.name);
    }

    fn counters(&self) -> BTreeMap<String, u64> {
        let counters = self.queue.counters();
        let dropped = |reason: &str| self.dropped.get(reason).copied().unwrap_or(0);
        let named = [
            ("delivered", counters[2] as u64),
            ("retried", counters[5] as u64),
            ("evicted", counters[4] as u64),
            ("dropped_permanent", dropped("permanent")),
            ("dropped_too_large", dropped("too_large")),
            ("dropped_expired", dropped("expired")),
            ("dropped_rejected", dropped("rejected")),
            ("dropped_invalid", dropped("invalid")),
            ("queued", counters[7] as u64),
        ];
        let by_reason: u64 = self.dropped.values().sum();
        assert_eq!(
            by_reason, counters[3] as u64,
            "the notices' drops add up to counters()'s: {:?}",
            self.dropped
        );
        named
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect()
    }
}

fn run(scenario: &Scenario, policy: Policy) -> RunRecord {
    let mut runner = Runner {
        scenario,
        queue: WebQueue::with_policy(policy, 7),
        now: T0,
        wake: None,
        requests: Vec::new(),
        tracked: 0,
        dropped: BTreeMap::new(),
    };
    for action in &scenario.actions {
        match action {
            Action::Track { count, pad_bytes } => {
                for _ in 0..*count {
                    let name = format!("e-{}", runner.tracked);
                    let event = runner.event(&name, *pad_bytes);
                    if let Some(problem) = runner.queue.enqueue(&name, event, runner.now) {
                        panic!("{}: {name} refused: {problem}", scenario.name);
                    }
                    runner.tracked += 1;
                }
            }
            Action::Flush => runner.queue.request_flush(),
            Action::Wait { ms } => runner.wait(*ms),
        }
        runner.settle();
    }
    runner.finish();
    RunRecord {
        counters: runner.counters(),
        requests: runner.requests,
    }
}

#[wasm_bindgen_test]
fn every_conformance_scenario_holds_for_the_web_queue() {
    assert!(
        scenarios::SCENARIOS.len() >= 15,
        "the scenario files are missing (sdk-wasm/build.rs lists ../tests/conformance/scenarios)"
    );
    let (mut passed, mut skipped) = (0, 0);
    for (file, text) in scenarios::SCENARIOS {
        let scenario: Scenario =
            serde_json::from_str(text).unwrap_or_else(|error| panic!("{file}: {error}"));
        match browser_policy(&scenario.policy) {
            Ok(policy) => {
                let record = run(&scenario, policy);
                scenario::check(file, &scenario, &record, true);
                passed += 1;
            }
            Err(reason) => {
                wasm_bindgen_test::console_log!("conformance (wasm): skipping {file}: {reason}");
                skipped += 1;
            }
        }
    }
    wasm_bindgen_test::console_log!(
        "conformance (wasm, WebQueue in Chromium, virtual clock): {passed} scenarios passed, {skipped} skipped"
    );
}
