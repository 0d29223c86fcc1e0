//! A backend server putting the article's 300 events straight into the Kinesis data stream
//! `data-collection-stream` through `tributary-server`'s Kinesis mode.
//!
//! The stream must exist. Credentials, region and endpoint come from the standard AWS
//! configuration chain, `AWS_ENDPOINT_URL` included, so the same command runs against AWS or a
//! local emulator:
//!
//! ```text
//! cargo run -p tributary-samples --example kinesis_producer
//! # against moto (scripts/start-moto.sh starts one on 127.0.0.1:5799), after creating the stream:
//! AWS_ENDPOINT_URL=http://127.0.0.1:5799 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test \
//!   AWS_SECRET_ACCESS_KEY=test cargo run -p tributary-samples --example kinesis_producer
//! ```
//!
//! `TRIBUTARY_STREAM` overrides the stream's name.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use serde_json::json;
use tributary_server::Event;
use tributary_server::kinesis::Producer;

/// The article's event names; event `i` is named `event-i` when `i % 10 == 9` (no rule of the
/// article's takes it), else these in turn (as `tributary send`'s demo traffic).
const NAMES: [&str; 9] = [
    "login",
    "logout",
    "registration",
    "page_view",
    "search",
    "button_click",
    "page_scroll",
    "email_sent",
    "email_open",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stream =
        std::env::var("TRIBUTARY_STREAM").unwrap_or_else(|_| "data-collection-stream".into());
    let producer = Producer::builder(&stream).build().await?;

    let mut handles = Vec::with_capacity(300);
    for index in 0u64..300 {
        let name = if index % 10 == 9 {
            format!("event-{index}")
        } else {
            NAMES[(index % 9) as usize].to_owned()
        };
        // Ten users; each user's events share a partition key, so they stay in order on one shard.
        let event = Event::new(name)
            .user_id(format!("user-{}", index % 10))
            .data(json!({ "square": index * index }));
        handles.push(producer.send(event).await?);
    }

    let mut put = 0;
    let mut shards = std::collections::BTreeMap::new();
    for handle in handles {
        match handle.await {
            Ok(outcome) => {
                put += 1;
                *shards.entry(outcome.shard_id).or_insert(0) += 1;
            }
            Err(failure) => println!("not put: {failure}"),
        }
    }
    let report = producer.shutdown(Duration::from_secs(10)).await;
    let metrics = report.metrics;
    println!(
        "put {put} of 300 events into {stream} in {} Kinesis records ({} PutRecords calls): {shards:?}",
        metrics.kinesis_records_put, metrics.put_records_requests
    );
    if put != 300 {
        return Err(format!("only {put} of 300 events were put").into());
    }
    Ok(())
}
