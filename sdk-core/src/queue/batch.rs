//! Building a request body from the oldest waiting records within the batch limits.
//!
//! The body is `{"batch":[e1,e2,…],"sent_at":"…"}` where each `e` is a record's stored JSON,
//! copied byte for byte.

use std::collections::VecDeque;

#[cfg(feature = "json")]
use serde::Deserialize;

use crate::store::StoredRecord;

/// Bytes of every body left free for the platform to add a field, such as the `write_key` a
/// beacon carries in its body (write keys are far shorter than this).
pub const BODY_RESERVE_BYTES: usize = 512;

const PREFIX: &[u8] = br#"{"batch":["#;
const SENT_AT: &[u8] = br#"],"sent_at":""#;
const SUFFIX: &[u8] = br#""}"#;

/// How many of the oldest `waiting` records fit one body: at most `max_events`, and a body of at
/// most `max_body_bytes − BODY_RESERVE_BYTES` bytes. Always at least one when any is waiting
/// (a single valid event always fits: events are at most 32 KiB).
pub(crate) fn records_that_fit(
    waiting: &VecDeque<StoredRecord>,
    max_events: usize,
    max_body_bytes: usize,
    sent_at: &str,
) -> usize {
    let budget = max_body_bytes.saturating_sub(BODY_RESERVE_BYTES + fixed_bytes(sent_at));
    let mut used = 0;
    let mut count = 0;
    for record in waiting.iter().take(max_events.max(1)) {
        let separator = usize::from(count > 0);
        if count > 0 && used + separator + record.payload.len() > budget {
            break;
        }
        used += separator + record.payload.len();
        count += 1;
    }
    count
}

/// The body for these records.
pub(crate) fn build_body(records: &[StoredRecord], sent_at: &str) -> Vec<u8> {
    let payload_bytes: usize = records.iter().map(|record| record.payload.len() + 1).sum();
    let mut body = Vec::with_capacity(fixed_bytes(sent_at) + payload_bytes);
    body.extend_from_slice(PREFIX);
    for (index, record) in records.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&record.payload);
    }
    body.extend_from_slice(SENT_AT);
    body.extend_from_slice(sent_at.as_bytes());
    body.extend_from_slice(SUFFIX);
    body
}

/// The length of a body holding one record of `payload_bytes`.
pub(crate) fn body_len(payload_bytes: usize, sent_at: &str) -> usize {
    fixed_bytes(sent_at) + payload_bytes
}

fn fixed_bytes(sent_at: &str) -> usize {
    PREFIX.len() + SENT_AT.len() + sent_at.len() + SUFFIX.len()
}

/// The part of a `200` body the queue reads: `{"accepted": N, "rejected": [{"index", "error"}]}`.
#[derive(Debug, Default)]
#[cfg_attr(feature = "json", derive(Deserialize))]
pub(crate) struct AcceptedResponse {
    #[cfg_attr(feature = "json", serde(default))]
    pub(crate) rejected: Vec<RejectedEvent>,
}

/// One event the server refused inside an accepted batch: its 0-based index in the batch and
/// the server's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "json", derive(Deserialize))]
pub struct RejectedEvent {
    /// The event's 0-based index in the batch.
    pub index: usize,
    /// Why the server refused it.
    #[cfg_attr(feature = "json", serde(default))]
    pub error: String,
}

impl AcceptedResponse {
    /// Reads a `200` body; an empty or unreadable body means nothing was rejected.
    #[cfg(feature = "json")]
    pub(crate) fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// Without the `json` feature the queue reads no body: a platform that wants rejections
    /// counted reports them with [`super::UploadOutcome::Accepted`].
    #[cfg(not(feature = "json"))]
    pub(crate) fn parse(_body: &[u8]) -> Self {
        Self::default()
    }

    /// Distinct rejected indexes below `event_count`, and the first error's text.
    pub(crate) fn rejected_within(&self, event_count: usize) -> (usize, Option<&str>) {
        let mut seen = vec![false; event_count];
        let mut distinct = 0;
        for rejected in &self.rejected {
            if let Some(slot) = seen.get_mut(rejected.index)
                && !*slot
            {
                *slot = true;
                distinct += 1;
            }
        }
        (
            distinct,
            self.rejected
                .first()
                .map(|rejected| rejected.error.as_str()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn record(seq: u64, payload: &str) -> StoredRecord {
        StoredRecord::new(
            seq,
            Timestamp::from_unix_millis(0),
            payload.as_bytes().to_vec(),
        )
    }

    #[test]
    fn body_is_a_batch_of_the_records_verbatim() {
        let records = [
            record(1, r#"{"name":"a","data":{}}"#),
            record(2, r#"{"name":"b","data":{}}"#),
        ];
        let body = build_body(&records, "2026-11-27T10:00:00.000Z");
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["batch"][1]["name"], "b");
        assert_eq!(value["sent_at"], "2026-11-27T10:00:00.000Z");
        let sent_at = "2026-11-27T10:00:00.000Z";
        assert_eq!(
            body.len(),
            fixed_bytes(sent_at) + records.iter().map(|r| r.payload.len()).sum::<usize>() + 1
        );
    }

    #[test]
    fn counts_the_records_that_fit_the_byte_budget_exactly() {
        let sent_at = "2026-11-27T10:00:00.000Z";
        let payload = "x".repeat(99);
        let waiting: VecDeque<_> = (0..10).map(|seq| record(seq, &payload)).collect();
        // Three records take 99 * 3 + 2 separators = 299 bytes.
        let limit = BODY_RESERVE_BYTES + fixed_bytes(sent_at) + 299;
        assert_eq!(records_that_fit(&waiting, 500, limit, sent_at), 3);
        assert_eq!(records_that_fit(&waiting, 500, limit - 1, sent_at), 2);
        assert_eq!(records_that_fit(&waiting, 2, limit, sent_at), 2);
        assert_eq!(
            records_that_fit(&waiting, 500, 0, sent_at),
            1,
            "one always goes"
        );
    }

    #[test]
    #[cfg(feature = "json")]
    fn reads_rejected_entries() {
        let response = AcceptedResponse::parse(
            br#"{"accepted":2,"rejected":[{"index":1,"error":"name: must not be empty"},{"index":1,"error":"dup"},{"index":9,"error":"out of range"}]}"#,
        );
        assert_eq!(
            response.rejected_within(3),
            (1, Some("name: must not be empty"))
        );
        assert_eq!(AcceptedResponse::parse(b"").rejected_within(3), (0, None));
    }
}
