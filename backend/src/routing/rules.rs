//! Parsing and matching routing rules.

use std::collections::HashMap;

use serde::Deserialize;
use tributary_core::envelope::validation::without_json_position;

use super::positions::{ElementPositions, Position, top_level_elements};

/// `enabled_events` entry that matches every event.
pub const MATCH_ALL: &str = "*";

/// One rule of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The destination (in local mode, a `[destinations.NAME]` of the config).
    pub destination_name: String,
    /// Where AWS mode sends: a Lambda function ARN or an SQS queue ARN (ignored locally).
    pub destination_arn: String,
    /// Event names, or `*` for all.
    pub enabled_events: Vec<String>,
}

/// A rules file that loaded.
#[derive(Debug, Clone)]
pub struct RoutingRules {
    rules: Vec<Rule>,
    file: String,
    positions: Vec<ElementPositions>,
    /// Destination names in first-rule order, without duplicates.
    destinations: Vec<String>,
    /// Event name → indexes into `destinations`.
    by_event: HashMap<String, Vec<usize>>,
    /// Indexes into `destinations` of rules with `*`.
    match_all: Vec<usize>,
}

/// A rules file that did not load: `FILE:LINE:COLUMN: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct RulesError {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    destination_name: String,
    destination_arn: String,
    enabled_events: Vec<String>,
}

impl RoutingRules {
    /// Parses the article's format (trailing commas allowed). `file` names the source in errors.
    ///
    /// # Errors
    /// A [`RulesError`] at the line and column of the problem: malformed JSON, a missing or
    /// unknown key, a wrong type, or an empty destination name or event name.
    pub fn parse(text: &str, file: &str) -> Result<Self, RulesError> {
        let lenient = blank_trailing_commas(text);
        let raw: Vec<RawRule> = serde_json::from_str(&lenient).map_err(|error| RulesError {
            file: file.to_owned(),
            line: error.line().max(1),
            column: error.column().max(1),
            message: without_json_position(&error.to_string()).to_owned(),
        })?;
        let positions = top_level_elements(&lenient);
        let at = |index: usize, key: &str, message: String| {
            let position = positions
                .get(index)
                .map_or(Position { line: 1, column: 1 }, |element| element.of(key));
            RulesError {
                file: file.to_owned(),
                line: position.line,
                column: position.column,
                message,
            }
        };
        let mut rules = Vec::with_capacity(raw.len());
        for (index, rule) in raw.into_iter().enumerate() {
            if rule.destination_name.trim().is_empty() {
                return Err(at(
                    index,
                    "destination_name",
                    "destination_name must not be empty".into(),
                ));
            }
            if rule.enabled_events.iter().any(|name| name.is_empty()) {
                return Err(at(
                    index,
                    "enabled_events",
                    "enabled_events must not hold an empty name".into(),
                ));
            }
            rules.push(Rule {
                destination_name: rule.destination_name,
                destination_arn: rule.destination_arn,
                enabled_events: rule.enabled_events,
            });
        }
        Ok(Self::index(rules, file.to_owned(), positions))
    }

    fn index(rules: Vec<Rule>, file: String, positions: Vec<ElementPositions>) -> Self {
        let mut destinations: Vec<String> = Vec::new();
        let mut by_event: HashMap<String, Vec<usize>> = HashMap::new();
        let mut match_all = Vec::new();
        for rule in &rules {
            let destination = match destinations
                .iter()
                .position(|name| *name == rule.destination_name)
            {
                Some(index) => index,
                None => {
                    destinations.push(rule.destination_name.clone());
                    destinations.len() - 1
                }
            };
            for name in &rule.enabled_events {
                let targets = if name == MATCH_ALL {
                    &mut match_all
                } else {
                    by_event.entry(name.clone()).or_default()
                };
                if !targets.contains(&destination) {
                    targets.push(destination);
                }
            }
        }
        Self {
            rules,
            file,
            positions,
            destinations,
            by_event,
            match_all,
        }
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The `destination_arn` of the first rule naming `destination` (AWS mode sends there).
    pub fn destination_arn(&self, destination: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|rule| rule.destination_name == destination)
            .map(|rule| rule.destination_arn.as_str())
    }

