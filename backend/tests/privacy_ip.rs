//! `context.ip` against the real binary, in each `ip_mode`: a direct request (the socket's
//! address), a request through a trusted proxy (its `X-Forwarded-For`), and one from an
//! untrusted peer that sends `X-Forwarded-For` anyway (ignored).

mod common;

use std::time::Duration;

use common::{Server, WRITE_KEY, config_with, eventually};
use serde_json::{Value, json};

const RULES: &str =
    r#"[{"destination_name": "archive", "destination_arn": "local", "enabled_events": ["*"]}]"#;

/// Sends one event with this id and optional `X-Forwarded-For`.
async fn send(server: &Server, id: &str, forwarded_for: Option<&str>, own_ip: Option<&str>) {
    let mut event = json!({"id": id, "name": "login", "data": {}});
    if let Some(ip) = own_ip {
        event["context"] = json!({"ip": ip});
    }
    let mut request = reqwest::Client::new()
        .post(server.url("/v1/event"))
        .bearer_auth(WRITE_KEY)
        .header("content-type", "application/json")
        .body(event.to_string());
    if let Some(value) = forwarded_for {
        request = request.header("x-forwarded-for", value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// The stored `context.ip` of each event, by id (`null` when absent).
async fn stored_ips(server: &Server, count: usize) -> std::collections::HashMap<String, Value> {
    eventually(Duration::from_secs(20), "every event archived", || {
        server.jsonl("data/archive.jsonl").len() == count
    })
    .await;
    server
        .jsonl("data/archive.jsonl")
        .into_iter()
        .map(|event| {
            (
                event["id"].as_str().unwrap().to_owned(),
                event["context"]["ip"].clone(),
            )
        })
        .collect()
}

/// Two servers per mode: one trusting the loopback proxy, one trusting only 10.0.0.0/8 (so the
/// test's loopback connection is an untrusted peer).
async fn run_mode(
    mode: &str,
) -> (
    std::collections::HashMap<String, Value>,
    std::collections::HashMap<String, Value>,
) {
    let trusting = Server::start(
        &config_with(&format!("\n[privacy]\nip_mode = \"{mode}\"\n")).replace(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"127.0.0.1/32\", \"::1\"]\n",
        ),
        RULES,
    );
    send(&trusting, "direct", None, None).await;
    send(
        &trusting,
        "proxied-v4",
        Some("198.51.100.23, 203.0.113.77"),
        None,
    )
    .await;
    send(
        &trusting,
        "proxied-v6",
        Some("2001:db8:abcd:12:3456:789a:bcde:f012"),
        None,
    )
    .await;
    send(&trusting, "own-ip", None, Some("192.0.2.200")).await;
    let through_proxy = stored_ips(&trusting, 4).await;

    let untrusting = Server::start(
        &config_with(&format!("\n[privacy]\nip_mode = \"{mode}\"\n")).replace(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        ),
        RULES,
    );
    send(&untrusting, "spoofed", Some("203.0.113.77"), None).await;
    let untrusted = stored_ips(&untrusting, 1).await;
    (through_proxy, untrusted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mode_keeps_the_address() {
    let (proxied, untrusted) = run_mode("full").await;
    assert_eq!(proxied["direct"], "127.0.0.1");
    assert_eq!(
        proxied["proxied-v4"], "203.0.113.77",
        "the hop the trusted proxy saw"
    );
    assert_eq!(
        proxied["proxied-v6"],
        "2001:db8:abcd:12:3456:789a:bcde:f012"
    );
    assert_eq!(
        proxied["own-ip"], "192.0.2.200",
        "an event's own address is kept"
    );
    assert_eq!(
        untrusted["spoofed"], "127.0.0.1",
        "an untrusted peer's header is ignored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymize_mode_zeroes_the_host_part() {
    let (proxied, untrusted) = run_mode("anonymize").await;
    assert_eq!(proxied["direct"], "127.0.0.0");
    assert_eq!(proxied["proxied-v4"], "203.0.113.0");
    assert_eq!(proxied["proxied-v6"], "2001:db8:abcd::");
    assert_eq!(proxied["own-ip"], "192.0.2.0");
    assert_eq!(untrusted["spoofed"], "127.0.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_mode_keeps_no_address() {
    let (proxied, untrusted) = run_mode("drop").await;
    for id in ["direct", "proxied-v4", "proxied-v6", "own-ip"] {
        assert_eq!(proxied[id], Value::Null, "{id}");
    }
    assert_eq!(untrusted["spoofed"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymize_is_the_default_and_bad_settings_fail_at_start() {
    let server = Server::start(&config_with(""), RULES);
    send(&server, "default", Some("203.0.113.77"), None).await;
    assert_eq!(stored_ips(&server, 1).await["default"], "127.0.0.0");

    for (config, expected) in [
        (
            config_with("\n[privacy]\nip_mode = \"partial\"\n"),
            "privacy.ip_mode: \"partial\" is not an ip_mode",
        ),
        (
            config_with("").replace(
                "[server]\n",
                "[server]\ntrusted_proxies = [\"10.0.0.0/40\"]\n",
            ),
            "server.trusted_proxies: \"10.0.0.0/40\" is not a CIDR",
        ),
    ] {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("tributary.toml"), config).unwrap();
        std::fs::write(folder.path().join("rules.json"), RULES).unwrap();
        let output = std::process::Command::new(common::BINARY)
            .args(["serve", "--config", "tributary.toml"])
            .current_dir(folder.path())
            .output()
            .unwrap();
        assert!(!output.status.success());
        let printed = common::text(&output);
        assert!(printed.contains(expected), "{printed}");
    }
}
