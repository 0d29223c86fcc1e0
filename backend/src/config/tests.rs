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

#[test]
fn real_destinations_take_their_keys() {
    let text = r#"
[destinations.mp]
kind = "mixpanel"
endpoint = "https://api-eu.mixpanel.com/"
gzip = false
batch_size = 2000
[destinations.mp_sa]
kind = "mixpanel"
username_env = "MP_USER"
secret_env = "MP_SECRET"
project_id = "12345"
[destinations.crm]
kind = "hubspot"
event_names = { login = "pe1234_login" }
event_name_prefix = "pe1234_"
identity = { email = "data.email", object_id = ["user_id", "context.hubspot.id"] }
requests_per_10s = 190
[destinations.pg]
kind = "postgres"
url_env = "WAREHOUSE_URL"
table = "analytics.events"
timeout_ms = 3000
"#;
    let config = Config::parse(text, file_source()).unwrap();
    assert_eq!(
        config.destinations["mp"].kind,
        DestinationKind::Mixpanel {
            endpoint: "https://api-eu.mixpanel.com".into(),
            auth: MixpanelAuth::ProjectToken {
                token_env: "MIXPANEL_TOKEN".into()
            },
            gzip: false,
            timeout: Duration::from_secs(10),
        }
    );
    assert!(matches!(
        &config.destinations["mp_sa"].kind,
        DestinationKind::Mixpanel { auth: MixpanelAuth::ServiceAccount { project_id, .. }, gzip: true, .. }
            if project_id == "12345"
    ));
    let DestinationKind::Hubspot {
        event_names,
        event_name_prefix,
        identity,
        requests_per_10s,
        token_env,
        ..
    } = &config.destinations["crm"].kind
    else {
        panic!("hubspot expected");
    };
    assert_eq!(event_names["login"], "pe1234_login");
    assert_eq!(event_name_prefix.as_deref(), Some("pe1234_"));
    assert_eq!(identity.email, ["data.email"]);
    assert_eq!(identity.object_id, ["user_id", "context.hubspot.id"]);
    assert_eq!(identity.utk, ["context.hubspotutk"], "the default stays");
    assert_eq!(*requests_per_10s, 190);
    assert_eq!(token_env, "HUBSPOT_TOKEN");
    assert_eq!(
        config.destinations["pg"].kind,
        DestinationKind::Postgres {
            url_env: "WAREHOUSE_URL".into(),
            table: "analytics.events".into(),
            timeout: Duration::from_secs(3),
        }
    );
}

#[test]
fn real_destinations_refuse_unusable_values() {
    let cases = [
        ("kind = \"mixpanel\"\nusername_env = \"U\"\n", "secret_env"),
        (
            "kind = \"mixpanel\"\ntoken_env = \"T\"\nusername_env = \"U\"\nsecret_env = \"S\"\nproject_id = \"1\"\n",
            "token_env",
        ),
        ("kind = \"mixpanel\"\nendpoint = \"ftp://x\"\n", "endpoint"),
        ("kind = \"mixpanel\"\ntable = \"t\"\n", "table"),
        (
            "kind = \"hubspot\"\nrequests_per_10s = 5\n",
            "requests_per_10s",
        ),
        (
            "kind = \"hubspot\"\nidentity = { email = \"traits.email\" }\n",
            "identity.email",
        ),
        (
            "kind = \"hubspot\"\nidentity = { phone = \"data.phone\" }\n",
            "phone",
        ),
        (
            "kind = \"hubspot\"\nevent_names = { login = \"\" }\n",
            "event_names.login",
        ),
        ("kind = \"postgres\"\n", "url_env"),
        (
            "kind = \"postgres\"\nurl_env = \"U\"\ntable = \"bad-name\"\n",
            "table",
        ),
        (
            "kind = \"postgres\"\nurl_env = \"U\"\ngzip = true\n",
            "gzip",
        ),
    ];
    for (body, key) in cases {
        let text = format!("[destinations.a]\n{body}");
        let error = Config::parse(&text, file_source()).unwrap_err().to_string();
        assert!(
            error.contains(&format!("destinations.a.{key}")) || error.contains(&format!("`{key}`")),
            "{key}: {error}"
        );
    }
}

