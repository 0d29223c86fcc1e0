//! The PostgreSQL warehouse: one table, idempotent on the event id.
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS events (
//!   id text PRIMARY KEY, name text NOT NULL,
//!   "timestamp" timestamptz, received_at timestamptz,
//!   anonymous_id text, user_id text, source text,
//!   data jsonb NOT NULL, context jsonb NOT NULL, envelope jsonb NOT NULL);
//! CREATE INDEX IF NOT EXISTS events_name_timestamp ON events (name, "timestamp");
//! ```
//!
//! - The URL comes from the variable `url_env` names (`postgres://user:password@host/db`);
//!   connections come from a pool of four (`deadpool-postgres`), over TLS as the URL's
//!   `sslmode` (and `sslrootcert`) say, with libpq's meanings ([`super::postgres_tls`]).
//! - The table (`table`, default `events`) is created on the first delivery when missing.
//! - A batch is one statement: `INSERT … SELECT * FROM UNNEST($1::text[], …) ON CONFLICT (id)
//!   DO NOTHING`, so a redelivered event is stored once.
//! - A lost connection, a server shutting down or restarting, a timeout (`timeout_ms`), a
//!   deadlock or lack of resources is retryable; an error the server reports about the data or
//!   the table (a constraint violation, a wrong type, a missing permission, a failed login) is
//!   permanent. An event PostgreSQL cannot store (`\u0000` in its JSON, an unreadable time) is
//!   refused alone before the statement (permanent), so it does not hold up the others; when
//!   the server refuses a batch permanently (say a `CHECK` constraint one row breaks), its rows
//!   are inserted one by one so that only the rows at fault are dead-lettered.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use super::postgres_tls;
use super::support::{self, Redactor, parse_envelope, text, timestamp};
use super::{Connector, DeliveryFuture, Erasure, ErasureFuture, Failure, OutgoingEvent};
use crate::privacy::SubjectSet;

/// Connections in the pool (a destination runs at most four jobs at once).
pub const POOL_SIZE: usize = 4;

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The event id (primary key).
    pub id: String,
    /// The event name.
    pub name: String,
    /// When it happened.
    pub timestamp: Option<OffsetDateTime>,
    /// When the ingest received it.
    pub received_at: Option<OffsetDateTime>,
    /// The device.
    pub anonymous_id: Option<String>,
    /// The user.
    pub user_id: Option<String>,
    /// The producer.
    pub source: Option<String>,
    /// `data` (`{}` when absent).
    pub data: Value,
    /// `context` (`{}` when absent).
    pub context: Value,
    /// The whole envelope.
    pub envelope: Value,
}

/// Maps a stored event to a row (pure).
///
/// # Errors
/// When the envelope is not a JSON object, a time is not RFC 3339, or the JSON holds
/// `\u0000`, which `jsonb` and `text` cannot store.
pub fn to_row(event: &OutgoingEvent) -> Result<Row, String> {
    if event.json.contains("\\u0000") {
        return Err(format!(
            "event {} contains \\u0000, which PostgreSQL cannot store in text or jsonb",
            event.id
        ));
    }
    let envelope = parse_envelope(event)?;
    let owned = |key: &str| text(&envelope, key).map(str::to_owned);
    let json = |key: &str| {
        envelope
            .get(key)
            .filter(|value| !value.is_null())
            .cloned()
            .unwrap_or_else(|| Value::Object(serde_json::Map::new()))
    };
    Ok(Row {
        id: event.id.clone(),
        name: event.name.clone(),
        timestamp: timestamp(&envelope, "timestamp")?,
        received_at: timestamp(&envelope, "received_at")?,
        anonymous_id: owned("anonymous_id"),
        user_id: owned("user_id"),
        source: owned("source"),
        data: json("data"),
        context: json("context"),
        envelope,
    })
}

/// `events` → `"events"`, `analytics.events` → `"analytics"."events"` (names are checked by
/// the configuration: letters, digits and `_`).
pub fn quoted_table(table: &str) -> String {
    table
        .split('.')
        .map(|part| format!("\"{part}\""))
        .collect::<Vec<_>>()
        .join(".")
}

