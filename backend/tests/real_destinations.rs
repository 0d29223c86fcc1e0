//! README's switch to the real destinations: `tributary serve` with
//! `samples/tributary-real.toml` (pointed at the local Mixpanel and HubSpot stand-ins and the
//! tests' PostgreSQL) delivers `tributary send`'s demo traffic to each, as `samples/rules.json`
//! routes it.

mod common;
mod contract;

use std::path::Path;
use std::time::Duration;

use common::{Server, eventually, text};
use contract::dlq_messages;
use contract::hubspot::HubspotApi;
use contract::mixpanel::{Account, MixpanelApi};
use contract::postgres::{client, count, unique_table, url};

const MIXPANEL_TOKEN: &str = "demo-mixpanel-token-7f3a";
const HUBSPOT_TOKEN: &str = "pat-na1-demo-4b1c";
const HUBSPOT_EVENTS: [&str; 7] = [
    "login",
    "logout",
    "registration",
    "page_view",
    "search",
    "email_sent",
    "email_open",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_samples_switched_to_real_kinds_deliver_the_demo_events_to_each() {
    let Some(warehouse_url) =
        url("the_samples_switched_to_real_kinds_deliver_the_demo_events_to_each")
    else {
        return;
    };
    let mixpanel = MixpanelApi::start(Account::Token(MIXPANEL_TOKEN.into())).await;
    let definitions: Vec<(String, &[&str])> = HUBSPOT_EVENTS
        .iter()
        .map(|name| (format!("pe0000000_{name}"), &["square"][..]))
        .collect();
    let definitions: Vec<(&str, &[&str])> = definitions
        .iter()
        .map(|(name, properties)| (name.as_str(), *properties))
        .collect();
    let hubspot = HubspotApi::start(HUBSPOT_TOKEN, &definitions, 100).await;
    let table = unique_table("demo");

    let sample = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/tributary-real.toml"),
    )
    .unwrap();
    let config = sample
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("https://api.mixpanel.com", &mixpanel.url)
        .replace("https://api.hubapi.com", &hubspot.url)
        .replace("table = \"events\"", &format!("table = \"{table}\""));
    assert_ne!(config, sample);
    let server = Server::start_with_env(
        &config,
        &common::sample_rules(),
        &[
            ("MIXPANEL_TOKEN", MIXPANEL_TOKEN),
            ("HUBSPOT_TOKEN", HUBSPOT_TOKEN),
            ("TRIBUTARY_WAREHOUSE_URL", &warehouse_url),
        ],
    );

    let send = server.cli(&["send", "--endpoint", &server.url("")]);
    assert!(send.status.success(), "{}", text(&send));

    let db = client(&warehouse_url).await;
    let started = std::time::Instant::now();
    while count(&db, &table).await < 270 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "270 rows in PostgreSQL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually(Duration::from_secs(30), "120 events in Mixpanel", || {
        mixpanel.imported().len() == 120
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "210 occurrences in HubSpot",
        || hubspot.stored().len() == 210,
    )
    .await;
    eventually(Duration::from_secs(10), "300 lines in the archive", || {
        server.jsonl("tributary-data/archive.jsonl").len() == 300
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&db, &table).await, 270, "and no more");
    assert_eq!(mixpanel.imported().len(), 120);
    assert_eq!(hubspot.stored().len(), 210);
    assert!(dlq_messages(&server.path("tributary-data")).is_empty());

    // What each received, as the mapping says.
    for event in mixpanel.imported().values() {
        let name = event["event"].as_str().unwrap();
        assert!(
            ["page_view", "search", "button_click", "page_scroll"].contains(&name),
            "{name}"
        );
        let distinct_id = event["properties"]["distinct_id"].as_str().unwrap();
        assert!(distinct_id.starts_with("demo-user-"), "{distinct_id}");
        assert!(event["properties"]["square"].is_number());
    }
    for occurrence in hubspot.stored().values() {
        let name = occurrence["eventName"].as_str().unwrap();
        assert!(name.starts_with("pe0000000_"), "{name}");
        let email = occurrence["email"].as_str().unwrap();
        assert!(
            email.starts_with("demo-user-") && email.ends_with("@example.com"),
            "{email}"
        );
    }
    let requests = mixpanel.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.status == 200 && r.events.len() <= 2_000)
    );
    let requests = hubspot.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.status == 204 && r.occurrences().len() <= 500)
    );
    db.batch_execute(&format!("DROP TABLE \"{table}\""))
        .await
        .unwrap();
}