    /// Every destination named by a rule, in first-rule order.
    pub fn destination_names(&self) -> &[String] {
        &self.destinations
    }

    /// The destinations that get an event called `event_name`, in first-rule order, each once.
    pub fn destinations_for(&self, event_name: &str) -> Vec<&str> {
        let mut indexes: Vec<usize> = self.match_all.clone();
        if let Some(named) = self.by_event.get(event_name) {
            indexes.extend(named);
        }
        indexes.sort_unstable();
        indexes.dedup();
        indexes
            .into_iter()
            .map(|index| self.destinations[index].as_str())
            .collect()
    }

    /// The event names `destination` gets, sorted; `None` when it gets every event (`*`).
    pub fn event_names_for(&self, destination: &str) -> Option<Vec<String>> {
        let index = self
            .destinations
            .iter()
            .position(|name| name == destination)?;
        if self.match_all.contains(&index) {
            return None;
        }
        let mut names: Vec<String> = self
            .by_event
            .iter()
            .filter(|(_, targets)| targets.contains(&index))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort_unstable();
        Some(names)
    }

    /// Whether `destination` gets events called `event_name`.
    pub fn enables(&self, destination: &str, event_name: &str) -> bool {
        let Some(index) = self
            .destinations
            .iter()
            .position(|name| name == destination)
        else {
            return false;
        };
        self.match_all.contains(&index)
            || self
                .by_event
                .get(event_name)
                .is_some_and(|targets| targets.contains(&index))
    }

