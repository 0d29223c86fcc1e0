//! A backend server sending events through `tributary-server`'s HTTP mode.
//!
//! Start `tributary serve` (or `./scripts/demo.sh`), then:
//!
//! ```text
//! cargo run -p tributary-samples --example server_http
//! TRIBUTARY_ENDPOINT=http://127.0.0.1:8080 TRIBUTARY_WRITE_KEY=dev-write-key cargo run -p tributary-samples --example server_http
//! ```

#![allow(clippy::print_stdout)]

use std::time::Duration;

use serde_json::json;
use tributary_server::{Client, Event, QueueEvent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint =
        std::env::var("TRIBUTARY_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let write_key = std::env::var("TRIBUTARY_WRITE_KEY").unwrap_or_else(|_| "dev-write-key".into());

    let client = Client::builder(write_key)
        .endpoint(&endpoint)
        .on_event(|event| match event {
            QueueEvent::Delivered { count, .. } => println!("delivered {count} events"),
            QueueEvent::RetryScheduled { cause, delay, .. } => {
                println!("retrying in {delay:?}: {cause}")
            }
            other => println!("{other:?}"),
        })
        .build()?;

    // A user signs up and logs in; the server tracks it on their behalf.
    client.identify(
        "user-42",
        json!({"email": "ada@example.com", "plan": "pro"}),
    )?;
    client.track(
        Event::new("registration")
            .user_id("user-42")
            .data(json!({"referrer": "newsletter"})),
    )?;
    client.track(
        Event::new("login")
            .user_id("user-42")
            .property("method", "password"),
    )?;
    for page in ["/", "/pricing", "/docs"] {
        client.track(
            Event::new("page_view")
                .user_id("user-42")
                .property("path", page),
        )?;
    }
    // An event with a name no rule of samples/rules.json routes, except the archive's "*".
    client.track(
        Event::new("report_exported")
            .user_id("user-42")
            .property("rows", 1200),
    )?;

    // Deliver now and report; a short-lived process must not exit before this.
    let report = client.shutdown(Duration::from_secs(10)).await;
    println!(
        "sent to {endpoint}: {} delivered, {} dropped, {} not delivered",
        report.stats.counters.delivered,
        report.stats.counters.dropped.after_enqueue(),
        report.lost + report.persisted
    );
    if !report.drained {
        return Err(format!(
            "not everything was delivered: is `tributary serve` running at {endpoint}?"
        )
        .into());
    }
    Ok(())
}