/// The statements creating the table and its index when missing.
pub fn create_table_sql(table: &str) -> String {
    let last = table.rsplit('.').next().unwrap_or(table);
    let quoted = quoted_table(table);
    format!(
        "CREATE TABLE IF NOT EXISTS {quoted} (
             id text PRIMARY KEY,
             name text NOT NULL,
             \"timestamp\" timestamptz,
             received_at timestamptz,
             anonymous_id text,
             user_id text,
             source text,
             data jsonb NOT NULL,
             context jsonb NOT NULL,
             envelope jsonb NOT NULL
         );
         CREATE INDEX IF NOT EXISTS \"{last}_name_timestamp\" ON {quoted} (name, \"timestamp\");"
    )
}

/// The batch insert: one row per array element, duplicates ignored.
pub fn insert_sql(table: &str) -> String {
    format!(
        "INSERT INTO {} (id, name, \"timestamp\", received_at, anonymous_id, user_id, source, data, context, envelope)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                              $5::text[], $6::text[], $7::text[], $8::jsonb[], $9::jsonb[], $10::jsonb[])
         ON CONFLICT (id) DO NOTHING",
        quoted_table(table)
    )
}

/// Whether trying again can help, from the SQLSTATE class: connection (08), transaction
/// rollback such as deadlocks (40), insufficient resources (53), operator intervention such as
/// a shutdown (57), system errors (58, XX) and lock timeouts (55P03) can pass; the rest
/// (data, constraints, syntax, permissions, login) cannot.
pub fn is_retryable_sqlstate(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58" | "XX")) || code == "55P03"
}

fn classify(error: &tokio_postgres::Error, doing: &str) -> Failure {
    match error.as_db_error() {
        Some(db) => {
            let mut message = format!(
                "PostgreSQL: {doing}: {} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            );
            if let Some(detail) = db.detail() {
                message.push_str(&format!(" ({detail})"));
            }
            if is_retryable_sqlstate(db.code().code()) {
                Failure::retryable(message)
            } else {
                Failure::permanent(message)
            }
        }
        None => Failure::retryable(format!("PostgreSQL: {doing}: {}", describe(error))),
    }
}

fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn pool_failure(error: &deadpool_postgres::PoolError) -> Failure {
    match error {
        deadpool_postgres::PoolError::Backend(error) => classify(error, "cannot connect"),
        other => Failure::retryable(format!("PostgreSQL: cannot connect: {}", describe(other))),
    }
}

/// Writes batches into one table.
pub struct PostgresConnector {
    pool: Pool,
    table: String,
    timeout: Duration,
    created: OnceCell<()>,
    redactor: Redactor,
}

impl PostgresConnector {
    /// A connector for the database at `url` (not connected until the first delivery).
    ///
    /// # Errors
    /// When the URL is not a usable connection string; the message never repeats the URL.
    pub fn new(url: &str, table: &str, timeout: Duration) -> Result<Self, String> {
        let (mut config, tls_connector) = postgres_tls::connection(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("tributary");
        }
        let mut secrets = vec![url.to_owned()];
        if let Some(password) = config.get_password() {
            secrets.push(String::from_utf8_lossy(password).into_owned());
        }
        let manager = Manager::from_config(
            config,
            tls_connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|error| format!("cannot build the connection pool: {error}"))?;
        Ok(Self {
            pool,
            table: table.to_owned(),
            timeout,
            created: OnceCell::new(),
            redactor: Redactor::new(secrets),
        })
    }

    /// Inserts the rows; per-row failures (by position in `rows`) when the batch statement was
    /// refused permanently and the culprits were found row by row.
    async fn write(&self, rows: &[Row]) -> Result<Vec<(usize, Failure)>, Failure> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|error| pool_failure(&error))?;
        self.created
            .get_or_try_init(|| async {
                client
                    .batch_execute(&create_table_sql(&self.table))
                    .await
                    .map_err(|error| {
                        // Two processes creating the table at once, or a privilege granted
                        // later: creating it again may well work.
                        let mut failure = classify(&error, "cannot create the table");
                        failure.class = super::FailureClass::Retryable;
                        failure
                    })
            })
            .await?;
        let statement = client
            .prepare_cached(&insert_sql(&self.table))
            .await
            .map_err(|error| classify(&error, "cannot prepare the insert"))?;
        let failure = match insert(&client, &statement, rows).await {
            Ok(()) => return Ok(Vec::new()),
            Err(error) => classify(&error, "the insert failed"),
        };
        if failure.class == super::FailureClass::Retryable || rows.len() == 1 {
            return Err(failure);
        }
        // One row refused the statement: find which, row by row (inserts are idempotent).
        let mut failures = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            if let Err(error) = insert(&client, &statement, std::slice::from_ref(row)).await {
                let failure = classify(&error, "the insert failed");
                if failure.class == super::FailureClass::Retryable {
                    return Err(failure);
                }
                failures.push((index, failure));
            }
        }
        Ok(failures)
    }
}

