//! Event ids (UUIDv7) and anonymous ids (UUIDv4), made from the platform's time and a seeded
//! generator so that the core needs neither a clock nor an OS random source (wasm32 has neither
//! without JavaScript glue).

use std::fmt;

use uuid::{Builder, Uuid};

use crate::Timestamp;

/// A UUIDv7 event id: 48 bits of Unix milliseconds, then random bits, so ids sort by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(Uuid);

impl EventId {
    /// A new UUIDv7 for an event that happened at `at`, with randomness from `rng`.
    pub fn new_v7(at: Timestamp, rng: &mut fastrand::Rng) -> Self {
        let mut random = [0u8; 10];
        rng.fill(&mut random);
        Self(Builder::from_unix_timestamp_millis(at.as_unix_millis(), &random).into_uuid())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The Unix milliseconds embedded in the id.
    pub fn timestamp(&self) -> Option<Timestamp> {
        let (seconds, nanos) = self.0.get_timestamp()?.to_unix();
        Some(Timestamp::from_unix_millis(
            seconds * 1000 + u64::from(nanos / 1_000_000),
        ))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), formatter)
    }
}

/// A new random (v4) anonymous id, generated once per install or browser and then persisted.
pub fn new_anonymous_id(rng: &mut fastrand::Rng) -> String {
    let mut random = [0u8; 16];
    rng.fill(&mut random);
    Builder::from_random_bytes(random)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_ids_embed_the_time_and_sort_by_it() {
        let mut rng = fastrand::Rng::with_seed(7);
        let early = EventId::new_v7(Timestamp::from_unix_millis(1_795_000_000_000), &mut rng);
        let late = EventId::new_v7(Timestamp::from_unix_millis(1_795_000_000_001), &mut rng);
        assert_eq!(early.as_uuid().get_version_num(), 7);
        assert_eq!(
            early.timestamp(),
            Some(Timestamp::from_unix_millis(1_795_000_000_000))
        );
        assert!(early < late);
        assert!(early.to_string() < late.to_string());
        assert_eq!(early.to_string().len(), 36);
    }

    #[test]
    fn ids_from_one_generator_differ() {
        let mut rng = fastrand::Rng::with_seed(1);
        let at = Timestamp::from_unix_millis(1);
        let ids: std::collections::HashSet<_> =
            (0..10_000).map(|_| EventId::new_v7(at, &mut rng)).collect();
        assert_eq!(ids.len(), 10_000);
        let anonymous = new_anonymous_id(&mut rng);
        assert_eq!(Uuid::parse_str(&anonymous).unwrap().get_version_num(), 4);
    }
}
