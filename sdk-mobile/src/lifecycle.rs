//! The application lifecycle events (Segment's names, which destinations already map):
//! `Application Installed`, `Application Updated`, `Application Opened`,
//! `Application Backgrounded`. The platform wrappers call these from their lifecycle observers
//! (an Android `ProcessLifecycleOwner`, iOS notifications); the decisions are made here, once.
//!
//! # Invariants
//! - `Application Installed` is tracked once per store (the first launch), `Application Updated`
//!   once per change of version or build; the version and build seen are persisted.

use serde_json::{Map, Value, json};
use tributary_core::Envelope;

use crate::client::{APP_BUILD_KEY, APP_VERSION_KEY, TributaryClient};
use crate::error::TributaryError;

/// The event names.
pub const APPLICATION_INSTALLED: &str = "Application Installed";
/// See [`APPLICATION_INSTALLED`].
pub const APPLICATION_UPDATED: &str = "Application Updated";
/// See [`APPLICATION_INSTALLED`].
pub const APPLICATION_OPENED: &str = "Application Opened";
/// See [`APPLICATION_INSTALLED`].
pub const APPLICATION_BACKGROUNDED: &str = "Application Backgrounded";

#[uniffi::export]
impl TributaryClient {
    /// Records that the app came to the foreground: on a cold start (`from_background` false)
    /// first `Application Installed` (first launch) or `Application Updated` (`version` or
    /// `build` changed since the last launch), then `Application Opened`.
    ///
    /// # Errors
    /// `Closed`.
    pub fn record_app_opened(
        &self,
        version: String,
        build: String,
        from_background: bool,
    ) -> Result<(), TributaryError> {
        let mut events = Vec::new();
        {
            let mut state = self.open_state()?;
            if !from_background {
                let previous = (state.app_version.clone(), state.app_build.clone());
                match previous {
                    (None, None) => {
                        events.push(event(
                            APPLICATION_INSTALLED,
                            json!({"version": version, "build": build}),
                        ));
                    }
                    (previous_version, previous_build)
                        if previous_version.as_deref() != Some(version.as_str())
                            || previous_build.as_deref() != Some(build.as_str()) =>
                    {
                        events.push(event(
                            APPLICATION_UPDATED,
                            json!({
                                "version": version,
                                "build": build,
                                "previous_version": previous_version,
                                "previous_build": previous_build,
                            }),
                        ));
                    }
                    _ => {}
                }
                state.app_version = Some(version.clone());
                state.app_build = Some(build.clone());
                state
                    .meta_writes
                    .push((APP_VERSION_KEY.into(), version.clone()));
                state
                    .meta_writes
                    .push((APP_BUILD_KEY.into(), build.clone()));
            }
        }
        events.push(event(
            APPLICATION_OPENED,
            json!({"version": version, "build": build, "from_background": from_background}),
        ));
        for envelope in events {
            self.record(envelope)?;
        }
        Ok(())
    }

    /// Records `Application Backgrounded` and asks for everything queued to be sent now (the
    /// wrappers keep the app alive for it: an iOS background task, Android's process lifetime).
    ///
    /// # Errors
    /// `Closed`.
    pub fn record_app_backgrounded(&self) -> Result<(), TributaryError> {
        self.record(event(APPLICATION_BACKGROUNDED, json!({})))?;
        self.flush();
        Ok(())
    }
}

fn event(name: &str, data: Value) -> Envelope {
    let data = match data {
        Value::Object(data) => data,
        _ => Map::new(),
    };
    Envelope::new(name, data)
}
