//! PostgreSQL restarts (`pg_ctlcluster … restart`, through `scripts/start-postgres.sh
//! --restart`) while `tributary serve` delivers a stream of events: every event ends up in the
//! table exactly once and nothing is dead-lettered. In a test binary of its own, so the restart
//! cannot disturb the other PostgreSQL tests.

mod common;
mod contract;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, batch, config_with, post as post_events};
use contract::dlq_messages;
use contract::postgres::{client, count, unique_table, url};
use serde_json::{Value, json};

const EVENTS: usize = 1_500;
const PER_REQUEST: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_stream_loses_nothing() {
    let Some(url) = url("a_server_restart_mid_stream_loses_nothing") else {
        return;
    };
    let table = unique_table("restart");
    let config = config_with(&format!(
        r#"
[destinations.wh]
kind = "postgres"
url_env = "TEST_WAREHOUSE_URL"
table = "{table}"
batch_size = 20
timeout_ms = 3000
retry = {{ max_attempts = 40, base_delay_ms = 100, max_delay_ms = 1000 }}
"#
    ));
    let rules =
        r#"[{"destination_name": "wh", "destination_arn": "local", "enabled_events": ["*"]}]"#;
    let server = Server::start_with_env(&config, rules, &[("TEST_WAREHOUSE_URL", &url)]);
    let db = client(&url).await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/start-postgres.sh");
    let mut restart = None;
    let started = Instant::now();
    for request in 0..EVENTS / PER_REQUEST {
        let events: Vec<Value> = (0..PER_REQUEST)
            .map(|i| {
                let n = request * PER_REQUEST + i;
                json!({"id": format!("r-{n}"), "name": "page_view", "data": {"n": n}, "user_id": format!("u-{}", n % 7)})
            })
            .collect();
        assert_eq!(
            post_events(&server.url("/v1/batch"), batch(&events))
                .await
                .status(),
            200
        );
        if request == 10 {
            // Deliveries are flowing: restart the server under them.
            assert!(
                count(&db, &table).await > 0,
                "delivering before the restart"
            );
            restart = Some(std::thread::spawn({
                let script = script.clone();
                move || {
                    std::process::Command::new("bash")
                        .arg(script)
                        .arg("--restart")
                        .output()
                        .unwrap()
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    let output = restart.unwrap().join().unwrap();
    assert!(
        output.status.success(),
        "restart failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The assertion client lost its connection too.
    let db = client(&url).await;
    loop {
        let stored = count(&db, &table).await;
        if stored == EVENTS as i64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{stored} of {EVENTS} stored; serve.log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let distinct: i64 = db
        .query_one(&format!("SELECT count(DISTINCT id) FROM \"{table}\""), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, EVENTS as i64);
    assert!(
        dlq_messages(&server.path("data")).is_empty(),
        "nothing dead-lettered"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics["tributary_destination_retried_total{destination=\"wh\"}"] > 0.0,
        "the restart was felt: deliveries failed and were retried"
    );
    assert_eq!(
        metrics["tributary_destination_delivered_total{destination=\"wh\"}"],
        EVENTS as f64
    );
    db.batch_execute(&format!("DROP TABLE \"{table}\""))
        .await
        .unwrap();
}
