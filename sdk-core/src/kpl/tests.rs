use super::proto::{put_varint, varint_len};
use super::*;

fn build(records: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut builder = AggregateBuilder::new(usize::MAX);
    for (key, hash_key, data) in records {
        builder.add(key, *hash_key, data);
    }
    builder.finish()
}

/// Re-frames a protobuf message as an aggregate with a correct MD5.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(message);
    out.extend_from_slice(&md5(message));
    out
}

#[test]
fn varint_lengths_match_the_encoder() {
    for value in [
        0,
        1,
        127,
        128,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX,
    ] {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        assert_eq!(out.len(), varint_len(value), "{value}");
    }
}

#[test]
fn round_trips_records_and_shares_keys() {
    let bytes = build(&[
        ("user-1", None, b"one"),
        ("user-2", Some("42"), b""),
        ("user-1", Some("42"), &[0xF3, 0x89, 0x9A, 0xC2]),
    ]);
    assert!(is_aggregate(&bytes));
    let aggregate = decode(&bytes).unwrap();
    assert_eq!(aggregate.partition_keys, ["user-1", "user-2"]);
    assert_eq!(aggregate.explicit_hash_keys, ["42"]);
    let records = deaggregate("outer", None, &bytes).unwrap();
    let got: Vec<_> = records
        .iter()
        .map(|record| {
            (
                record.partition_key,
                record.explicit_hash_key,
                record.data,
                record.sub_sequence_number,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("user-1", None, &b"one"[..], Some(0)),
            ("user-2", Some("42"), &b""[..], Some(1)),
            ("user-1", Some("42"), &[0xF3, 0x89, 0x9A, 0xC2][..], Some(2)),
        ]
    );
}

#[test]
fn predicts_sizes_exactly_and_keeps_the_limit() {
    let mut builder = AggregateBuilder::new(1_000);
    assert_eq!(builder.size_bytes(), 20);
    let mut added = 0;
    loop {
        let key = format!("key-{}", added % 7);
        let data = vec![b'x'; 10 + added * 3];
        let hash_key = (added % 2 == 0).then(|| "123456789".to_owned());
        let predicted = builder.size_with(&key, hash_key.as_deref(), data.len());
        if !builder.try_add(&key, hash_key.as_deref(), &data) {
            assert!(predicted > 1_000);
            break;
        }
        assert_eq!(builder.size_bytes(), predicted);
        added += 1;
    }
    assert!(added > 5);
    let size = builder.size_bytes();
    let bytes = builder.finish();
    assert_eq!(bytes.len(), size);
    assert!(bytes.len() <= 1_000);
    assert_eq!(decode(&bytes).unwrap().records.len(), added);
    assert!(builder.is_empty());

    // A record larger than the limit still gets an aggregate of its own.
    assert!(builder.try_add("k", None, &[0; 2_000]));
    assert!(!builder.try_add("k", None, b"x"));
}

#[test]
fn passes_plain_records_through() {
    let records = deaggregate("pk", Some("7"), b"{\"name\":\"x\"}").unwrap();
    assert_eq!(
        records,
        [UserRecord {
            partition_key: "pk",
            explicit_hash_key: Some("7"),
            data: b"{\"name\":\"x\"}",
            sub_sequence_number: None,
        }]
    );
    assert_eq!(deaggregate("pk", None, b"").unwrap().len(), 1);
    assert_eq!(decode(b"{}"), Err(KplError::BadMagic));
}

#[test]
fn reports_corrupt_aggregates() {
    let good = build(&[("a", None, b"data")]);

    let mut flipped = good.clone();
    flipped[8] ^= 1;
    let error = deaggregate("pk", None, &flipped).unwrap_err();
    assert!(matches!(error, KplError::BadChecksum { .. }), "{error}");
    assert!(error.to_string().contains("MD5 mismatch"));

    let error = deaggregate("pk", None, &good[..10]).unwrap_err();
    assert_eq!(error, KplError::TooShort { len: 10 });

    // A record whose data length runs past the end.
    let message = [0x1A, 0x05, 0x08, 0x00, 0x1A, 0x09, b'x'];
    let error = decode(&frame(&message)).unwrap_err();
    assert!(matches!(error, KplError::Truncated { .. }), "{error}");

    // Partition key index 3 of a one-entry table.
    let message = [0x0A, 0x01, b'k', 0x1A, 0x04, 0x08, 0x03, 0x1A, 0x00];
    let error = decode(&frame(&message)).unwrap_err();
    assert_eq!(
        error,
        KplError::IndexOutOfRange {
            record: 0,
            table: "partition_key_table",
            index: 3,
            len: 1
        }
    );
    assert_eq!(
        error.to_string(),
        "KPL aggregate: record #0 has partition_key_table index 3, but the table has 1 entries"
    );

    // Explicit hash key index into an empty table.
    let message = [
        0x0A, 0x01, b'k', 0x1A, 0x06, 0x08, 0x00, 0x10, 0x00, 0x1A, 0x00,
    ];
    let error = decode(&frame(&message)).unwrap_err();
    assert!(
        matches!(
            error,
            KplError::IndexOutOfRange {
                table: "explicit_hash_key_table",
                ..
            }
        ),
        "{error}"
    );

    // A record without data.
    let message = [0x0A, 0x01, b'k', 0x1A, 0x02, 0x08, 0x00];
    let error = decode(&frame(&message)).unwrap_err();
    assert_eq!(error.to_string(), "KPL aggregate: Record #0 has no data");

    // Wrong wire type, group wire type, field 0, overlong varint, bad UTF-8.
    for message in [
        &[0x08, 0x01][..],
        &[0x0B][..],
        &[0x00, 0x00][..],
        &[
            0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
        ][..],
    ] {
        let error = decode(&frame(message)).unwrap_err();
        assert!(matches!(error, KplError::Malformed { .. }), "{error}");
    }
    let error = decode(&frame(&[0x0A, 0x01, 0xFF])).unwrap_err();
    assert!(matches!(error, KplError::InvalidUtf8 { .. }), "{error}");
}

#[test]
fn skips_unknown_fields_and_reads_tags() {
    // An unknown varint field 9, an unknown fixed32 field 10, then a record with a tag.
    let message = [
        0x48, 0x01, 0x55, 1, 2, 3, 4, 0x0A, 0x01, b'k', 0x1A, 0x0B, 0x08, 0x00, 0x1A, 0x01, b'd',
        0x22, 0x04, 0x0A, 0x02, b't', b'1',
    ];
    let bytes = frame(&message);
    let aggregate = decode(&bytes).unwrap();
    assert_eq!(aggregate.records[0].data, b"d");
    assert_eq!(
        aggregate.records[0].tags,
        [Tag {
            key: "t1",
            value: None
        }]
    );
}

#[test]
fn hashes_partition_keys_like_kinesis() {
    // MD5("") = d41d8cd98f00b204e9800998ecf8427e.
    assert_eq!(
        partition_key_hash(""),
        0xd41d8cd98f00b204e9800998ecf8427e_u128
    );
    assert_eq!(parse_explicit_hash_key("0"), Some(0));
    assert_eq!(
        parse_explicit_hash_key("340282366920938463463374607431768211455"),
        Some(u128::MAX)
    );
    assert_eq!(
        parse_explicit_hash_key("340282366920938463463374607431768211456"),
        None
    );
    assert_eq!(parse_explicit_hash_key("-1"), None);
    assert_eq!(parse_explicit_hash_key("+1"), None);
    assert_eq!(parse_explicit_hash_key(""), None);
}
