//! Consent: which categories an event's user agreed to, against what a destination requires.
//!
//! `context.consent` may be written three ways (the last is Segment's Consent Management shape):
//! - a list of granted categories: `["analytics", "marketing"]`;
//! - an object of category → granted: `{"analytics": true, "marketing": false}`;
//! - `{"categoryPreferences": {"analytics": true, …}}`.
//!
//! Category names compare without regard to ASCII case.
//!
//! # Invariants
//! - A destination with a non-empty `requires_consent` receives an event only when every one of
//!   its categories is granted; an event without `context.consent` grants nothing. A destination
//!   with an empty list receives every event routed to it.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The categories a destination needs (`requires_consent`), lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentRequirement {
    categories: Vec<String>,
}

impl ConsentRequirement {
    /// These categories (an empty list requires nothing).
    pub fn new(categories: &[String]) -> Self {
        let mut categories: Vec<String> = categories
            .iter()
            .map(|category| category.trim().to_ascii_lowercase())
            .filter(|category| !category.is_empty())
            .collect();
        categories.sort();
        categories.dedup();
        Self { categories }
    }

    /// Whether nothing is required.
    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
    }

    /// Whether the event whose envelope JSON is `json` may go to the destination.
    pub fn allows_json(&self, json: &str) -> bool {
        if self.is_empty() {
            return true;
        }
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(default)]
            context: Option<Context>,
        }
        #[derive(Deserialize)]
        struct Context {
            #[serde(default)]
            consent: Option<Value>,
        }
        let consent = serde_json::from_str::<Envelope>(json)
            .ok()
            .and_then(|envelope| envelope.context)
            .and_then(|context| context.consent);
        self.allows(consent.as_ref())
    }

    /// Whether `consent` (an event's `context.consent`) grants every required category.
    pub fn allows(&self, consent: Option<&Value>) -> bool {
        if self.is_empty() {
            return true;
        }
        let granted = granted(consent);
        self.categories
            .iter()
            .all(|category| granted.iter().any(|given| given == category))
    }
}

/// The categories `consent` grants, lower-cased.
pub fn granted(consent: Option<&Value>) -> Vec<String> {
    match consent {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_ascii_lowercase)
            .collect(),
        Some(Value::Object(object)) => match object.get("categoryPreferences") {
            Some(Value::Object(preferences)) => granted_in(preferences),
            _ => granted_in(object),
        },
        _ => Vec::new(),
    }
}

fn granted_in(preferences: &Map<String, Value>) -> Vec<String> {
    preferences
        .iter()
        .filter(|(_, value)| value.as_bool() == Some(true))
        .map(|(category, _)| category.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_required_category_must_be_granted() {
        let needs = ConsentRequirement::new(&["Analytics".into(), "marketing".into()]);
        assert!(needs.allows(Some(&json!(["analytics", "Marketing", "other"]))));
        assert!(!needs.allows(Some(&json!(["analytics"]))));
        assert!(needs.allows(Some(&json!({"analytics": true, "marketing": true}))));
        assert!(!needs.allows(Some(&json!({"analytics": true, "marketing": false}))));
        assert!(needs.allows(Some(
            &json!({"categoryPreferences": {"Analytics": true, "Marketing": true, "Ads": false}})
        )));
        assert!(!needs.allows(Some(&json!({"categoryPreferences": {"Analytics": true}}))));
        assert!(!needs.allows(None), "no consent grants nothing");
        assert!(!needs.allows(Some(&json!("analytics,marketing"))));

        let nothing = ConsentRequirement::new(&[]);
        assert!(nothing.allows(None));
        assert!(nothing.allows_json("not even json"));
    }

    #[test]
    fn reads_consent_from_the_envelope_json() {
        let needs = ConsentRequirement::new(&["analytics".into()]);
        assert!(needs.allows_json(
            r#"{"name":"x","data":{},"context":{"consent":["analytics"],"ip":"1.2.3.0"}}"#
        ));
        assert!(!needs.allows_json(r#"{"name":"x","data":{"consent":["analytics"]}}"#));
        assert!(!needs.allows_json(r#"{"name":"x","data":{}}"#));
    }
}
