//! The tests' PostgreSQL server: `scripts/start-postgres.sh` starts it on 127.0.0.1 and
//! `scripts/test.sh` exports its URL as `TRIBUTARY_TEST_POSTGRES_URL`.
//!
//! Without that variable a test that needs the server fails, naming the script, so CI can never
//! pass without running them; a developer without PostgreSQL opts out explicitly with
//! `TRIBUTARY_SKIP_POSTGRES_TESTS=1`, and the skip is printed.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

pub const URL_ENV: &str = "TRIBUTARY_TEST_POSTGRES_URL";
pub const SKIP_ENV: &str = "TRIBUTARY_SKIP_POSTGRES_TESTS";

/// The server's URL; `None` (after a loud message) only when the developer opted out.
pub fn url(test: &str) -> Option<String> {
    if let Ok(url) = std::env::var(URL_ENV)
        && !url.is_empty()
    {
        return Some(url);
    }
    if std::env::var(SKIP_ENV).is_ok_and(|value| value == "1") {
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED {test}: {SKIP_ENV}=1 and no {URL_ENV}. Run \
             `export {URL_ENV}=$(scripts/start-postgres.sh)` to run the PostgreSQL tests. ***\n"
        );
        return None;
    }
    panic!(
        "{test} needs PostgreSQL: run `export {URL_ENV}=$(scripts/start-postgres.sh)` first \
         (scripts/test.sh does), or set {SKIP_ENV}=1 to skip the PostgreSQL tests"
    );
}

/// A client for assertions, over TLS as the URL's `sslmode` says (the connector's own TLS).
pub async fn client(url: &str) -> tokio_postgres::Client {
    let (config, tls) = tributary_backend::connectors::postgres_tls::connection(url).unwrap();
    let (client, connection) = config.connect(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A table name no other test (or earlier run) uses.
pub fn unique_table(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// Rows in a table (0 when it does not exist yet).
pub async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    match client
        .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
        .await
    {
        Ok(row) => row.get(0),
        Err(_) => 0,
    }
}

/// The same URL with another password.
pub fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (credentials, host) = rest.split_once('@').unwrap();
    let user = credentials.split(':').next().unwrap();
    format!("{scheme}://{user}:{password}@{host}")
}
