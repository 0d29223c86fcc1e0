//! Who a client-side SDK's events are about: the anonymous id, the user id and the latest traits.
//!
//! Web and mobile SDKs track one person at a time. [`Identity`] stamps every event with the
//! persisted `anonymous_id`, the `user_id` once known, and the latest identify traits as
//! `context.traits`. Server SDKs track many users and set these fields per event instead.
//!
//! # Invariants
//! - The anonymous id is generated once and survives `identify`; only [`Identity::reset`]
//!   replaces it (a logout on a shared device).
//! - An event's own `user_id`/`anonymous_id`/`context.traits` win over the identity's.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::envelope::Envelope;
use crate::envelope::id::new_anonymous_id;

/// The identity a client-side SDK attaches to its events; persisted by the platform as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Generated once per install or browser.
    pub anonymous_id: String,
    /// Set by `identify`, cleared by `reset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The traits of every `identify` so far, later values winning.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub traits: Map<String, Value>,
}

impl Identity {
    /// A fresh identity with a new random anonymous id.
    pub fn generate(rng: &mut fastrand::Rng) -> Self {
        Self::with_anonymous_id(new_anonymous_id(rng))
    }

    /// An identity with a known anonymous id (read back from the platform's storage).
    pub fn with_anonymous_id(anonymous_id: impl Into<String>) -> Self {
        Self {
            anonymous_id: anonymous_id.into(),
            user_id: None,
            traits: Map::new(),
        }
    }

    /// Records an `identify`: a new user id replaces the old one and drops the old user's
    /// traits; the same user id merges `traits` into the known ones.
    pub fn identify(&mut self, user_id: Option<&str>, traits: &Map<String, Value>) {
        if let Some(user_id) = user_id {
            if self.user_id.as_deref() != Some(user_id) {
                self.traits.clear();
            }
            self.user_id = Some(user_id.to_owned());
        }
        for (key, value) in traits {
            self.traits.insert(key.clone(), value.clone());
        }
    }

    /// Forgets the user: a new anonymous id, no user id, no traits.
    pub fn reset(&mut self, rng: &mut fastrand::Rng) {
        *self = Self::generate(rng);
    }

    /// Fills the event's identity fields that it does not set itself.
    pub fn apply_to(&self, envelope: &mut Envelope) {
        if envelope.anonymous_id.is_none() {
            envelope.anonymous_id = Some(self.anonymous_id.clone());
        }
        if envelope.user_id.is_none() {
            envelope.user_id.clone_from(&self.user_id);
        }
        if !self.traits.is_empty() && !envelope.context.contains_key("traits") {
            envelope
                .context
                .insert("traits".into(), Value::Object(self.traits.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn traits(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn identify_then_track_carries_user_and_traits() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut identity = Identity::generate(&mut rng);
        let anonymous_id = identity.anonymous_id.clone();
        identity.identify(Some("user-1"), &traits(json!({"plan": "pro"})));
        identity.identify(Some("user-1"), &traits(json!({"email": "a@example.com"})));

        let mut event = Envelope::new("login", Map::new());
        identity.apply_to(&mut event);
        assert_eq!(event.anonymous_id.as_deref(), Some(anonymous_id.as_str()));
        assert_eq!(event.user_id.as_deref(), Some("user-1"));
        assert_eq!(
            event.context["traits"],
            json!({"plan": "pro", "email": "a@example.com"})
        );
    }

    #[test]
    fn a_new_user_drops_the_old_traits_and_reset_forgets_everything() {
        let mut rng = fastrand::Rng::with_seed(4);
        let mut identity = Identity::generate(&mut rng);
        let first_anonymous_id = identity.anonymous_id.clone();
        identity.identify(Some("user-1"), &traits(json!({"plan": "pro"})));
        identity.identify(Some("user-2"), &traits(json!({"email": "b@example.com"})));
        assert_eq!(
            Value::Object(identity.traits.clone()),
            json!({"email": "b@example.com"})
        );
        assert_eq!(identity.anonymous_id, first_anonymous_id);

        identity.reset(&mut rng);
        assert_ne!(identity.anonymous_id, first_anonymous_id);
        assert_eq!(identity.user_id, None);
        assert!(identity.traits.is_empty());
    }

    #[test]
    fn the_event_wins_over_the_identity() {
        let mut identity = Identity::with_anonymous_id("anon");
        identity.identify(Some("user-1"), &traits(json!({"plan": "pro"})));
        let mut event = Envelope::new("x", Map::new());
        event.user_id = Some("someone-else".into());
        event.context.insert("traits".into(), json!({}));
        identity.apply_to(&mut event);
        assert_eq!(event.user_id.as_deref(), Some("someone-else"));
        assert_eq!(event.context["traits"], json!({}));
    }
}