/// One `INSERT … SELECT * FROM UNNEST(…)` of these rows.
async fn insert(
    client: &deadpool_postgres::Object,
    statement: &tokio_postgres::Statement,
    rows: &[Row],
) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    let names: Vec<&str> = rows.iter().map(|row| row.name.as_str()).collect();
    let timestamps: Vec<Option<OffsetDateTime>> = rows.iter().map(|row| row.timestamp).collect();
    let received: Vec<Option<OffsetDateTime>> = rows.iter().map(|row| row.received_at).collect();
    let anonymous_ids: Vec<Option<&str>> =
        rows.iter().map(|row| row.anonymous_id.as_deref()).collect();
    let user_ids: Vec<Option<&str>> = rows.iter().map(|row| row.user_id.as_deref()).collect();
    let sources: Vec<Option<&str>> = rows.iter().map(|row| row.source.as_deref()).collect();
    let data: Vec<&Value> = rows.iter().map(|row| &row.data).collect();
    let contexts: Vec<&Value> = rows.iter().map(|row| &row.context).collect();
    let envelopes: Vec<&Value> = rows.iter().map(|row| &row.envelope).collect();
    client
        .execute(
            statement,
            &[
                &ids,
                &names,
                &timestamps,
                &received,
                &anonymous_ids,
                &user_ids,
                &sources,
                &data,
                &contexts,
                &envelopes,
            ],
        )
        .await
        .map(|_| ())
}

impl Connector for PostgresConnector {
    fn deliver<'a>(&'a self, events: &'a [OutgoingEvent]) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let mut failures = Vec::new();
            let mut rows = Vec::with_capacity(events.len());
            let mut indexes = Vec::with_capacity(events.len());
            for (index, event) in events.iter().enumerate() {
                match to_row(event) {
                    Ok(row) => {
                        rows.push(row);
                        indexes.push(index);
                    }
                    Err(message) => failures.push((
                        index,
                        Failure::permanent(format!(
                            "PostgreSQL: cannot store the event: {message}"
                        )),
                    )),
                }
            }
            if !rows.is_empty() {
                let written = match tokio::time::timeout(self.timeout, self.write(&rows)).await {
                    Ok(written) => written,
                    Err(_) => Err(Failure::retryable(format!(
                        "PostgreSQL: the write did not finish within {} ms",
                        self.timeout.as_millis()
                    ))),
                };
                match written {
                    Ok(refused) => failures.extend(
                        refused
                            .into_iter()
                            .map(|(position, failure)| (indexes[position], failure)),
                    ),
                    Err(failure) => {
                        failures.extend(indexes.iter().map(|index| (*index, failure.clone())));
                    }
                }
            }
            let failures = failures
                .into_iter()
                .map(|(index, failure)| (index, self.redactor.failure(failure)))
                .collect();
            support::outcome(events.len(), failures)
        })
    }

    fn erase<'a>(&'a self, subjects: &'a SubjectSet) -> ErasureFuture<'a> {
        Box::pin(async move {
            let erase = async {
                let client = self
                    .pool
                    .get()
                    .await
                    .map_err(|error| pool_failure(&error))?;
                let user_ids = subjects.user_ids();
                let anonymous_ids = subjects.anonymous_ids();
                match client
                    .execute(&delete_sql(&self.table), &[&user_ids, &anonymous_ids])
                    .await
                {
                    Ok(rows) => Ok(rows),
                    // No table yet: nothing was ever delivered here.
                    Err(error)
                        if error.code()
                            == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
                    {
                        Ok(0)
                    }
                    Err(error) => Err(classify(&error, "the delete failed")),
                }
            };
            match tokio::time::timeout(self.timeout, erase).await {
                Ok(Ok(rows)) => Erasure::Erased(rows),
                Ok(Err(failure)) => Erasure::Failed(self.redactor.failure(failure).message),
                Err(_) => Erasure::Failed(format!(
                    "PostgreSQL: the delete did not finish within {} ms",
                    self.timeout.as_millis()
                )),
            }
        })
    }
}

