//! Consent against the real binary: destinations with `requires_consent` receive only events
//! whose `context.consent` grants every category they list; the others are counted, not
//! dead-lettered, and destinations without the setting receive everything.

mod common;

use std::time::Duration;

use common::{Server, batch, config_with, eventually, post};
use serde_json::{Value, json};

const RULES: &str = r#"[
  {"destination_name": "archive", "destination_arn": "local", "enabled_events": ["*"]},
  {"destination_name": "datawarehouse", "destination_arn": "local", "enabled_events": ["*"]},
  {"destination_name": "mixpanel", "destination_arn": "local", "enabled_events": ["*"]}
]"#;

fn ids(events: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = events
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_without_consent_never_receive_the_event() {
    // The samples' destinations, with consent required by two of them.
    let config = config_with("")
        .replace(
            "[destinations.datawarehouse]\nkind = \"sqlite\"\n",
            "[destinations.datawarehouse]\nkind = \"sqlite\"\nrequires_consent = [\"analytics\"]\n",
        )
        .replace(
            "[destinations.mixpanel]\nkind = \"jsonl\"\n",
            "[destinations.mixpanel]\nkind = \"jsonl\"\nrequires_consent = [\"analytics\", \"marketing\"]\n",
        );
    let server = Server::start(&config, RULES);
    let events = [
        json!({"id": "none", "name": "login", "data": {}}),
        json!({"id": "analytics", "name": "login", "data": {}, "context": {"consent": ["analytics"]}}),
        json!({"id": "both", "name": "login", "data": {}, "context": {"consent": ["Analytics", "marketing"]}}),
        json!({"id": "object-denied", "name": "login", "data": {}, "context": {"consent": {"analytics": true, "marketing": false}}}),
        // Segment's Consent Management shape, through the Segment mapping.
        json!({"type": "track", "messageId": "segment-both", "event": "Signed Up", "userId": "u",
               "context": {"consent": {"categoryPreferences": {"Analytics": true, "Marketing": true}}}}),
        json!({"type": "track", "messageId": "segment-none", "event": "Signed Up", "userId": "u",
               "context": {"consent": {"categoryPreferences": {"Analytics": false}}}}),
    ];
    let response = post(&server.url("/v1/batch"), batch(&events)).await;
    assert_eq!(response.status(), 200);

    eventually(Duration::from_secs(20), "every destination done", || {
        server.jsonl("data/archive.jsonl").len() == 6
            && server.warehouse_ids().len() == 4
            && server.jsonl("data/mixpanel.jsonl").len() == 2
    })
    .await;
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ids(&server.jsonl("data/archive.jsonl")),
        [
            "analytics",
            "both",
            "none",
            "object-denied",
            "segment-both",
            "segment-none"
        ],
        "no requires_consent: everything"
    );
    let mut warehouse = server.warehouse_ids();
    warehouse.sort();
    assert_eq!(
        warehouse,
        ["analytics", "both", "object-denied", "segment-both"]
    );
    assert_eq!(
        ids(&server.jsonl("data/mixpanel.jsonl")),
        ["both", "segment-both"]
    );

    let metrics = server.metrics().await;
    let series = |name: &str, destination: &str| {
        metrics
            .get(&format!("{name}{{destination=\"{destination}\"}}"))
            .copied()
            .unwrap_or(-1.0)
    };
    assert_eq!(
        series(
            "tributary_destination_consent_denied_total",
            "datawarehouse"
        ),
        2.0
    );
    assert_eq!(
        series("tributary_destination_consent_denied_total", "mixpanel"),
        4.0
    );
    assert_eq!(
        series("tributary_destination_consent_denied_total", "archive"),
        0.0
    );
    assert_eq!(
        series("tributary_destination_delivered_total", "mixpanel"),
        2.0
    );
    for destination in ["archive", "datawarehouse", "mixpanel"] {
        assert_eq!(
            series("tributary_destination_dead_lettered_total", destination),
            0.0
        );
    }
    let dlq = common::text(&server.cli(&["dlq", "list"]));
    assert!(dlq.contains("the dead-letter queue is empty"), "{dlq}");
}

#[test]
fn an_empty_category_is_a_config_error() {
    let folder = tempfile::tempdir().unwrap();
    let config = config_with("").replace(
        "[destinations.archive]\nkind = \"jsonl\"\n",
        "[destinations.archive]\nkind = \"jsonl\"\nrequires_consent = [\"analytics\", \" \"]\n",
    );
    std::fs::write(folder.path().join("tributary.toml"), config).unwrap();
    std::fs::write(folder.path().join("rules.json"), RULES).unwrap();
    let output = std::process::Command::new(common::BINARY)
        .args(["rules", "check", "rules.json", "--config", "tributary.toml"])
        .current_dir(folder.path())
        .output()
        .unwrap();
    let printed = common::text(&output);
    assert!(!output.status.success(), "{printed}");
    assert!(
        printed.contains(
            "destinations.archive.requires_consent[1]: a consent category must not be empty"
        ),
        "{printed}"
    );
}
