//! Routing rules: which destinations get which events.
//!
//! The format is the article's file verbatim: a JSON list of `{destination_name,
//! destination_arn, enabled_events}`, where `"*"` in `enabled_events` matches every event. The
//! only leniency is trailing commas (the article's file has them).
//!
//! - [`rules`]: parsing, with errors as `FILE:LINE:COLUMN: message`, and matching.
//! - `positions`: where each rule and key sits in the text, for those errors.
//!
//! # Invariants
//! - A loaded [`RoutingRules`] has no rule without a destination name; every event name maps to a
//!   fixed, duplicate-free set of destinations in rule order.

mod positions;
pub mod rules;

pub use rules::{RoutingRules, Rule, RulesError};
