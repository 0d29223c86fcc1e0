//! What the Kinesis mode tests share: the Kinesis test double, the moto server's address, and
//! the reference aggregator (`aws-kinesis-agg`, Python) run as a child process.

#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

pub mod double;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The escape hatch for developers: tests that need moto or Python's `aws-kinesis-agg` print
/// "skipped" and pass. Refused under CI (`CI` set), where a missing dependency is a failure.
pub const SKIP_VAR: &str = "TRIBUTARY_TEST_SKIP_EXTERNAL";

fn skip_or_fail(what: &str) -> bool {
    let skip = std::env::var(SKIP_VAR).is_ok_and(|value| value == "1");
    if skip && std::env::var_os("CI").is_none() {
        eprintln!("skipped: {what} ({SKIP_VAR}=1)");
        return true;
    }
    panic!(
        "{what}. Run `eval \"$(scripts/start-moto.sh)\"` from the repository root first (it installs \
         moto[server] and aws-kinesis-agg when missing, starts moto on 127.0.0.1 and exports \
         TRIBUTARY_TEST_MOTO_URL; scripts/test.sh does this), or set {SKIP_VAR}=1 to skip these \
         tests outside CI"
    );
}

/// The moto server's URL from `TRIBUTARY_TEST_MOTO_URL`; `None` when skipping.
pub fn moto_url() -> Option<String> {
    match std::env::var("TRIBUTARY_TEST_MOTO_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip_or_fail("TRIBUTARY_TEST_MOTO_URL is not set: this test needs a moto server");
            None
        }
    }
}

fn reference_script() -> String {
    format!(
        "{}/tests/kinesis_common/kpl_reference.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Whether Python and `aws-kinesis-agg` are there; `false` when skipping.
pub fn reference_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import aws_kinesis_agg"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    found
        || !skip_or_fail(
            "python3 cannot import aws_kinesis_agg: this test needs the reference aggregator",
        )
}

/// Runs `kpl_reference.py <mode>` with `input` as JSON on stdin; returns its JSON output.
pub fn run_reference(mode: &str, input: &Value) -> Value {
    let mut child = Command::new("python3")
        .arg(reference_script())
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "kpl_reference.py {mode} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("kpl_reference.py prints JSON")
}
