//! Kinesis mode against moto (a local AWS emulator that scripts/start-moto.sh starts and
//! `TRIBUTARY_TEST_MOTO_URL` points at): a multi-shard stream, thousands of events with
//! aggregation on and off and with gzip-compressed records, read back with `GetRecords`,
//! de-aggregated by us and by the reference (`aws-kinesis-agg`): every event exactly once, on
//! the shard its partition key maps to.

#![cfg(feature = "kinesis")]

mod kinesis_common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kinesis_common::double::sdk_config;
use serde_json::{Value, json};
use tributary_core::kpl;
use tributary_server::Event;
use tributary_server::kinesis::{self, Config, Producer, RecordCompression};

const SHARDS: i32 = 4;
const EVENTS: usize = 3_000;

struct Read {
    shard_id: String,
    partition_key: String,
    data: Vec<u8>,
}

async fn create_stream(client: &Client, name: &str) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(SHARDS)
        .send()
        .await
        .expect("CreateStream");
    for _ in 0..100 {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("DescribeStreamSummary");
        if summary
            .stream_description_summary()
            .is_some_and(|summary| summary.stream_status() == &StreamStatus::Active)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {name} never became ACTIVE");
}

/// Every Kinesis record in the stream, shard by shard, with GetRecords.
async fn read_stream(client: &Client, name: &str) -> Vec<Read> {
    let shards = client
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .expect("ListShards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator()
            .map(str::to_owned);
        while let Some(current) = iterator {
            let page = client
                .get_records()
                .shard_iterator(current)
                .limit(10_000)
                .send()
                .await
                .expect("GetRecords");
            if page.records().is_empty() {
                break;
            }
            for record in page.records() {
                out.push(Read {
                    shard_id: shard.shard_id().to_owned(),
                    partition_key: record.partition_key().to_owned(),
                    data: record.data().as_ref().to_vec(),
                });
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    out
}

/// The shard each hash key maps to, from the stream's own ranges.
async fn shard_of(client: &Client, name: &str) -> impl Fn(&str) -> String + use<> {
    let shards = client
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .expect("ListShards");
    let ranges: Vec<(u128, u128, String)> = shards
        .shards()
        .iter()
        .map(|shard| {
            let range = shard.hash_key_range().unwrap();
            (
                kpl::parse_explicit_hash_key(range.starting_hash_key()).unwrap(),
                kpl::parse_explicit_hash_key(range.ending_hash_key()).unwrap(),
                shard.shard_id().to_owned(),
            )
        })
        .collect();
    move |key: &str| {
        let hash = kpl::partition_key_hash(key);
        ranges
            .iter()
            .find(|(start, end, _)| *start <= hash && hash <= *end)
            .map(|(_, _, id)| id.clone())
            .unwrap()
    }
}

/// The test's events: a third keyed by device, a third by user, a third by nothing but `id`.
fn event(run: &str, index: usize) -> (Event, String) {
    let id = format!("{run}-{index:05}");
    let event = Event::new("page_view").id(&id).data(
        json!({"index": index, "path": format!("/page/{}", index % 17), "note": "événement ✓"}),
    );
    let (event, key) = match index % 3 {
        0 => {
            let key = format!("anon-{}", index % 97);
            (event.anonymous_id(&key).user_id("user-x"), key)
        }
        1 => {
            let key = format!("user-{}", index % 89);
            (event.user_id(&key), key)
        }
        _ => (event, id.clone()),
    };
    (event, key)
}

async fn produce_and_read_back(aggregation: bool, record_compression: RecordCompression) {
    let Some(url) = kinesis_common::moto_url() else {
        return;
    };
    let config = sdk_config(&url).await;
    let client = Client::new(&config);
    let run = format!(
        "{}-{}",
        match (aggregation, record_compression) {
            (true, RecordCompression::Gzip) => "gzip",
            (true, RecordCompression::None) => "agg",
            (false, _) => "raw",
        },
        std::process::id()
    );
    let stream = format!("tributary-test-{run}");
    create_stream(&client, &stream).await;

    let producer = Producer::builder(&stream)
        .sdk_config(&config)
        .config(Config {
            aggregation,
            // moto numbers a shard's records with an unlocked counter: concurrent PutRecords to
            // one shard can get the same sequence number, and the later record replaces the
            // earlier in its store. One request at a time keeps moto honest (the Kinesis test
            // double covers concurrency).
            max_in_flight_requests: 1,
            record_compression,
            ..Config::default()
        })
        .build()
        .await
        .unwrap();
    let mut handles = Vec::with_capacity(EVENTS);
    let mut keys = HashMap::new();
    for index in 0..EVENTS {
        let (event, key) = event(&run, index);
        keys.insert(format!("{run}-{index:05}"), key);
        handles.push(producer.send(event).await.unwrap());
    }
    producer.flush().await.unwrap();
    let shard_of = shard_of(&client, &stream).await;
    let mut positions = std::collections::HashSet::new();
    let mut aggregated = 0;
    for (index, handle) in handles.into_iter().enumerate() {
        let put = handle.await.unwrap();
        if !aggregation {
            assert!(
                positions.insert((put.shard_id.clone(), put.sequence_number.clone())),
                "duplicate sequence number {} on {}",
                put.sequence_number,
                put.shard_id
            );
        }
        let key = &keys[&format!("{run}-{index:05}")];
        assert_eq!(put.shard_id, shard_of(key), "handle's shard for {key}");
        if put.sub_sequence_number.is_some() {
            aggregated += 1;
        }
    }
    // With aggregation nearly all go in aggregates (one that happens to be alone in its shard's
    // batch goes out raw); without, none.
    if aggregation {
        assert!(
            aggregated > EVENTS * 9 / 10,
            "{aggregated} of {EVENTS} aggregated"
        );
    } else {
        assert_eq!(aggregated, 0);
    }
    let report = producer.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained);
    assert_eq!(report.metrics.user_records_put, EVENTS as u64);

    let records = read_stream(&client, &stream).await;
    if aggregation {
        assert!(
            records.len() < EVENTS / 20,
            "{} Kinesis records for {EVENTS} events",
            records.len()
        );
    } else {
        assert_eq!(records.len(), EVENTS);
    }
    let compressed = records
        .iter()
        .filter(|record| kinesis::is_compressed(&record.data))
        .count();
    match record_compression {
        RecordCompression::None => assert_eq!(compressed, 0),
        RecordCompression::Gzip => assert_eq!(compressed, records.len()),
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut ours = Vec::new();
    let mut inflated_records = Vec::new();
    for record in &records {
        let inflated = kinesis::decompress_record(&record.data)
            .unwrap()
            .into_owned();
        inflated_records.push(inflated);
    }
    if record_compression == RecordCompression::Gzip {
        // Over the stream: the aggregate a flush seals may hold only a record or two, which
        // gzip shrinks less than twofold.
        let stored: usize = records.iter().map(|record| record.data.len()).sum();
        let inflated: usize = inflated_records.iter().map(Vec::len).sum();
        assert!(
            inflated > stored * 2,
            "compressed well: {inflated} bytes in {stored}"
        );
    }
    for (record, data) in records.iter().zip(&inflated_records) {
        for user in kpl::deaggregate(&record.partition_key, None, data).unwrap() {
            let envelope: Value = serde_json::from_slice(user.data).unwrap();
            let id = envelope["id"].as_str().unwrap().to_owned();
            let key = &keys[&id];
            assert_eq!(user.partition_key, key, "partition key of {id}");
            assert_eq!(record.shard_id, shard_of(key), "shard of {id}");
            assert_eq!(envelope["source"], "server");
            assert_eq!(envelope["data"]["note"], "événement ✓");
            *seen.entry(id).or_default() += 1;
            ours.push((user.partition_key.to_owned(), user.data.to_vec()));
        }
    }
    assert_eq!(seen.len(), EVENTS, "every event is in the stream");
    assert!(seen.values().all(|count| *count == 1), "exactly once");

    // The reference de-aggregator reads what we wrote the same way.
    if aggregation && kinesis_common::reference_available() {
        // The reference knows no gzip: it reads what we inflated.
        let input: Vec<Value> = records
            .iter()
            .zip(&inflated_records)
            .map(|(record, data)| {
                json!({
                    "partition_key": record.partition_key,
                    "explicit_hash_key": null,
                    "data": STANDARD.encode(data),
                })
            })
            .collect();
        let output = kinesis_common::run_reference("deaggregate", &Value::Array(input));
        let mut theirs: Vec<(String, Vec<u8>)> = output
            .as_array()
            .unwrap()
            .iter()
            .map(|user| {
                (
                    user["partition_key"].as_str().unwrap().to_owned(),
                    STANDARD.decode(user["data"].as_str().unwrap()).unwrap(),
                )
            })
            .collect();
        assert!(
            output
                .as_array()
                .unwrap()
                .iter()
                .any(|user| user["aggregated"] == true)
        );
        theirs.sort();
        ours.sort();
        assert_eq!(theirs.len(), EVENTS);
        assert!(
            theirs == ours,
            "aws-kinesis-agg de-aggregates our records to the same events"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_once_on_its_shard_with_aggregation() {
    produce_and_read_back(true, RecordCompression::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_once_on_its_shard_with_gzip_aggregates() {
    produce_and_read_back(true, RecordCompression::Gzip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_once_on_its_shard_without_aggregation() {
    produce_and_read_back(false, RecordCompression::None).await;
}
