//! The conformance scenarios (`tests/conformance/scenarios/`) through the tokio client, on the
//! real clock, against a scripted HTTP endpoint on 127.0.0.1 that answers each request as the
//! scenario says. Upper bounds on gaps are left to the virtual-clock runner (sdk-core); every
//! other expectation is checked the same way.

mod common;

#[path = "../../tests/conformance/scenario.rs"]
mod scenario;

use std::time::{Duration, Instant};

use common::{Reply, ScriptedIngest};
use scenario::{Action, Answer, Request, RunRecord, Scenario};
use tributary_server::{Client, Event};

fn reply(answer: Answer) -> Reply {
    match answer.retry_after_s {
        Some(seconds) => Reply::RetryAfter(answer.status, seconds),
        None => Reply::Status(answer.status),
    }
}

async fn run(scenario: &Scenario) -> RunRecord {
    let ingest = ScriptedIngest::start(scenario.endpoint.iter().copied().map(reply)).await;
    ingest.otherwise(reply(scenario.then));
    let started = Instant::now();
    let client = Client::builder("conformance-key")
        .endpoint(&ingest.url)
        .policy(scenario::policy(&scenario.policy))
        .build()
        .unwrap();
    let mut tracked = 0;
    for action in &scenario.actions {
        match action {
            Action::Track { count, pad_bytes } => {
                for _ in 0..*count {
                    let mut event = Event::new(format!("e-{tracked}"));
                    if *pad_bytes > 0 {
                        event = event.property("pad", "x".repeat(*pad_bytes));
                    }
                    client.track(event).unwrap();
                    tracked += 1;
                }
            }
            // Fails when the upload fails; the scenario's expectations say what follows.
            Action::Flush => drop(client.flush().await),
            Action::Wait { ms } => tokio::time::sleep(Duration::from_millis(*ms)).await,
        }
    }
    // Until the queue is empty and stays so (a last answer may still be on its way).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_since: Option<Instant> = None;
    loop {
        let stats = client.stats();
        let empty = stats.queued == 0 && stats.counters.enqueued == tracked as u64;
        match (empty, quiet_since) {
            (true, Some(since)) if since.elapsed() >= Duration::from_millis(100) => break,
            (true, None) => quiet_since = Some(Instant::now()),
            (false, _) => quiet_since = None,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{}: the queue never emptied: {stats:?}",
            scenario.name
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = client.stats();
    let report = client.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.lost, 0, "{}", scenario.name);
    let requests = ingest
        .received()
        .into_iter()
        .map(|received| {
            let field = |key: &str| -> Vec<String> {
                received
                    .events
                    .iter()
                    .map(|event| event[key].as_str().unwrap().to_owned())
                    .collect()
            };
            Request {
                ids: field("id"),
                names: field("name"),
                at: received.at.saturating_duration_since(started),
                status: received.status.unwrap_or(0),
            }
        })
        .collect();
    RunRecord {
        requests,
        counters: scenario::counter_map(&stats.counters, stats.queued),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_scenario_holds_for_the_server_client() {
    let scenarios = Scenario::all();
    assert!(scenarios.len() >= 15, "the scenarios are missing");
    // Concurrently: each has its own endpoint and client, and most of their time is waiting.
    let runs: Vec<_> = scenarios
        .iter()
        .map(|(_, scenario)| {
            let scenario = scenario.clone();
            tokio::spawn(async move { run(&scenario).await })
        })
        .collect();
    for ((file, scenario), record) in scenarios.iter().zip(runs) {
        let record = record.await.unwrap();
        scenario::check(file, scenario, &record, false);
    }
    println!(
        "conformance (sdk-server over HTTP): {} scenarios passed",
        scenarios.len()
    );
}