    /// Checks that every rule names a known destination.
    ///
    /// # Errors
    /// A [`RulesError`] at the first unknown `destination_name`, listing the known ones.
    pub fn check_destinations<'a>(
        &self,
        known: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), RulesError> {
        for (index, rule) in self.rules.iter().enumerate() {
            if !known
                .clone()
                .into_iter()
                .any(|name| name == rule.destination_name)
            {
                let mut names: Vec<&str> = known.clone().into_iter().collect();
                names.sort_unstable();
                let position = self
                    .positions
                    .get(index)
                    .map_or(Position { line: 1, column: 1 }, |element| {
                        element.of("destination_name")
                    });
                return Err(RulesError {
                    file: self.file.clone(),
                    line: position.line,
                    column: position.column,
                    message: format!(
                        "unknown destination {:?}; the configuration has: {}",
                        rule.destination_name,
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Replaces each comma that directly precedes `]` or `}` (outside strings) with a space, so the
/// text parses as JSON and every position stays where it was.
fn blank_trailing_commas(text: &str) -> String {
    let characters: Vec<char> = text.chars().collect();
    let mut output = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut last_significant: Option<char> = None;
    for (index, &character) in characters.iter().enumerate() {
        if in_string {
            last_significant = Some('"');
            if escaped {
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == '"' {
                in_string = false;
            }
            output.push(character);
            continue;
        }
        match character {
            '"' => {
                in_string = true;
                output.push(character);
            }
            ',' => {
                // Trailing: after a value and before a closing bracket (not `[,]` nor `,,]`).
                let next = characters[index + 1..]
                    .iter()
                    .find(|next| !next.is_whitespace());
                let after_value = !matches!(last_significant, Some('[' | '{' | ',') | None);
                output.push(if after_value && matches!(next, Some(']' | '}')) {
                    ' '
                } else {
                    ','
                });
            }
            _ => output.push(character),
        }
        if !character.is_whitespace() {
            last_significant = Some(character);
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../tests/data/rules-seed.json");

    #[test]
    fn the_articles_file_loads_as_is() {
        let rules = RoutingRules::parse(SEED, "rules-seed.json").unwrap();
        assert_eq!(rules.rules().len(), 3);
        assert_eq!(
            rules.destination_names(),
            ["mixpanel", "hubspotcrm", "datawarehouse"]
        );
        assert_eq!(
            rules.destinations_for("page_view"),
            ["mixpanel", "hubspotcrm", "datawarehouse"]
        );
        assert_eq!(
            rules.destinations_for("login"),
            ["hubspotcrm", "datawarehouse"]
        );
        assert!(rules.destinations_for("event-9").is_empty());
        assert!(rules.enables("mixpanel", "button_click"));
        assert!(!rules.enables("mixpanel", "login"));
        assert!(!rules.enables("nowhere", "login"));
        assert_eq!(
            rules.event_names_for("mixpanel").unwrap(),
            ["button_click", "page_scroll", "page_view", "search"]
        );
        assert_eq!(rules.event_names_for("nowhere"), None);
    }

    #[test]
    fn star_matches_every_event() {
        let rules = RoutingRules::parse(crate::config::DEFAULT_RULES, "rules.json").unwrap();
        assert_eq!(rules.destinations_for("event-9"), ["archive"]);
        assert_eq!(
            rules.destinations_for("search"),
            ["mixpanel", "hubspotcrm", "datawarehouse", "archive"]
        );
        assert!(rules.enables("archive", "anything at all"));
        assert_eq!(rules.event_names_for("archive"), None, "star: every name");
    }

    #[test]
    fn syntax_errors_give_file_line_and_column() {
        let text = "[\n {\n   \"destination_name\": \"a\"\n   \"destination_arn\": \"x\"\n }\n]";
        let error = RoutingRules::parse(text, "bad.json").unwrap_err();
        assert_eq!(error.to_string(), "bad.json:4:4: expected `,` or `}`");
    }

    #[test]
    fn structure_errors_give_file_line_and_column() {
        let missing = "[{\"destination_name\": \"a\", \"destination_arn\": \"x\"}]";
        let error = RoutingRules::parse(missing, "r.json").unwrap_err();
        assert!(error.to_string().starts_with("r.json:1:"), "{error}");
        assert!(
            error.message.contains("missing field `enabled_events`"),
            "{error}"
        );

        let typo = "[\n {\"destination_name\": \"a\", \"destination_arn\": \"x\", \"enabled_event\": []}\n]";
        let error = RoutingRules::parse(typo, "r.json").unwrap_err();
        assert!(
            error.message.contains("unknown field `enabled_event`"),
            "{error}"
        );
        assert_eq!(error.line, 2);

        let wrong_type =
            "[{\"destination_name\": \"a\", \"destination_arn\": \"x\", \"enabled_events\": [1]}]";
        let error = RoutingRules::parse(wrong_type, "r.json").unwrap_err();
        assert!(
            error.message.contains("invalid type: integer `1`"),
            "{error}"
        );

        let empty = "[\n {\"destination_name\": \"\", \"destination_arn\": \"x\", \"enabled_events\": []}\n]";
        let error = RoutingRules::parse(empty, "r.json").unwrap_err();
        assert_eq!(
            error.to_string(),
            "r.json:2:23: destination_name must not be empty"
        );
    }

    #[test]
    fn unknown_destinations_are_reported_where_they_are_named() {
        let rules = RoutingRules::parse(SEED, "rules-seed.json").unwrap();
        let error = rules
            .check_destinations(["mixpanel", "datawarehouse"])
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "rules-seed.json:13:24: unknown destination \"hubspotcrm\"; the configuration has: datawarehouse, mixpanel"
        );
        rules
            .check_destinations(["mixpanel", "datawarehouse", "hubspotcrm"])
            .unwrap();
    }

    #[test]
    fn only_trailing_commas_are_forgiven() {
        assert!(RoutingRules::parse("[,]", "r.json").is_err());
        assert!(RoutingRules::parse("[{\"destination_name\": \"a\",, \"destination_arn\": \"x\", \"enabled_events\": []}]", "r.json").is_err());
        let comment = "[ // note\n]";
        assert!(RoutingRules::parse(comment, "r.json").is_err());
        let in_string = "[{\"destination_name\": \"a,]\", \"destination_arn\": \"x\", \"enabled_events\": [\"b,}\",]}]";
        let rules = RoutingRules::parse(in_string, "r.json").unwrap();
        assert_eq!(rules.rules()[0].destination_name, "a,]");
        assert_eq!(rules.rules()[0].enabled_events, ["b,}"]);
    }
}
