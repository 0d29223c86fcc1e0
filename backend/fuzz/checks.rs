//! What the backend's fuzz targets check on one input, shared with the stable replay of their
//! corpora (`backend/tests/fuzz_corpus.rs`), so CI checks exactly what the fuzzer checked.
//!
//! - `batch`: the ingest's body parsers (`/v1/batch`, `/v1/event`, Segment's calls) and the
//!   per-event checks never panic; an unparsable body is a `400` with a message; every event of
//!   a parsed body is accepted, rejected by index (in order, with a message) or suppressed; an
//!   accepted event's JSON is an envelope again, with the id, name and partition key it was
//!   stored under.
//! - `rules`: the routing rules parser never panics; an error names `FILE:LINE:COLUMN` inside
//!   the text; parsed rules answer routing questions for any name.

use std::borrow::Cow;

use tributary_backend::ingest::events::{self, RequestDefaults};
use tributary_backend::privacy::SuppressionIndex;
use tributary_backend::routing::RoutingRules;
use tributary_core::{Envelope, Timestamp};

/// What one body gave: `Err(status)` when refused whole, else (accepted, rejected, suppressed).
pub(crate) type BatchOutcome = Result<(usize, usize, usize), u16>;

/// Runs every body parser on `data`; returns the `/v1/batch` outcome.
pub(crate) fn check_batch(data: &[u8]) -> BatchOutcome {
    let outcome = check_parsed(events::parse_batch(data));
    check_parsed(events::parse_single(data)).ok();
    check_parsed(events::parse_segment_call(data)).ok();
    outcome
}

fn check_parsed(
    parsed: Result<
        tributary_backend::ingest::ParsedBody<'_>,
        tributary_backend::ingest::errors::ApiError,
    >,
) -> BatchOutcome {
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            assert_eq!(error.status.as_u16(), 400, "{error:?}");
            assert!(!error.message.is_empty());
            return Err(error.status.as_u16());
        }
    };
    let suppressions = SuppressionIndex::default();
    let received_at = Timestamp::from_unix_millis(1_795_000_000_000);
    let mut defaults = RequestDefaults::received_at(received_at, &suppressions);
    defaults.sent_at = parsed.sent_at;
    defaults.context = parsed.context.as_ref();
    let events: &[Cow<'_, str>] = &parsed.events;
    let checked = events::check_events(events, &defaults);
    assert_eq!(
        checked.accepted.len() + checked.rejected.len() + checked.suppressed,
        events.len(),
        "every event is accounted for"
    );
    let mut previous = None;
    for rejected in &checked.rejected {
        assert!(rejected.index < events.len());
        assert!(previous < Some(rejected.index), "rejections in batch order");
        previous = Some(rejected.index);
        assert!(!rejected.error.is_empty());
    }
    for event in &checked.accepted {
        let envelope = Envelope::from_json(&event.json).unwrap_or_else(|error| {
            panic!("an accepted event is an envelope: {error}: {}", event.json)
        });
        assert_eq!(envelope.id.as_deref(), Some(event.id.as_str()));
        assert_eq!(envelope.name, event.name);
        assert!(!event.partition_key.is_empty());
    }
    Ok((
        checked.accepted.len(),
        checked.rejected.len(),
        checked.suppressed,
    ))
}

/// Runs the rules parser on `data`; returns how many rules parsed, or the error's text.
pub(crate) fn check_rules(data: &[u8]) -> Result<usize, String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Err("not UTF-8".into());
    };
    match RoutingRules::parse(text, "rules.json") {
        Ok(rules) => {
            for name in ["login", "", "*", "$identify"] {
                for destination in rules.destinations_for(name) {
                    assert!(rules.enables(destination, name));
                }
            }
            for destination in rules.destination_names() {
                rules.event_names_for(destination);
            }
            Ok(rules.rules().len())
        }
        Err(error) => {
            let lines = text.split('\n').count();
            assert!(error.line >= 1 && error.line <= lines.max(1), "{error}");
            assert!(error.column >= 1, "{error}");
            assert!(!error.message.is_empty());
            let shown = error.to_string();
            assert!(shown.starts_with("rules.json:"), "{shown}");
            Err(shown)
        }
    }
}
