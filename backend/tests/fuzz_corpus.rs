//! Replays the backend's fuzz corpora (`backend/fuzz/corpus/{batch,rules}/`) on stable with the
//! fuzz targets' own checks (`backend/fuzz/checks.rs`): no input panics, and each named seed
//! gives the outcome it was written for. `scripts/fuzz.sh` grows the corpora on nightly.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// The seed files of one target (not what `scripts/fuzz.sh` keeps in `.run/`).
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn seed<'a>(corpus: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &corpus
        .iter()
        .find(|(file, _)| file == name)
        .unwrap_or_else(|| panic!("seed {name} is missing"))
        .1
}

#[test]
fn every_batch_input_is_parsed_or_refused_cleanly() {
    let corpus = corpus("batch");
    assert!(corpus.len() >= 25, "the seed corpus is missing");
    for (_, data) in &corpus {
        let _ = checks::check_batch(data);
    }
}

#[test]
fn batch_seeds_give_the_outcome_they_were_written_for() {
    let corpus = corpus("batch");
    let outcome = |name: &str| checks::check_batch(seed(&corpus, name));
    // (accepted, rejected, suppressed), or the status of a body refused whole.
    assert_eq!(outcome("valid-batch.json"), Ok((2, 0, 0)));
    assert_eq!(outcome("segment-batch.json"), Ok((3, 0, 0)));
    assert_eq!(outcome("beacon-with-write-key.json"), Ok((1, 0, 0)));
    assert_eq!(outcome("mixed-valid-and-invalid.json"), Ok((1, 6, 0)));
    assert_eq!(outcome("reserved-names.json"), Ok((3, 0, 0)));
    assert_eq!(outcome("empty-batch.json"), Ok((0, 0, 0)));
    assert_eq!(outcome("deep-nesting.json"), Ok((0, 1, 0)));
    // Found by the fuzzer: the clock-skew correction overflowed (a panic); now a rejection.
    assert_eq!(outcome("skew-out-of-range.json"), Ok((0, 1, 0)));
    for refused in [
        "malformed-json.json",
        "unknown-member.json",
        "batch-not-a-list.json",
        "bad-sent-at.json",
        "invalid-utf8.json",
        "not-an-object.json",
        "empty.json",
        "trailing-garbage.json",
    ] {
        assert_eq!(outcome(refused), Err(400), "{refused}");
    }
}

#[test]
fn every_rules_input_is_parsed_or_refused_with_a_position() {
    let corpus = corpus("rules");
    assert!(corpus.len() >= 15, "the seed corpus is missing");
    for (_, data) in &corpus {
        let _ = checks::check_rules(data);
    }
}

#[test]
fn rules_seeds_give_the_outcome_they_were_written_for() {
    let corpus = corpus("rules");
    let outcome = |name: &str| checks::check_rules(seed(&corpus, name));
    assert_eq!(outcome("article-rules-seed.json"), Ok(3));
    assert_eq!(outcome("samples-rules.json"), Ok(4));
    assert_eq!(outcome("trailing-commas.json"), Ok(1));
    assert_eq!(outcome("comma-in-string.json"), Ok(1));
    assert_eq!(outcome("crlf.json"), Ok(1));
    assert_eq!(outcome("empty-list.json"), Ok(0));
    let malformed = outcome("malformed.json").unwrap_err();
    assert!(malformed.starts_with("rules.json:3:"), "{malformed}");
    for refused in [
        "missing-key.json",
        "unknown-key.json",
        "wrong-type.json",
        "empty-destination.json",
        "empty-event-name.json",
        "not-a-list.json",
        "empty.json",
        "only-commas.json",
    ] {
        assert!(outcome(refused).is_err(), "{refused}");
    }
}
