//! `tributary rules check FILE [--config FILE]`.

use std::path::Path;

use crate::config::Config;
use crate::routing::RoutingRules;

pub(super) fn check(file: &Path, config: Option<&Path>) -> Result<(), String> {
    let text =
        std::fs::read_to_string(file).map_err(|error| format!("{}: {error}", file.display()))?;
    let label = file.display().to_string();
    let rules = RoutingRules::parse(&text, &label).map_err(|error| error.to_string())?;
    if let Some(config) = config {
        let config = Config::load(Some(config)).map_err(|error| error.to_string())?;
        rules
            .check_destinations(config.destinations.keys().map(String::as_str))
            .map_err(|error| error.to_string())?;
    }
    println!(
        "{label}: ok: {} rules for {} destinations ({})",
        rules.rules().len(),
        rules.destination_names().len(),
        rules.destination_names().join(", ")
    );
    Ok(())
}
