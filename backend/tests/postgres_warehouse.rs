//! The PostgreSQL connector against a real server (`scripts/start-postgres.sh`; the URL in
//! `TRIBUTARY_TEST_POSTGRES_URL`): idempotent batched writes, the table created when missing,
//! what is retried and what is not, and no password anywhere.

mod common;
mod contract;

use std::time::Duration;

use common::{Server, batch, config_with, eventually, post as post_events, text};
use contract::postgres::{client, count, unique_table, url, with_password};
use contract::{dlq_messages, files_containing, outgoing};
use serde_json::{Value, json};
use tributary_backend::connectors::postgres::PostgresConnector;
use tributary_backend::connectors::{Connector, Delivery, FailureClass};

fn envelope(n: usize, name: &str) -> Value {
    json!({
        "id": format!("pg-{n}"),
        "name": name,
        "data": {"n": n, "nested": {"ok": true}},
        "timestamp": "2026-01-15T10:00:00.250Z",
        "received_at": "2026-01-15T10:00:01Z",
        "user_id": format!("user-{n}"),
        "source": "server",
        "context": {"library": {"name": "tributary-server"}}
    })
}

#[tokio::test]
async fn duplicates_delivered_twice_are_stored_once() {
    let Some(url) = url("duplicates_delivered_twice_are_stored_once") else {
        return;
    };
    let table = unique_table("dup");
    let warehouse = PostgresConnector::new(&url, &table, Duration::from_secs(10)).unwrap();
    let first: Vec<_> = (0..3).map(|n| outgoing(&envelope(n, "login"))).collect();
    assert_eq!(
        warehouse.deliver(&first).await,
        Delivery::Delivered,
        "the table is created"
    );
    // Again, with a new event and a duplicate inside the batch.
    let mut second = first.clone();
    second.push(outgoing(&envelope(3, "search")));
    second.push(outgoing(&envelope(3, "search")));
    assert_eq!(warehouse.deliver(&second).await, Delivery::Delivered);

    let db = client(&url).await;
    assert_eq!(count(&db, &table).await, 4);
    let row = db
        .query_one(
            &format!(
                "SELECT name, \"timestamp\" = '2026-01-15T10:00:00.250Z'::timestamptz, user_id, source,
                        data->'nested'->>'ok', context->'library'->>'name', envelope->>'id'
                 FROM \"{table}\" WHERE id = 'pg-3'"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "search");
    assert!(row.get::<_, bool>(1), "timestamptz");
    assert_eq!(row.get::<_, String>(2), "user-3");
    assert_eq!(row.get::<_, String>(3), "server");
    assert_eq!(row.get::<_, String>(4), "true", "data is jsonb");
    assert_eq!(
        row.get::<_, String>(5),
        "tributary-server",
        "context is jsonb"
    );
    assert_eq!(row.get::<_, String>(6), "pg-3");
    db.batch_execute(&format!("DROP TABLE \"{table}\""))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_constraint_violation_is_permanent_for_its_row_only() {
    let Some(url) = url("a_constraint_violation_is_permanent_for_its_row_only") else {
        return;
    };
    let table = unique_table("check");
    let db = client(&url).await;
    db.batch_execute(&format!(
        "CREATE TABLE \"{table}\" (id text PRIMARY KEY, name text NOT NULL CHECK (name <> 'forbidden'),
            \"timestamp\" timestamptz, received_at timestamptz, anonymous_id text, user_id text,
            source text, data jsonb NOT NULL, context jsonb NOT NULL, envelope jsonb NOT NULL)"
    ))
    .await
    .unwrap();
    let warehouse = PostgresConnector::new(&url, &table, Duration::from_secs(10)).unwrap();
    let events = [
        outgoing(&envelope(0, "login")),
        outgoing(&envelope(1, "forbidden")),
        outgoing(&envelope(2, "login")),
    ];
    let delivery = warehouse.deliver(&events).await;
    let Delivery::Partial(failures) = delivery else {
        panic!("{delivery:?}")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, 1);
    assert_eq!(failures[0].1.class, FailureClass::Permanent, "not retried");
    assert!(
        failures[0].1.message.contains("23514"),
        "{}",
        failures[0].1.message
    );
    assert_eq!(count(&db, &table).await, 2, "the other rows are stored");

    // Bad data PostgreSQL cannot hold is refused alone, before the statement.
    let mut nul = envelope(3, "login");
    nul["data"]["text"] = json!("a\u{0}b");
    let delivery = warehouse
        .deliver(&[outgoing(&nul), outgoing(&envelope(4, "login"))])
        .await;
    let Delivery::Partial(failures) = delivery else {
        panic!("{delivery:?}")
    };
    assert_eq!(failures[0].0, 0);
    assert_eq!(failures[0].1.class, FailureClass::Permanent);
    assert_eq!(count(&db, &table).await, 3);
    db.batch_execute(&format!("DROP TABLE \"{table}\""))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lost_connection_is_retryable() {
    let Some(url) = url("a_lost_connection_is_retryable") else {
        return;
    };
    // Nothing listens on port 1.
    let nowhere = url.replacen(
        &url[url.find('@').unwrap()..url.rfind('/').unwrap()],
        "@127.0.0.1:1",
        1,
    );
    let warehouse = PostgresConnector::new(&nowhere, "events", Duration::from_secs(2)).unwrap();
    let Delivery::Failed(failure) = warehouse.deliver(&[outgoing(&envelope(0, "x"))]).await else {
        panic!()
    };
    assert_eq!(
        failure.class,
        FailureClass::Retryable,
        "{}",
        failure.message
    );

    // The server ends the connector's connections (as a restart or a failover does).
    let table = unique_table("lost");
    let separator = if url.contains('?') { '&' } else { '?' };
    let tagged = format!("{url}{separator}application_name={table}");
    let warehouse = PostgresConnector::new(&tagged, &table, Duration::from_secs(5)).unwrap();
    assert_eq!(
        warehouse.deliver(&[outgoing(&envelope(1, "x"))]).await,
        Delivery::Delivered
    );
    let db = client(&url).await;
    let ended = db
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&table],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert!(ended >= 1);
    let mut outcomes = Vec::new();
    for n in 2..5 {
        let delivery = warehouse.deliver(&[outgoing(&envelope(n, "x"))]).await;
        if let Delivery::Failed(failure) = &delivery {
            assert_eq!(
                failure.class,
                FailureClass::Retryable,
                "{}",
                failure.message
            );
        }
        outcomes.push(delivery);
    }
    assert_eq!(outcomes.last(), Some(&Delivery::Delivered), "{outcomes:?}");
    db.batch_execute(&format!("DROP TABLE \"{table}\""))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stores_each_event_once_even_when_redriven() {
    let Some(url) = url("serve_stores_each_event_once_even_when_redriven") else {
        return;
    };
    let table = unique_table("serve");
    let config = config_with(&format!(
        "\n[destinations.wh]\nkind = \"postgres\"\nurl_env = \"TEST_WAREHOUSE_URL\"\ntable = \"{table}\"\nbatch_size = 2\n"
    ));
    let rules =
        r#"[{"destination_name": "wh", "destination_arn": "local", "enabled_events": ["*"]}]"#;
    let server = Server::start_with_env(&config, rules, &[("TEST_WAREHOUSE_URL", &url)]);
    let events: Vec<Value> = (0..5).map(|n| envelope(n, "login")).collect();
    assert_eq!(
        post_events(&server.url("/v1/batch"), batch(&events))
            .await
            .status(),
        200
    );
    let db = client(&url).await;
    let started = std::time::Instant::now();
    while count(&db, &table).await < 5 {
        assert!(started.elapsed() < Duration::from_secs(15), "5 rows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The same events again, straight to the destination: a backup line whose body is a bare
    // array of envelopes.
    let line = json!({"body": serde_json::to_string(&events).unwrap(), "attributes": {}});
    std::fs::write(server.path("again.json"), format!("{line}\n")).unwrap();
    let redrive = server.cli(&[
        "dlq",
        "redrive",
        "--from",
        "again.json",
        "--destination",
        "wh",
    ]);
    assert!(redrive.status.success(), "{}", text(&redrive));
    assert_eq!(count(&db, &table).await, 5, "stored once");
    assert!(dlq_messages(&server.path("data")).is_empty());
    db.batch_execute(&format!("DROP TABLE \"{table}\""))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_dead_lettered_without_the_password() {
    let Some(url) = url("a_refused_login_is_dead_lettered_without_the_password") else {
        return;
    };
    const PASSWORD: &str = "not-the-password-8c1f";
    let wrong = with_password(&url, PASSWORD);
    let config = config_with(
        "\n[destinations.wh]\nkind = \"postgres\"\nurl_env = \"TEST_WAREHOUSE_URL\"\nretry = { max_attempts = 3, base_delay_ms = 50, max_delay_ms = 100 }\n",
    );
    let rules =
        r#"[{"destination_name": "wh", "destination_arn": "local", "enabled_events": ["*"]}]"#;
    let server = Server::start_with_env(&config, rules, &[("TEST_WAREHOUSE_URL", &wrong)]);
    assert_eq!(
        post_events(&server.url("/v1/batch"), batch(&[envelope(0, "login")]))
            .await
            .status(),
        200
    );
    let data = server.path("data");
    eventually(Duration::from_secs(15), "dead-lettered", || {
        !dlq_messages(&data).is_empty()
    })
    .await;
    let message = &dlq_messages(&data)[0];
    assert_eq!(
        message["error"]["class"], "permanent",
        "a refused login is permanent"
    );
    assert!(
        message["error"]["message"]
            .as_str()
            .unwrap()
            .contains("28P01"),
        "{message}"
    );
    assert_eq!(message["attempts"], 1);
    for secret in [PASSWORD, wrong.as_str()] {
        assert!(!server.log().contains(secret));
        assert!(!text(&server.cli(&["dlq", "list"])).contains(secret));
        assert!(files_containing(server.folder.path(), secret).is_empty());
    }

    // A URL that is not one: the startup error names the variable, not the value.
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("tributary.toml"), &config).unwrap();
    std::fs::write(folder.path().join("rules.json"), rules).unwrap();
    let garbage = format!("postgres://tributary:{PASSWORD}@127.0.0.1:notaport/db");
    let output = std::process::Command::new(common::BINARY)
        .args(["serve", "--config", "tributary.toml"])
        .current_dir(folder.path())
        .env("TEST_WAREHOUSE_URL", &garbage)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = text(&output);
    assert!(said.contains("url_env names TEST_WAREHOUSE_URL"), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");
}

/// The test server's URL with `sslmode` (and `sslrootcert`, when given) replaced, and an
/// application name to find the connector's connections by.
fn with_tls(url: &str, sslmode: &str, root_cert: Option<&str>, application: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| !matches!(key.as_ref(), "sslmode" | "sslrootcert"))
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    let mut query = url.query_pairs_mut();
    query.clear().extend_pairs(kept);
    query.append_pair("sslmode", sslmode);
    if let Some(root_cert) = root_cert {
        query.append_pair("sslrootcert", root_cert);
    }
    query.append_pair("application_name", application);
    drop(query);
    url.into()
}

#[tokio::test]
async fn tls_follows_libpq_s_sslmode() {
    let Some(url) = url("tls_follows_libpq_s_sslmode") else {
        return;
    };
    // scripts/start-postgres.sh gives a verify-full URL naming its own CA.
    let root_cert = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == "sslrootcert")
        .map(|(_, value)| value.into_owned())
        .expect("the test server's URL names its CA (sslrootcert)");
    let table = unique_table("tls");
    let db = client(&url).await;
    let cases = [
        ("verify-full", Some(root_cert.as_str()), Some(true)),
        ("verify-ca", Some(root_cert.as_str()), Some(true)),
        ("require", None, Some(true)),
        ("prefer", None, Some(true)),
        ("disable", None, Some(false)),
        // The system's CAs do not know the test CA: refused, and said why.
        ("verify-full", None, None),
    ];
    for (n, (sslmode, root, encrypted)) in cases.into_iter().enumerate() {
        let application = format!("tributary-tls-{}-{n}", std::process::id());
        let warehouse = PostgresConnector::new(
            &with_tls(&url, sslmode, root, &application),
            &table,
            Duration::from_secs(10),
        )
        .unwrap();
        let delivery = warehouse
            .deliver(&[outgoing(&envelope(100 + n, "login"))])
            .await;
        let Some(encrypted) = encrypted else {
            let Delivery::Failed(failure) = delivery else {
                panic!("{sslmode} without the CA: {delivery:?}")
            };
            assert!(
                failure.message.contains("certificate"),
                "{sslmode}: {}",
                failure.message
            );
            continue;
        };
        assert_eq!(delivery, Delivery::Delivered, "{sslmode}");
        let row = db
            .query_one(
                "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name = $1",
                &[&application],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, Option<bool>>(0), Some(encrypted), "{sslmode}");
    }
    assert_eq!(count(&db, &table).await, 5);
    db.batch_execute(&format!("DROP TABLE \"{table}\""))
        .await
        .unwrap();
}
