//! The envelope's limits and the reasons a person can act on.
//!
//! Every error names the field at fault and says what the limit is and what was found, e.g.
//! `name: must be at most 128 characters, got 131`. Lengths of strings are counted in Unicode
//! scalar values (characters), sizes of events in bytes of JSON.

use serde_json::Value;

use super::event::Envelope;
use super::reserved;

/// The most bytes an event's JSON may have (as received, after decompression).
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// The most characters in an event name.
pub const MAX_NAME_CHARS: usize = 128;
/// The most characters in an event id.
pub const MAX_ID_CHARS: usize = 64;
/// The most characters in an anonymous id.
pub const MAX_ANONYMOUS_ID_CHARS: usize = 256;
/// The most characters in a user id.
pub const MAX_USER_ID_CHARS: usize = 256;
/// The most characters in a source name.
pub const MAX_SOURCE_CHARS: usize = 64;

/// An event that breaks a rule of the envelope, and which field breaks it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// The JSON path of the field at fault (`name`, `context.traits`, …), or `event` for the whole.
    pub field: String,
    /// What is wrong with it.
    pub problem: Problem,
}

impl ValidationError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, problem: Problem) -> Self {
        Self {
            field: field.into(),
            problem,
        }
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A required field is absent.
    #[error("is required")]
    Missing,
    /// The JSON does not have the expected shape (the parser's own words).
    #[error("{0}")]
    Malformed(String),
    /// The value must be a JSON object.
    #[error("must be a JSON object")]
    NotAnObject,
    /// A string that must not be empty is empty.
    #[error("must not be empty")]
    Empty,
    /// A string is longer than its limit.
    #[error("must be at most {max} characters, got {actual}")]
    TooLong {
        /// The limit, in characters.
        max: usize,
        /// The length found, in characters.
        actual: usize,
    },
    /// A string holds a control character (U+0000–U+001F, U+007F–U+009F).
    #[error("must not contain control characters (found U+{code_point:04X} at character {index})")]
    ControlCharacter {
        /// The character's position, from 0.
        index: usize,
        /// The character's code point.
        code_point: u32,
    },
    /// A `$` name that is not one of the reserved events.
    #[error(
        "`{0}` is not a reserved event: names starting with `$` must be one of {list}",
        list = reserved::RESERVED_NAMES.join(", ")
    )]
    UnknownReservedName(String),
    /// The event's JSON is over [`MAX_EVENT_BYTES`].
    #[error("is {actual} bytes of JSON, over the limit of {max} bytes")]
    TooLarge {
        /// The limit, in bytes.
        max: usize,
        /// The size found, in bytes.
        actual: usize,
    },
}

/// Checks every rule of the envelope except its serialized size.
pub(crate) fn validate_envelope(envelope: &Envelope) -> Result<(), ValidationError> {
    check_name(&envelope.name)?;
    if let Some(id) = &envelope.id {
        check_text("id", id, MAX_ID_CHARS)?;
    }
    if let Some(anonymous_id) = &envelope.anonymous_id {
        check_text("anonymous_id", anonymous_id, MAX_ANONYMOUS_ID_CHARS)?;
    }
    if let Some(user_id) = &envelope.user_id {
        check_text("user_id", user_id, MAX_USER_ID_CHARS)?;
    }
    if let Some(source) = &envelope.source {
        check_text("source", source, MAX_SOURCE_CHARS)?;
    }
    if let Some(traits) = envelope.context.get("traits")
        && !traits.is_object()
    {
        return Err(ValidationError::new("context.traits", Problem::NotAnObject));
    }
    reserved::check_reserved_data(envelope)
}

/// Checks an event name: 1–128 characters, no control characters, `$` only for reserved names.
///
/// # Errors
/// A [`ValidationError`] on the field `name`.
pub fn check_name(name: &str) -> Result<(), ValidationError> {
    check_text("name", name, MAX_NAME_CHARS)?;
    if name.starts_with('$') && !reserved::RESERVED_NAMES.contains(&name) {
        return Err(ValidationError::new(
            "name",
            Problem::UnknownReservedName(name.to_owned()),
        ));
    }
    Ok(())
}

/// A serde_json error message without its trailing " at line L column C" (for one event, or
/// where the position is reported separately, it is noise).
pub fn without_json_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |index| &message[..index])
}

