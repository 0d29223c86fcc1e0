//! The KPL format against the reference fixture (`tests/data/kpl/`, copied from
//! `shared/fixtures/kpl/`): an aggregate made by `aws-kinesis-agg` 1.2.3 and what it must
//! de-aggregate to.

use serde_json::Value;
use tributary_core::kpl::{self, AggregateBuilder};

const REFERENCE: &[u8] = include_bytes!("data/kpl/aggregated-10.bin");

fn expected() -> Vec<(String, Option<String>, String)> {
    let json: Value =
        serde_json::from_str(include_str!("data/kpl/aggregated-10.json")).expect("fixture");
    json["user_records"]
        .as_array()
        .expect("user_records")
        .iter()
        .map(|record| {
            (
                record["partition_key"].as_str().unwrap().to_owned(),
                record["explicit_hash_key"].as_str().map(str::to_owned),
                record["data_utf8"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn deaggregates_the_reference_aggregate() {
    assert_eq!(REFERENCE.len(), 2141);
    let records = kpl::deaggregate("user-42", None, REFERENCE).unwrap();
    let got: Vec<_> = records
        .iter()
        .map(|record| {
            (
                record.partition_key.to_owned(),
                record.explicit_hash_key.map(str::to_owned),
                String::from_utf8(record.data.to_vec()).unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected());
    let subs: Vec<_> = records.iter().map(|r| r.sub_sequence_number).collect();
    assert_eq!(subs, (0..10).map(Some).collect::<Vec<_>>());
    // Three partition keys, each stored once.
    assert_eq!(
        kpl::decode(REFERENCE).unwrap().partition_keys,
        ["user-42", "anon-7", "user-ünï"]
    );
}

#[test]
fn builds_the_reference_aggregate_byte_for_byte() {
    let mut builder = AggregateBuilder::new(kpl::DEFAULT_MAX_AGGREGATE_BYTES);
    for (key, hash_key, data) in expected() {
        assert!(builder.try_add(&key, hash_key.as_deref(), data.as_bytes()));
    }
    assert_eq!(builder.size_bytes(), REFERENCE.len());
    assert_eq!(builder.finish(), REFERENCE);
}
