//! Every field of the core's [`Policy`], settable from Kotlin and Python in test builds
//! (feature `test-clock`), so the conformance suite (`tests/conformance/` in the repository)
//! runs its scenarios through this binding with the delays and limits each scenario names.
//!
//! Release builds keep [`crate::ClientConfig`]'s few knobs: an app has no reason to change the
//! backoff, the batch limits or the give-up age of the SDK defaults.

use std::time::Duration;

use tributary_core::Policy;

use crate::error::{TributaryError, invalid};

/// Changes to the mobile defaults; `None` keeps the default. Durations in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct PolicyOverrides {
    /// Flush when this many events are waiting.
    #[uniffi(default = None)]
    pub flush_at_events: Option<u32>,
    /// Flush when the oldest waiting event is this old.
    #[uniffi(default = None)]
    pub flush_interval_millis: Option<u64>,
    /// The most events in one batch.
    #[uniffi(default = None)]
    pub max_batch_events: Option<u32>,
    /// The most bytes in one batch's request body.
    #[uniffi(default = None)]
    pub max_batch_bytes: Option<u32>,
    /// The first backoff ceiling.
    #[uniffi(default = None)]
    pub backoff_base_millis: Option<u64>,
    /// The largest backoff ceiling and the largest `Retry-After` honoured.
    #[uniffi(default = None)]
    pub backoff_cap_millis: Option<u64>,
    /// The wait after a 401 or 403.
    #[uniffi(default = None)]
    pub paused_delay_millis: Option<u64>,
    /// Events older than this are dropped when their batch fails again.
    #[uniffi(default = None)]
    pub give_up_age_millis: Option<u64>,
    /// The most events queued.
    #[uniffi(default = None)]
    pub capacity_events: Option<u32>,
    /// The most bytes of event JSON queued.
    #[uniffi(default = None)]
    pub capacity_bytes: Option<u32>,
    /// How many uploads may be in flight at once.
    #[uniffi(default = None)]
    pub max_concurrent_uploads: Option<u32>,
}

impl PolicyOverrides {
    /// `policy` with these changes.
    ///
    /// # Errors
    /// `InvalidInput` naming a count that is zero (a queue that can hold or send nothing).
    pub(crate) fn apply(&self, mut policy: Policy) -> Result<Policy, TributaryError> {
        let count = |field: &str, value: Option<u32>, into: &mut usize| {
            match value {
                Some(0) => return Err(invalid(format!("{field}: must be at least 1"))),
                Some(value) => *into = value as usize,
                None => {}
            }
            Ok(())
        };
        count(
            "flush_at_events",
            self.flush_at_events,
            &mut policy.flush_at_events,
        )?;
        count(
            "max_batch_events",
            self.max_batch_events,
            &mut policy.max_batch_events,
        )?;
        count(
            "max_batch_bytes",
            self.max_batch_bytes,
            &mut policy.max_batch_bytes,
        )?;
        count(
            "capacity_events",
            self.capacity_events,
            &mut policy.capacity_events,
        )?;
        count(
            "capacity_bytes",
            self.capacity_bytes,
            &mut policy.capacity_bytes,
        )?;
        count(
            "max_concurrent_uploads",
            self.max_concurrent_uploads,
            &mut policy.max_concurrent_uploads,
        )?;
        let millis = |value: Option<u64>, into: &mut Duration| {
            if let Some(value) = value {
                *into = Duration::from_millis(value);
            }
        };
        millis(self.flush_interval_millis, &mut policy.flush_interval);
        millis(self.backoff_base_millis, &mut policy.backoff_base);
        millis(self.backoff_cap_millis, &mut policy.backoff_cap);
        millis(self.paused_delay_millis, &mut policy.paused_delay);
        millis(self.give_up_age_millis, &mut policy.give_up_age);
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_only_what_is_set() {
        let overrides = PolicyOverrides {
            backoff_base_millis: Some(20),
            max_concurrent_uploads: Some(2),
            ..PolicyOverrides::default()
        };
        let policy = overrides.apply(Policy::mobile()).unwrap();
        assert_eq!(
            policy,
            Policy {
                backoff_base: Duration::from_millis(20),
                max_concurrent_uploads: 2,
                ..Policy::mobile()
            }
        );
    }

    /// The runners outside Rust read the presets from `tests/conformance/presets.json`; it
    /// must say what the core says.
    #[test]
    fn the_conformance_presets_file_matches_the_core() {
        let file: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/conformance/presets.json")).unwrap();
        for (name, policy) in [
            ("mobile", Policy::mobile()),
            ("browser", Policy::browser()),
            ("server", Policy::server()),
        ] {
            let ms = |duration: Duration| duration.as_millis() as u64;
            let expected = serde_json::json!({
                "flush_at_events": policy.flush_at_events,
                "flush_interval_ms": ms(policy.flush_interval),
                "max_batch_events": policy.max_batch_events,
                "max_batch_bytes": policy.max_batch_bytes,
                "backoff_base_ms": ms(policy.backoff_base),
                "backoff_cap_ms": ms(policy.backoff_cap),
                "paused_delay_ms": ms(policy.paused_delay),
                "give_up_age_ms": ms(policy.give_up_age),
                "capacity_events": policy.capacity_events,
                "capacity_bytes": policy.capacity_bytes,
                "max_concurrent_uploads": policy.max_concurrent_uploads,
            });
            assert_eq!(file[name], expected, "preset {name}");
        }
    }

    #[test]
    fn a_zero_count_names_its_field() {
        let overrides = PolicyOverrides {
            max_batch_events: Some(0),
            ..PolicyOverrides::default()
        };
        let error = overrides.apply(Policy::mobile()).unwrap_err().to_string();
        assert!(error.contains("max_batch_events"), "{error}");
    }
}
