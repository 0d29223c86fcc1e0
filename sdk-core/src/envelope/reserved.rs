//! The reserved events and how each is built.
//!
//! | name | built by | `data` | other fields |
//! |---|---|---|---|
//! | `$identify` | [`Envelope::identify`] | the user's traits | `user_id` |
//! | `$page` | [`Envelope::page`] | page properties, plus `name` when given | |
//! | `$screen` | [`Envelope::screen`] | screen properties, plus `name` | |
//! | `$group` | [`Envelope::group`] | `{"group_id": …, "traits": {…}}` | |
//! | `$alias` | [`Envelope::alias`] | `{"previous_id": …}` | `user_id` = the new id |
//!
//! The latest identify traits also travel on every later event as `context.traits` (see
//! [`crate::Identity`]).

use serde_json::{Map, Value};

use super::event::Envelope;
use super::validation::{Problem, ValidationError};

/// Identifies a user and records their traits.
pub const IDENTIFY: &str = "$identify";
/// A web page view.
pub const PAGE: &str = "$page";
/// A mobile screen view.
pub const SCREEN: &str = "$screen";
/// Associates the user with a group (company, team, account).
pub const GROUP: &str = "$group";
/// Merges a previous identity into the current user id.
pub const ALIAS: &str = "$alias";

/// Every name that may start with `$`.
pub const RESERVED_NAMES: [&str; 5] = [IDENTIFY, PAGE, SCREEN, GROUP, ALIAS];

impl Envelope {
    /// An `$identify` event: `user_id` is known, `traits` describe them.
    pub fn identify(user_id: impl Into<String>, traits: Map<String, Value>) -> Self {
        let mut envelope = Self::new(IDENTIFY, traits);
        envelope.user_id = Some(user_id.into());
        envelope
    }

    /// A `$page` event, with the page's `name` added to `properties` when given.
    pub fn page(name: Option<&str>, properties: Map<String, Value>) -> Self {
        Self::new(PAGE, with_name(name, properties))
    }

    /// A `$screen` event for the screen called `name`.
    pub fn screen(name: &str, properties: Map<String, Value>) -> Self {
        Self::new(SCREEN, with_name(Some(name), properties))
    }

    /// A `$group` event: the user belongs to `group_id`, described by `traits`.
    pub fn group(group_id: impl Into<String>, traits: Map<String, Value>) -> Self {
        let mut data = Map::new();
        data.insert("group_id".into(), Value::String(group_id.into()));
        data.insert("traits".into(), Value::Object(traits));
        Self::new(GROUP, data)
    }

    /// An `$alias` event: `previous_id` (an anonymous id or an old user id) is now `user_id`.
    pub fn alias(user_id: impl Into<String>, previous_id: impl Into<String>) -> Self {
        let mut data = Map::new();
        data.insert("previous_id".into(), Value::String(previous_id.into()));
        let mut envelope = Self::new(ALIAS, data);
        envelope.user_id = Some(user_id.into());
        envelope
    }
}

fn with_name(name: Option<&str>, mut properties: Map<String, Value>) -> Map<String, Value> {
    if let Some(name) = name {
        properties.insert("name".into(), Value::String(name.to_owned()));
    }
    properties
}

/// The reserved events whose `data` has required fields.
pub(crate) fn check_reserved_data(envelope: &Envelope) -> Result<(), ValidationError> {
    let required = match envelope.name.as_str() {
        GROUP => "group_id",
        ALIAS => "previous_id",
        IDENTIFY if envelope.user_id.is_none() && envelope.anonymous_id.is_none() => {
            return Err(ValidationError::new("user_id", Problem::Missing));
        }
        _ => return Ok(()),
    };
    match envelope.data.get(required) {
        Some(Value::String(text)) if !text.is_empty() => Ok(()),
        Some(Value::String(_)) => Err(ValidationError::new(
            format!("data.{required}"),
            Problem::Empty,
        )),
        Some(_) => Err(ValidationError::new(
            format!("data.{required}"),
            Problem::Malformed("must be a string".into()),
        )),
        None => Err(ValidationError::new(
            format!("data.{required}"),
            Problem::Missing,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reserved_constructors_validate() {
        let traits = json!({"email": "a@example.com"})
            .as_object()
            .cloned()
            .unwrap();
        let identify = Envelope::identify("user-1", traits.clone());
        assert_eq!(identify.name, "$identify");
        assert_eq!(identify.user_id.as_deref(), Some("user-1"));
        identify.validate().unwrap();

        let page = Envelope::page(Some("Home"), Map::new());
        assert_eq!(page.data["name"], "Home");
        page.validate().unwrap();
        Envelope::screen("Settings", Map::new()).validate().unwrap();
        let group = Envelope::group("acme", traits);
        assert_eq!(group.data["group_id"], "acme");
        group.validate().unwrap();
        Envelope::alias("user-1", "anon-1").validate().unwrap();
    }

    #[test]
    fn reserved_events_need_their_fields() {
        let error = Envelope::new(GROUP, Map::new()).validate().unwrap_err();
        assert_eq!(error.to_string(), "data.group_id: is required");
        let mut alias = Envelope::alias("u", "");
        assert_eq!(
            alias.validate().unwrap_err().to_string(),
            "data.previous_id: must not be empty"
        );
        alias.data.insert("previous_id".into(), json!(5));
        assert_eq!(alias.validate().unwrap_err().field, "data.previous_id");
        let error = Envelope::new(IDENTIFY, Map::new()).validate().unwrap_err();
        assert_eq!(error.to_string(), "user_id: is required");
    }
}
