//! The conformance scenarios (`tests/conformance/scenarios/`) against the core directly, on a
//! virtual clock: the runner answers each upload as the scenario's endpoint would, at once, and
//! moves the clock only to the instants the queue asks to be woken at (or a `wait` action's
//! end), so every gap is exact and the upper bounds on backoff are checked too.

mod common;

#[path = "../../tests/conformance/scenario.rs"]
mod scenario;

use std::time::Duration;

use common::Platform;
use scenario::{Action, Request, RunRecord, Scenario};
use serde_json::{Value, json};
use tributary_core::Timestamp;
use tributary_core::queue::{Upload, UploadOutcome};

struct Runner<'a> {
    scenario: &'a Scenario,
    platform: Platform,
    start: Timestamp,
    requests: Vec<Request>,
    tracked: usize,
}

impl Runner<'_> {
    /// Hands out and answers uploads until the queue waits, without moving the clock.
    fn settle(&mut self) {
        loop {
            let uploads = self.platform.run();
            if uploads.is_empty() {
                return;
            }
            for upload in uploads {
                self.answer(&upload);
            }
        }
    }

    fn answer(&mut self, upload: &Upload) {
        let events = common::batch(upload);
        let field = |key: &str| -> Vec<String> {
            events
                .iter()
                .map(|event| event[key].as_str().unwrap().to_owned())
                .collect()
        };
        let answer = self.scenario.answer(self.requests.len());
        self.requests.push(Request {
            ids: field("id"),
            names: field("name"),
            at: self.platform.now.saturating_duration_since(self.start),
            status: answer.status,
        });
        let body: Value = json!({"accepted": upload.event_count, "rejected": []});
        let outcome = UploadOutcome::Response {
            status: answer.status,
            retry_after: answer.retry_after_s.map(Duration::from_secs),
            body: serde_json::to_vec(&body).unwrap(),
        };
        self.platform.respond(upload, outcome);
    }

    /// Lets `duration` pass, waking the queue whenever it asked to be.
    fn wait(&mut self, duration: Duration) {
        let until = self.platform.now.saturating_add(duration);
        loop {
            self.settle();
            match self.platform.last_wait {
                Some(wake) if wake <= until => self.platform.advance_to_wake(),
                _ => {
                    self.platform.now = until;
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
            if self.platform.queue.is_empty() {
                return;
            }
            self.platform.advance_to_wake();
        }
        panic!("{}: the queue never emptied", self.scenario.name);
    }
}

fn run(scenario: &Scenario) -> RunRecord {
    let platform = Platform::new(scenario::policy(&scenario.policy));
    let start = platform.now;
    let mut runner = Runner {
        scenario,
        platform,
        start,
        requests: Vec::new(),
        tracked: 0,
    };
    for action in &scenario.actions {
        match action {
            Action::Track { count, pad_bytes } => {
                for _ in 0..*count {
                    let name = format!("e-{}", runner.tracked);
                    runner.platform.track_sized(&name, *pad_bytes);
                    runner.tracked += 1;
                }
            }
            Action::Flush => runner.platform.queue.request_flush(),
            Action::Wait { ms } => runner.wait(Duration::from_millis(*ms)),
        }
        runner.settle();
    }
    runner.finish();
    runner.platform.assert_counters_add_up();
    RunRecord {
        requests: runner.requests,
        counters: scenario::counter_map(
            runner.platform.queue.counters(),
            runner.platform.queue.len(),
        ),
    }
}

#[test]
fn every_conformance_scenario_holds_for_the_core() {
    let scenarios = Scenario::all();
    assert!(scenarios.len() >= 15, "the scenarios are missing");
    for (file, scenario) in &scenarios {
        let record = run(scenario);
        scenario::check(file, scenario, &record, true);
    }
    println!(
        "conformance (sdk-core, virtual clock): {} scenarios passed",
        scenarios.len()
    );
}