#[test]
fn privacy_keys_have_defaults_and_are_checked() {
    let config = Config::parse(
        DEFAULT_CONFIG,
        ConfigSource::BuiltIn(PathBuf::from("/work")),
    )
    .unwrap();
    assert_eq!(config.privacy.ip_mode, crate::privacy::IpMode::Anonymize);
    assert_eq!(
        config.server.trusted_proxies,
        crate::privacy::TrustedProxies::default()
    );
    assert!(config.destinations["archive"].requires_consent.is_empty());

    let config = Config::parse(
        r#"
[server]
trusted_proxies = ["10.0.0.0/8", "fd00::/8", "192.0.2.1"]

[privacy]
ip_mode = "drop"

[destinations.archive]
kind = "jsonl"
path = "archive.jsonl"
requires_consent = ["analytics", "marketing"]
"#,
        file_source(),
    )
    .unwrap();
    assert_eq!(config.privacy.ip_mode, crate::privacy::IpMode::Drop);
    assert!(
        config
            .server
            .trusted_proxies
            .contains("10.1.2.3".parse().unwrap())
    );
    assert!(
        config
            .server
            .trusted_proxies
            .contains("192.0.2.1".parse().unwrap())
    );
    assert!(
        !config
            .server
            .trusted_proxies
            .contains("192.0.2.2".parse().unwrap())
    );
    assert_eq!(
        config.destinations["archive"].requires_consent,
        ["analytics", "marketing"]
    );

    for (text, expected) in [
        (
            "[privacy]\nip_mode = \"hash\"\n",
            "privacy.ip_mode: \"hash\" is not an ip_mode",
        ),
        (
            "[privacy]\nip_modes = \"drop\"\n",
            "unknown field `ip_modes`",
        ),
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy\"]\n",
            "server.trusted_proxies: \"proxy\" is not a CIDR",
        ),
        (
            "[destinations.a]\nkind = \"jsonl\"\npath = \"a\"\nrequires_consent = [\"\"]\n",
            "destinations.a.requires_consent[0]: a consent category must not be empty",
        ),
    ] {
        let error = Config::parse(text, file_source()).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}: {error}");
    }
}

#[test]
fn body_and_header_timeouts_have_defaults_and_must_be_positive() {
    let config = Config::parse(
        DEFAULT_CONFIG,
        ConfigSource::BuiltIn(PathBuf::from("/work")),
    )
    .unwrap();
    assert_eq!(config.server.body_timeout, Duration::from_secs(30));
    assert_eq!(config.server.header_timeout, Duration::from_secs(10));
    let config = Config::parse("[server]\nbody_timeout = \"2s\"\n", file_source()).unwrap();
    assert_eq!(config.server.body_timeout, Duration::from_secs(2));
    for key in ["body_timeout", "header_timeout"] {
        for value in ["0s", "soon"] {
            let error = Config::parse(&format!("[server]\n{key} = \"{value}\"\n"), file_source())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&format!("server.{key}")) && error.contains("positive duration"),
                "{error}"
            );
        }
    }
}

#[test]
fn max_pending_bytes_has_a_default_and_must_hold_the_largest_body() {
    let config = Config::parse("", file_source()).unwrap();
    assert_eq!(config.server.max_pending_bytes, 8 * 1024 * 1024);
    let config = Config::parse("[server]\nmax_pending_bytes = 1048576\n", file_source()).unwrap();
    assert_eq!(config.server.max_pending_bytes, 1_048_576);
    for value in ["0", "524287", "4294967296"] {
        let error = Config::parse(
            &format!("[server]\nmax_pending_bytes = {value}\n"),
            file_source(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("server.max_pending_bytes") && error.contains("out of range"),
            "{error}"
        );
    }
}

#[test]
fn max_connections_has_a_default_and_must_be_positive() {
    let config = Config::parse("", file_source()).unwrap();
    assert_eq!(config.server.max_connections, 1024);
    let config = Config::parse("[server]\nmax_connections = 10\n", file_source()).unwrap();
    assert_eq!(config.server.max_connections, 10);
    let error = Config::parse("[server]\nmax_connections = 0\n", file_source())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("server.max_connections") && error.contains("out of range"),
        "{error}"
    );
}

#[test]
fn local_destinations_default_to_larger_batches() {
    let text = "[destinations.w]\nkind = \"sqlite\"\npath = \"w.db\"\n[destinations.j]\nkind = \"jsonl\"\npath = \"j.jsonl\"\n[destinations.h]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n[destinations.s]\nkind = \"sqlite\"\npath = \"s.db\"\nbatch_size = 10\n";
    let config = Config::parse(text, file_source()).unwrap();
    assert_eq!(config.destinations["w"].batch_size, 1000);
    assert_eq!(config.destinations["j"].batch_size, 1000);
    assert_eq!(config.destinations["h"].batch_size, 100);
    assert_eq!(
        config.destinations["s"].batch_size, 10,
        "an explicit size wins"
    );
}
