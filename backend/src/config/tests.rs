use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn file_source() -> ConfigSource {
    ConfigSource::File(PathBuf::from("/etc/tributary/tributary.toml"))
}

#[test]
fn the_built_in_defaults_are_the_samples() {
    let config = Config::parse(
        DEFAULT_CONFIG,
        ConfigSource::BuiltIn(PathBuf::from("/work")),
    )
    .unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:8080");
    assert_eq!(config.server.write_keys, ["dev-write-key"]);
    assert_eq!(
        config.storage.data_dir,
        PathBuf::from("/work/tributary-data")
    );
    assert_eq!(config.storage.retention, Duration::from_secs(7 * 86_400));
    assert_eq!(config.storage.dedup_window, Duration::from_secs(86_400));
    assert_eq!(config.rules, RulesSource::BuiltIn);
    let names: Vec<_> = config.destinations.keys().cloned().collect();
    assert_eq!(
        names,
        ["archive", "datawarehouse", "hubspotcrm", "mixpanel"]
    );
    assert_eq!(
        config.destinations["datawarehouse"].kind,
        DestinationKind::Sqlite {
            path: PathBuf::from("/work/tributary-data/warehouse.db")
        }
    );
    assert_eq!(config.destinations["archive"].retry.max_attempts, 8);
}

#[test]
fn the_design_example_parses_with_its_overrides() {
    let text = r#"
[server]
listen = "0.0.0.0:9090"
rate_limit_per_key = 100
[storage]
data_dir = "/var/lib/tributary"
retention = "3d"
[routing]
rules = "routes/rules.json"
[retry]
max_attempts = 5
[destinations.hooks]
kind = "webhook"
url = "http://127.0.0.1:9000/events"
secret_env = "HOOKS_SECRET"
batch_size = 50
timeout_ms = 2000
retry = { max_attempts = 3 }
[destinations.mixpanel]
kind = "mixpanel"
endpoint = "http://127.0.0.1:9100"
token_env = "MIXPANEL_TOKEN"
[destinations.warehouse_pg]
kind = "postgres"
url_env = "WAREHOUSE_URL"
"#;
    let config = Config::parse(text, file_source()).unwrap();
    assert_eq!(config.storage.data_dir, PathBuf::from("/var/lib/tributary"));
    assert_eq!(
        config.rules,
        RulesSource::File(PathBuf::from("/etc/tributary/routes/rules.json"))
    );
    let hooks = &config.destinations["hooks"];
    assert_eq!(hooks.batch_size, 50);
    assert_eq!(hooks.retry.max_attempts, 3, "the destination's override");
    assert_eq!(
        hooks.retry.base_delay,
        Duration::from_millis(500),
        "the rest from [retry] / defaults"
    );
    assert_eq!(
        config.destinations["mixpanel"].retry.max_attempts, 5,
        "[retry] applies to all"
    );
    assert!(matches!(
        &hooks.kind,
        DestinationKind::Webhook { timeout, secret_env: Some(secret), .. }
            if *timeout == Duration::from_secs(2) && secret == "HOOKS_SECRET"
    ));
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let error = Config::parse("[server]\nlisten = \"x\"\nlisen = 1\n", file_source()).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("unknown field `lisen`"), "{text}");
    assert!(text.contains("line 3"), "{text}");

    let error = Config::parse("[storrage]\n", file_source()).unwrap_err();
    assert!(
        error.to_string().contains("unknown field `storrage`"),
        "{error}"
    );

    let error = Config::parse(
        "[destinations.a]\nkind = \"jsonl\"\npath = \"a.jsonl\"\nurl = \"http://x\"\n",
        file_source(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "/etc/tributary/tributary.toml: destinations.a.url: not a setting of kind \"jsonl\" (it takes: path, batch_size, retry)"
    );
}

#[test]
fn bad_values_say_what_is_wrong() {
    let cases = [
        ("[storage]\nretention = \"a week\"\n", "storage.retention"),
        ("[server]\nwrite_keys = []\n", "server.write_keys"),
        ("[retry]\nmax_attempts = 0\n", "retry.max_attempts"),
        (
            "[destinations.a]\nkind = \"kafka\"\n",
            "destinations.a.kind",
        ),
        (
            "[destinations.a]\nkind = \"sqlite\"\n",
            "destinations.a.path",
        ),
        (
            "[destinations.a]\nkind = \"webhook\"\nurl = \"not a url\"\n",
            "destinations.a.url",
        ),
        (
            "[destinations.a]\nkind = \"jsonl\"\npath = \"x\"\nbatch_size = 0\n",
            "destinations.a.batch_size",
        ),
        (
            "[destinations.a]\nkind = \"jsonl\"\npath = \"x\"\nretry = { base_delay_ms = 10, max_delay_ms = 5 }\n",
            "destinations.a.retry.max_delay_ms",
        ),
    ];
    for (text, key) in cases {
        let error = Config::parse(text, file_source()).unwrap_err();
        assert!(
            error.to_string().contains(&format!(": {key}: ")),
            "{key}: {error}"
        );
    }
}
