//! Replays the de-aggregator's fuzz corpus (`sdk-core/fuzz/corpus/deaggregate/`: the reference
//! aggregate from `shared/fixtures/kpl/` and malformed aggregates) on stable: no input panics,
//! every error says what is wrong, and each named seed gives the outcome it was written for.

use std::path::Path;

use tributary_core::kpl::{self, AggregateBuilder, KplError};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/deaggregate");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        // Only the seed files: scripts/fuzz.sh keeps what it finds in `.run/` beside them.
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// What the fuzz target checks, on one input.
fn check(data: &[u8]) -> Result<usize, KplError> {
    let records = kpl::deaggregate("pk", None, data)?;
    if kpl::is_aggregate(data) {
        // What decodes re-encodes to an aggregate that decodes to the same records.
        let mut builder = AggregateBuilder::new(usize::MAX);
        for record in &records {
            builder.add(record.partition_key, record.explicit_hash_key, record.data);
        }
        let rebuilt = builder.finish();
        let again = kpl::deaggregate("pk", None, &rebuilt).expect("re-encoded aggregate decodes");
        assert_eq!(again, records);
    } else {
        assert_eq!(records.len(), 1);
        assert_eq!(kpl::decode(data), Err(KplError::BadMagic));
    }
    Ok(records.len())
}

#[test]
fn every_corpus_input_decodes_or_fails_cleanly() {
    let corpus = corpus();
    assert!(corpus.len() >= 20, "the seed corpus is missing");
    for (name, data) in &corpus {
        if let Err(error) = check(data) {
            let text = error.to_string();
            assert!(text.starts_with("KPL aggregate"), "{name}: {text}");
        }
    }
}

#[test]
fn seeds_give_the_outcome_they_were_written_for() {
    let corpus = corpus();
    let outcome = |name: &str| {
        let (_, data) = corpus
            .iter()
            .find(|(file, _)| file == name)
            .unwrap_or_else(|| panic!("seed {name} is missing"));
        check(data)
    };
    assert_eq!(outcome("reference-aggregated-10"), Ok(10));
    assert_eq!(outcome("plain-json"), Ok(1));
    assert_eq!(outcome("empty"), Ok(1));
    // Not the magic: passed through as one plain record.
    assert_eq!(outcome("bad-magic"), Ok(1));
    assert_eq!(outcome("empty-aggregate"), Ok(0));
    assert_eq!(outcome("tags-and-unknown-fields"), Ok(1));
    assert_eq!(outcome("magic-only"), Err(KplError::TooShort { len: 4 }));
    assert_eq!(outcome("too-short"), Err(KplError::TooShort { len: 14 }));
    for name in ["bad-md5", "flipped-protobuf-byte"] {
        assert!(
            matches!(outcome(name), Err(KplError::BadChecksum { .. })),
            "{name}"
        );
    }
    for name in ["truncated-protobuf", "truncated-varint", "huge-length"] {
        assert!(
            matches!(outcome(name), Err(KplError::Truncated { .. })),
            "{name}: {:?}",
            outcome(name)
        );
    }
    for name in ["index-out-of-range", "hash-key-index-out-of-range"] {
        assert!(
            matches!(outcome(name), Err(KplError::IndexOutOfRange { .. })),
            "{name}"
        );
    }
    for name in ["missing-data", "missing-partition-key-index"] {
        assert!(
            matches!(outcome(name), Err(KplError::MissingField { .. })),
            "{name}"
        );
    }
    for name in ["wrong-wire-type", "group-wire-type", "overlong-varint"] {
        assert!(
            matches!(outcome(name), Err(KplError::Malformed { .. })),
            "{name}: {:?}",
            outcome(name)
        );
    }
    assert!(matches!(
        outcome("invalid-utf8-key"),
        Err(KplError::InvalidUtf8 { .. })
    ));
}