/// Checks that an event's JSON (`bytes` long) is within [`MAX_EVENT_BYTES`].
///
/// # Errors
/// [`Problem::TooLarge`] on the field `event`.
pub fn check_event_size(bytes: usize) -> Result<(), ValidationError> {
    if bytes > MAX_EVENT_BYTES {
        return Err(ValidationError::new(
            "event",
            Problem::TooLarge {
                max: MAX_EVENT_BYTES,
                actual: bytes,
            },
        ));
    }
    Ok(())
}

/// Checks that `value` is a JSON object, for fields such as `data`.
///
/// # Errors
/// [`Problem::NotAnObject`] on `field`.
pub fn check_object(field: &str, value: &Value) -> Result<(), ValidationError> {
    if value.is_object() {
        Ok(())
    } else {
        Err(ValidationError::new(field, Problem::NotAnObject))
    }
}

/// Checks a non-empty string of at most `max_chars` characters, none of them control
/// characters (the rule of every id and name field).
///
/// # Errors
/// [`Problem::Empty`], [`Problem::ControlCharacter`] or [`Problem::TooLong`] on `field`.
pub fn check_text(field: &str, text: &str, max_chars: usize) -> Result<(), ValidationError> {
    if text.is_empty() {
        return Err(ValidationError::new(field, Problem::Empty));
    }
    let mut count = 0;
    for (index, character) in text.chars().enumerate() {
        if character.is_control() {
            let code_point = u32::from(character);
            return Err(ValidationError::new(
                field,
                Problem::ControlCharacter { index, code_point },
            ));
        }
        count = index + 1;
    }
    if count > max_chars {
        return Err(ValidationError::new(
            field,
            Problem::TooLong {
                max: max_chars,
                actual: count,
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn event(name: &str) -> Envelope {
        Envelope::new(name, Map::new())
    }

    #[test]
    fn name_limits() {
        assert!(event("login").validate().is_ok());
        assert!(event(&"é".repeat(128)).validate().is_ok());
        assert_eq!(
            event(&"é".repeat(129)).validate().unwrap_err().to_string(),
            "name: must be at most 128 characters, got 129"
        );
        assert_eq!(
            event("").validate().unwrap_err().to_string(),
            "name: must not be empty"
        );
        assert_eq!(
            event("a\tb").validate().unwrap_err().to_string(),
            "name: must not contain control characters (found U+0009 at character 1)"
        );
    }

    #[test]
    fn reserved_names() {
        assert!(event("$page").validate().is_ok());
        let error = event("$pageview").validate().unwrap_err();
        assert_eq!(error.field, "name");
        assert!(
            error
                .to_string()
                .contains("$identify, $page, $screen, $group, $alias"),
            "{error}"
        );
    }

    #[test]
    fn identity_limits() {
        let mut envelope = event("x");
        envelope.user_id = Some("u".repeat(257));
        assert_eq!(
            envelope.validate().unwrap_err().to_string(),
            "user_id: must be at most 256 characters, got 257"
        );
        envelope.user_id = None;
        envelope.anonymous_id = Some(String::new());
        assert_eq!(envelope.validate().unwrap_err().field, "anonymous_id");
        envelope.anonymous_id = None;
        envelope.id = Some("i".repeat(65));
        assert_eq!(envelope.validate().unwrap_err().field, "id");
        envelope.id = None;
        envelope.context.insert("traits".into(), json!("vip"));
        assert_eq!(
            envelope.validate().unwrap_err().to_string(),
            "context.traits: must be a JSON object"
        );
    }

    #[test]
    fn event_size_limit() {
        assert!(check_event_size(MAX_EVENT_BYTES).is_ok());
        assert_eq!(
            check_event_size(MAX_EVENT_BYTES + 1)
                .unwrap_err()
                .to_string(),
            "event: is 32769 bytes of JSON, over the limit of 32768 bytes"
        );
        let mut big = event("big");
        big.data
            .insert("blob".into(), json!("x".repeat(MAX_EVENT_BYTES)));
        assert!(matches!(
            big.to_json_bytes().unwrap_err().problem,
            Problem::TooLarge { .. }
        ));
    }
}