/// The privacy delete: every row of these user ids or anonymous ids.
pub fn delete_sql(table: &str) -> String {
    format!(
        "DELETE FROM {} WHERE user_id = ANY($1::text[]) OR anonymous_id = ANY($2::text[])",
        quoted_table(table)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(json: &str) -> OutgoingEvent {
        OutgoingEvent {
            id: "e1".into(),
            name: "login".into(),
            partition_key: "e1".into(),
            json: json.into(),
        }
    }

    #[test]
    fn maps_the_envelope_to_a_row() {
        let row = to_row(&event(
            r#"{"id":"e1","name":"login","data":{"method":"sso"},"timestamp":"2026-01-02T03:04:05.006+01:00","received_at":"2026-01-02T02:04:06Z","user_id":"u1","source":"web"}"#,
        ))
        .unwrap();
        assert_eq!(row.id, "e1");
        assert_eq!(row.name, "login");
        assert_eq!(row.timestamp.unwrap().unix_timestamp(), 1_767_319_445);
        assert_eq!(row.received_at.unwrap().unix_timestamp(), 1_767_319_446);
        assert_eq!(row.anonymous_id, None);
        assert_eq!(row.user_id.as_deref(), Some("u1"));
        assert_eq!(row.source.as_deref(), Some("web"));
        assert_eq!(row.data, json!({"method": "sso"}));
        assert_eq!(row.context, json!({}), "absent context is {{}}");
        assert_eq!(row.envelope["data"]["method"], "sso");
    }

    #[test]
    fn unstorable_events_are_refused() {
        let error = to_row(&event(r#"{"id":"e1","name":"x","data":{"a":"\u0000"}}"#)).unwrap_err();
        assert!(error.contains("\\u0000"), "{error}");
        assert!(
            to_row(&event(
                r#"{"id":"e1","name":"x","data":{},"timestamp":"soon"}"#
            ))
            .is_err()
        );
        assert!(to_row(&event("[1]")).is_err());
    }

    #[test]
    fn sql_quotes_the_table() {
        assert_eq!(quoted_table("analytics.events"), "\"analytics\".\"events\"");
        let create = create_table_sql("analytics.events");
        assert!(create.contains("CREATE TABLE IF NOT EXISTS \"analytics\".\"events\""));
        assert!(create.contains("\"events_name_timestamp\" ON \"analytics\".\"events\""));
        assert!(insert_sql("events").contains("ON CONFLICT (id) DO NOTHING"));
    }

    #[test]
    fn sqlstates() {
        for code in [
            "08006", "08001", "57P01", "57P03", "40P01", "40001", "53300", "55P03", "XX000",
        ] {
            assert!(is_retryable_sqlstate(code), "{code}");
        }
        for code in [
            "23505", "23502", "22P02", "42P01", "42501", "28P01", "3D000", "42P10",
        ] {
            assert!(!is_retryable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_them() {
        let error = PostgresConnector::new(
            "postgres://user:hunter22@host:notaport/db",
            "events",
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(!error.contains("hunter22"), "{error}");
    }
}
