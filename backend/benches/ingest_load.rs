//! Load benchmark of the local pipeline, `tributary serve` (issue 3). CI builds it and never runs
//! it; `docs/BENCHMARKS.md` ("Issue 3: local pipeline load", "Issue 10: load") has the figures and
//! how to read them; `scripts/load.sh` runs the issue 10 set.
//!
//! For each batch size (1, 10 and 100 events per request) the bench starts the release
//! `tributary` binary in a fresh temporary folder (its own data dir, so runs do not affect each
//! other) with the samples' configuration and rules (`datawarehouse` = SQLite, `archive`,
//! `mixpanel`, `hubspotcrm` = JSON Lines; `listen = "127.0.0.1:0"`), then drives it over loopback:
//!
//! - **Load.** `C` keep-alive HTTP/1.1 connections, each a closed loop (send a request, wait for
//!   its answer, send the next) of `POST /v1/batch` with `Authorization: Bearer dev-write-key`;
//!   with `--rate`, an open loop instead: each connection sends one request per fixed interval
//!   (offering `rate` events/s in all), never catching up in a burst when an answer was late.
//!   The client is a minimal one written here on tokio's `TcpStream` (one current-thread runtime
//!   per load thread, `--threads`), so that the load generator takes as little as possible of the
//!   two cores it shares with the server. Every event is SDK-shaped (~320 bytes: a UUIDv7-shaped
//!   `id`, one of the nine names the warehouse takes in turn, `data` with three properties,
//!   `timestamp`, `anonymous_id` among 10,000, `source`, `context.library`; the body has
//!   `sent_at`), and every id is new, so every event is stored.
//! - **Counting.** A warm-up, then a measured window: requests sent inside the window count.
//!   Accepted events are those answered in `200` responses whose `accepted` equals the number
//!   sent with `rejected` empty; a `503` (the ingest shedding load beyond
//!   `server.max_pending_bytes`) is counted as *shed*, apart; anything else (another status, a
//!   short `accepted`, an I/O error) is an error. Request latency is from just before the request
//!   is written to the last byte of the answer, in an HDR histogram (µs); shed requests have
//!   their own histogram, so the latency figures are those of requests the server took. A shed
//!   connection sends its next request at once (it ignores `Retry-After`, the harshest client),
//!   and a marker on a shed request is never seen (counted as such).
//! - **POST → warehouse.** Every `--marker-ms` (10 ms) the next request sent carries a marker:
//!   the id of its first event and the instant just before it was written go to an observer
//!   thread, which polls the warehouse table for it (`SELECT 1 FROM events WHERE id = ?`, a
//!   read-only rusqlite connection) every millisecond at first, then every 2% of the marker's age;
//!   the latency is when it saw the row minus the send instant (so it over-states by up to 2%, or
//!   1–2 ms for short ones).
//! - **Log lag.** The observer scrapes `GET /metrics` every 100 ms during the window:
//!   `tributary_log_lag_events{destination}` (records not yet committed as delivered; the workers
//!   commit every 200 ms while busy, so a keeping-up worker still shows up to ~200 ms of ingest).
//!   After the window the load stops and the bench waits until every lag is 0 and every
//!   destination's `tributary_destination_delivered_total` equals the events routed to it: that
//!   wait is the *drain*. Delivery *kept up* when every destination's lag stayed under one second
//!   of ingest and did not grow through the window (the mean of the last quarter of its samples
//!   is at most 1.5 × that of the second quarter plus half a second of ingest), the drain took
//!   under a second, and every destination got exactly the events routed to it (and the
//!   warehouse table holds one row per accepted event).
//! - **Server.** Peak memory is `VmHWM` of `/proc/PID/status` (the process is new per batch size).
//!   CPU over the window: the server from `/proc/PID/stat`, each load thread and the observer from
//!   `/proc/thread-self/stat`, everything else from `/proc/stat` (to show the machine was quiet;
//!   it includes the kernel threads doing the server's I/O).
//!
//! Run (about 90 s; the bench builds the release binary first with
//! `cargo build --release -p tributary-backend --bin tributary`, a no-op when it is up to date, and
//! runs `$CARGO_TARGET_DIR/release/tributary`, found beside the bench executable):
//!
//! ```sh
//! export CARGO_TARGET_DIR=$HOME/.cache/tributary-target
//! cargo bench -p tributary-backend --bench ingest_load
//! # options after `--`:
//! #   --batch 1,10,100     batch sizes          --connections N  (default per batch size)
//! #   --duration 15        measured seconds     --warmup 3       warm-up seconds
//! #   --threads N          load threads (1)     --marker-ms 10   marker interval
//! #   --sweep 1,2,4,…      for each batch size, one short run (2 s + 5 s) per connection count
//! #   --bin PATH           this binary instead  (TRIBUTARY_BIN too; then nothing is built)
//! #   --rate EVENTS        open loop: offer this many events/s in all (each connection sends
//! #                        at a fixed interval) instead of the closed loop
//! #   --pipeline full      the samples' four destinations (default); experiments:
//! #              warehouse   only `datawarehouse`;  ingest-only  no destination at all
//! #   --destination-batch-size N   `batch_size` of every destination (an experiment; default 100)
//! #   --max-pending-bytes N        the server's `server.max_pending_bytes` (default: its default)
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WRITE_KEY: &str = "dev-write-key";
/// The nine names the samples' warehouse takes; events cycle through them.
const NAMES: [&str; 9] = [
    "page_view",
    "button_click",
    "page_scroll",
    "search",
    "login",
    "logout",
    "registration",
    "email_sent",
    "email_open",
];
/// `samples/rules.json`, as (destination, the names it takes; `None` = every name).
const ROUTES: [(&str, Option<&[&str]>); 4] = [
    ("datawarehouse", None),
    ("archive", None),
    (
        "mixpanel",
        Some(&["page_view", "search", "button_click", "page_scroll"]),
    ),
    (
        "hubspotcrm",
        Some(&[
            "login",
            "logout",
            "registration",
            "page_view",
            "search",
            "email_sent",
            "email_open",
        ]),
    ),
];
/// What the server runs besides the ingest and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pipeline {
    /// The samples' four destinations and rules (the benchmark).
    Full,
    /// Only `datawarehouse`, taking its nine names (an experiment).
    Warehouse,
    /// No destination: ingest and log only (an experiment).
    IngestOnly,
}

impl Pipeline {
    fn parse(text: &str) -> Self {
        match text {
            "full" => Self::Full,
            "warehouse" => Self::Warehouse,
            "ingest-only" => Self::IngestOnly,
            other => panic!("--pipeline full|warehouse|ingest-only, not {other:?}"),
        }
    }

    fn routes(self) -> &'static [(&'static str, Option<&'static [&'static str]>)] {
        match self {
            Self::Full => &ROUTES,
            Self::Warehouse => &ROUTES[..1],
            Self::IngestOnly => &[],
        }
    }

    fn has_warehouse(self) -> bool {
        self != Self::IngestOnly
    }

    /// The rules file's text.
    fn rules(self) -> String {
        match self {
            Self::Full => {
                let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/rules.json");
                std::fs::read_to_string(path).expect("read samples/rules.json")
            }
            Self::Warehouse => format!(
                r#"[{{"destination_name": "datawarehouse", "destination_arn": "local", "enabled_events": {}}}]"#,
                serde_json::to_string(&NAMES).expect("names")
            ),
            Self::IngestOnly => "[]".into(),
        }
    }

    /// `samples/tributary.toml` with a free port, the data in the run's folder, and this
    /// pipeline's destinations.
    fn config(self, batch_size: Option<usize>, max_pending_bytes: Option<u64>) -> String {
        let max_pending_bytes = max_pending_bytes.map_or_else(String::new, |bytes| {
            format!("max_pending_bytes = {bytes}\n")
        });
        let mut config = format!(
            r#"[server]
listen = "127.0.0.1:0"
write_keys = ["{WRITE_KEY}"]
{max_pending_bytes}
[storage]
data_dir = "data"

[routing]
rules = "rules.json"
"#
        );
        for (destination, _) in self.routes() {
            let kind = if *destination == "datawarehouse" {
                "kind = \"sqlite\"\npath = \"data/warehouse.db\""
            } else {
                "kind = \"jsonl\""
            };
            let _ = write!(config, "\n[destinations.{destination}]\n{kind}\n");
            if *destination != "datawarehouse" {
                let _ = writeln!(config, "path = \"data/{destination}.jsonl\"");
            }
            if let Some(batch_size) = batch_size {
                let _ = writeln!(config, "batch_size = {batch_size}");
            }
        }
        config
    }
}

/// Linux's `USER_HZ`: the unit of the CPU times in `/proc/*/stat`.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
/// How often the observer scrapes `/metrics` during the window.
const SCRAPE_INTERVAL: Duration = Duration::from_millis(100);
/// The longest the bench waits for delivery to catch up after the load stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

fn main() {
    let options = Options::parse();
    let binary = options.binary();
    println!(
        "tributary load bench: binary {}, {} core(s)",
        binary.display(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    if let Some(counts) = &options.sweep {
        for &batch in &options.batches {
            println!(
                "\n## sweep: batch {batch}, 2 s warm-up + 5 s measured per connection count, pipeline {:?}",
                options.pipeline
            );
            println!(
                "{:>5} | {:>11} | {:>9} | {:>8} | {:>8} | {:>8} | {:>9} | {:>7} | {:>11} | {:>9} | {:>6} | {:>9}",
                "conns",
                "events/s",
                "req/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "e2e p50",
                "kept up",
                "server CPU",
                "shed",
                "errors",
                "VmHWM MiB"
            );
            for &connections in counts {
                let case = Case {
                    pipeline: options.pipeline,
                    destination_batch_size: options.destination_batch_size,
                    max_pending_bytes: options.max_pending_bytes,
                    rate: options.rate,
                    batch,
                    connections,
                    threads: options.threads,
                    warmup: Duration::from_secs(2),
                    duration: Duration::from_secs(5),
                    marker_interval: options.marker_interval,
                };
                let result = run_case(&binary, &case);
                println!(
                    "{:>5} | {:>11} | {:>9} | {:>8.2} | {:>8.2} | {:>8.2} | {:>9.1} | {:>7} | {:>11.2} | {:>9} | {:>6} | {:>9.1}",
                    connections,
                    thousands(result.events_per_second() as u64),
                    thousands(result.requests_per_second() as u64),
                    ms(result.latency.value_at_quantile(0.5)),
                    ms(result.latency.value_at_quantile(0.99)),
                    ms(result.latency.max()),
                    ms(result.end_to_end.value_at_quantile(0.5)),
                    yes_no(result.kept_up()),
                    result.server_cpu / result.window.as_secs_f64(),
                    result.shed(),
                    result.errors(),
                    result.server_hwm_kib as f64 / 1024.0
                );
            }
        }
        return;
    }
    let mut results = Vec::new();
    for &batch in &options.batches {
        let case = Case {
            pipeline: options.pipeline,
            destination_batch_size: options.destination_batch_size,
            max_pending_bytes: options.max_pending_bytes,
            rate: options.rate,
            batch,
            connections: options
                .connections
                .unwrap_or_else(|| default_connections(batch)),
            threads: options.threads,
            warmup: options.warmup,
            duration: options.duration,
            marker_interval: options.marker_interval,
        };
        let result = run_case(&binary, &case);
        result.print(&case);
        results.push((case, result));
    }
    println!("\n## summary (markdown)\n");
    println!(
        "| batch | connections | accepted events/s | requests/s | p50 / p99 / max ms (taken) | shed (503) | errors | POST → warehouse p50 / p99 ms | max log lag (events) | drain | delivery kept up | server VmHWM | CPU server / load gen / other (cores) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (case, result) in &results {
        println!("{}", result.markdown_row(case));
    }
}

/// The chosen concurrency per batch size, from the sweeps in docs/BENCHMARKS.md: the most
/// accepted events/s among the counts with request p99 under 50 ms and delivery keeping up (the
/// fewer connections when within a few percent); at batch 100 delivery keeps up at none, so the
/// most events/s with p99 under 50 ms. Batch 1: 128; batch 10: 16; batch 100: 16.
fn default_connections(batch: usize) -> usize {
    match batch {
        0..=9 => 128,
        _ => 16,
    }
}

struct Options {
    pipeline: Pipeline,
    destination_batch_size: Option<usize>,
    max_pending_bytes: Option<u64>,
    rate: Option<f64>,
    batches: Vec<usize>,
    connections: Option<usize>,
    threads: usize,
    duration: Duration,
    warmup: Duration,
    marker_interval: Duration,
    sweep: Option<Vec<usize>>,
    binary: Option<PathBuf>,
}

impl Options {
    fn parse() -> Self {
        let mut options = Self {
            pipeline: Pipeline::Full,
            destination_batch_size: None,
            max_pending_bytes: None,
            rate: None,
            batches: vec![1, 10, 100],
            connections: None,
            threads: 1,
            duration: Duration::from_secs(15),
            warmup: Duration::from_secs(3),
            marker_interval: Duration::from_millis(10),
            sweep: None,
            binary: std::env::var_os("TRIBUTARY_BIN").map(PathBuf::from),
        };
        let list = |text: String| -> Vec<usize> {
            text.split(',')
                .map(|item| item.trim().parse().expect("a list of numbers"))
                .collect()
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
            match arg.as_str() {
                // `cargo bench` passes `--bench` to every bench binary.
                "--bench" => {}
                "--batch" => options.batches = list(value()),
                "--connections" => {
                    options.connections = Some(value().parse().expect("--connections N"));
                }
                "--threads" => options.threads = value().parse().expect("--threads N"),
                "--duration" => {
                    options.duration = Duration::from_secs_f64(value().parse().expect("seconds"));
                }
                "--warmup" => {
                    options.warmup = Duration::from_secs_f64(value().parse().expect("seconds"));
                }
                "--marker-ms" => {
                    options.marker_interval =
                        Duration::from_millis(value().parse().expect("milliseconds"));
                }
                "--sweep" => options.sweep = Some(list(value())),
                "--bin" => options.binary = Some(PathBuf::from(value())),
                "--pipeline" => options.pipeline = Pipeline::parse(&value()),
                "--destination-batch-size" => {
                    options.destination_batch_size =
                        Some(value().parse().expect("--destination-batch-size N"));
                }
                "--max-pending-bytes" => {
                    options.max_pending_bytes =
                        Some(value().parse().expect("--max-pending-bytes BYTES"));
                }
                "--rate" => options.rate = Some(value().parse().expect("--rate EVENTS_PER_SECOND")),
                other => panic!("unknown argument {other:?} (see the bench's module docs)"),
            }
        }
        assert!(options.threads >= 1, "--threads must be at least 1");
        options
    }

    /// The binary to run: `--bin`/`TRIBUTARY_BIN`, else the release binary beside this bench's
    /// executable (`target/release/deps/ingest_load-…` → `target/release/tributary`), built first.
    fn binary(&self) -> PathBuf {
        if let Some(binary) = &self.binary {
            assert!(binary.exists(), "{} does not exist", binary.display());
            return binary.clone();
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        println!(
            "building the release binary: cargo build --release -p tributary-backend --bin tributary"
        );
        let status = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "tributary-backend",
                "--bin",
                "tributary",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --release failed");
        let executable = std::env::current_exe().expect("the bench's own path");
        let release = executable
            .parent()
            .and_then(Path::parent)
            .expect("target/release/deps/…");
        let binary = release.join("tributary");
        assert!(
            binary.exists(),
            "{} does not exist: pass --bin PATH",
            binary.display()
        );
        binary
    }
}

/// One run: a batch size and a concurrency.
struct Case {
    pipeline: Pipeline,
    /// `--destination-batch-size`: `batch_size` of every destination (default: the default, 100).
    destination_batch_size: Option<usize>,
    /// `--max-pending-bytes`: the server's `server.max_pending_bytes` (default: its default).
    max_pending_bytes: Option<u64>,
    /// `--rate`: events/s offered in all (open loop); `None`: closed loop.
    rate: Option<f64>,
    batch: usize,
    connections: usize,
    threads: usize,
    warmup: Duration,
    duration: Duration,
    marker_interval: Duration,
}

// ---------------------------------------------------------------------------------------------
// The server under test

struct Server {
    child: Child,
    address: SocketAddr,
    folder: tempfile::TempDir,
}

impl Server {
    fn start(binary: &Path, case: &Case) -> Self {
        let pipeline = case.pipeline;
        let folder = tempfile::Builder::new()
            .prefix("tributary-load-")
            .tempdir()
            .expect("a temporary folder");
        std::fs::write(
            folder.path().join("tributary.toml"),
            pipeline.config(case.destination_batch_size, case.max_pending_bytes),
        )
        .expect("write tributary.toml");
        std::fs::write(folder.path().join("rules.json"), pipeline.rules())
            .expect("write rules.json");
        let log = std::fs::File::create(folder.path().join("serve.log")).expect("serve.log");
        let mut child = Command::new(binary)
            .args([
                "serve",
                "--config",
                "tributary.toml",
                "--listen",
                "127.0.0.1:0",
            ])
            .current_dir(folder.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start tributary serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("tributary: listening on http://") {
                    let _ = sender.send(address.to_owned());
                }
            }
        });
        let address = receiver
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let log =
                    std::fs::read_to_string(folder.path().join("serve.log")).unwrap_or_default();
                panic!("tributary serve did not start:\n{log}")
            })
            .parse()
            .expect("a socket address");
        Self {
            child,
            address,
            folder,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn warehouse(&self) -> PathBuf {
        self.folder.path().join("data/warehouse.db")
    }

    /// SIGTERM (a graceful stop), then SIGKILL if it takes over 10 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// CPU seconds (user + system) from a `/proc/…/stat` file.
fn cpu_seconds(stat_path: &str) -> f64 {
    let text = std::fs::read_to_string(stat_path).unwrap_or_default();
    let after_name = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `fields[0]` is field 3.
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / CLOCK_TICKS_PER_SECOND
}

/// Busy CPU seconds of the whole machine, from `/proc/stat` (user, nice, system, irq, softirq,
/// steal; not idle or iowait).
fn machine_busy_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = text.lines().next().unwrap_or("");
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&index| ticks.get(index).copied().unwrap_or(0))
        .sum::<u64>();
    busy as f64 / CLOCK_TICKS_PER_SECOND
}

/// A `kB` line of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// One run

struct CaseResult {
    window: Duration,
    latency: Histogram<u64>,
    shed_latency: Histogram<u64>,
    end_to_end: Histogram<u64>,
    end_to_end_series: Vec<(f64, f64)>,
    markers_unseen: usize,
    requests: u64,
    events: u64,
    body_bytes: u64,
    statuses: BTreeMap<u16, u64>,
    short_accepted: u64,
    io_errors: u64,
    lags: BTreeMap<String, LagSeries>,
    drain: Option<Duration>,
    delivery_mismatch: Vec<String>,
    server_hwm_kib: u64,
    server_rss_kib: u64,
    server_cpu: f64,
    load_cpu: f64,
    observer_cpu: f64,
    other_cpu: f64,
    server_threads: u64,
}

impl CaseResult {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.window.as_secs_f64()
    }

    fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64()
    }

    /// Requests answered `503`: shed by the ingest's admission control.
    fn shed(&self) -> u64 {
        self.statuses.get(&503).copied().unwrap_or(0)
    }

    fn errors(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| **status != 200 && **status != 503)
            .map(|(_, count)| count)
            .sum::<u64>()
            + self.short_accepted
            + self.io_errors
    }

    fn kept_up(&self) -> bool {
        self.drain
            .is_some_and(|drain| drain < Duration::from_secs(1))
            && self.delivery_mismatch.is_empty()
            && self
                .lags
                .values()
                .all(|lag| lag.kept_up(self.events_per_second()))
    }

    fn print(&self, case: &Case) {
        let window = self.window.as_secs_f64();
        println!(
            "\n## batch {}: {} connection(s) on {} load thread(s), {:.0} s warm-up, {:.1} s measured, pipeline {:?}, {}{}",
            case.batch,
            case.connections,
            case.threads,
            case.warmup.as_secs_f64(),
            window,
            case.pipeline,
            case.rate.map_or_else(
                || "closed loop".to_owned(),
                |rate| format!("open loop offering {} events/s", thousands(rate as u64))
            ),
            case.destination_batch_size
                .map_or_else(String::new, |size| format!(
                    ", destinations' batch_size {size}"
                )),
        );
        println!(
            "accepted      {} events/s ({} events in {window:.1} s), {} requests/s; bodies of {} bytes on average ({} per event)",
            thousands(self.events_per_second() as u64),
            thousands(self.events),
            thousands(self.requests_per_second() as u64),
            self.body_bytes / self.requests.max(1),
            self.body_bytes / (self.requests.max(1) * case.batch as u64),
        );
        println!(
            "errors        {} (statuses {:?}, 200 with accepted != sent: {}, I/O errors: {})",
            self.errors(),
            self.statuses,
            self.short_accepted,
            self.io_errors
        );
        if self.shed() > 0 {
            println!(
                "shed (503)    {} requests ({} /s, {:.1}% of those sent), answered in p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                thousands(self.shed()),
                thousands((self.shed() as f64 / window) as u64),
                self.shed() as f64 * 100.0 / self.requests.max(1) as f64,
                ms(self.shed_latency.value_at_quantile(0.5)),
                ms(self.shed_latency.value_at_quantile(0.99)),
                ms(self.shed_latency.max()),
            );
        }
        println!(
            "latency       p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} requests)",
            ms(self.latency.value_at_quantile(0.5)),
            ms(self.latency.value_at_quantile(0.9)),
            ms(self.latency.value_at_quantile(0.99)),
            ms(self.latency.value_at_quantile(0.999)),
            ms(self.latency.max()),
            self.latency.len()
        );
        println!(
            "POST→warehouse p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} markers seen, {} never seen)",
            ms(self.end_to_end.value_at_quantile(0.5)),
            ms(self.end_to_end.value_at_quantile(0.9)),
            ms(self.end_to_end.value_at_quantile(0.99)),
            ms(self.end_to_end.max()),
            self.end_to_end.len(),
            self.markers_unseen
        );
        let quarters: Vec<String> = (0..4)
            .map(|quarter| {
                let span = self.window.as_secs_f64() / 4.0;
                let mut latencies: Vec<f64> = self
                    .end_to_end_series
                    .iter()
                    .filter(|(sent, _)| {
                        *sent >= span * quarter as f64 && *sent < span * (quarter + 1) as f64
                    })
                    .map(|(_, latency)| *latency)
                    .collect();
                latencies.sort_by(f64::total_cmp);
                latencies
                    .get(latencies.len() / 2)
                    .map_or_else(|| "-".to_owned(), |median| format!("{median:.0}"))
            })
            .collect();
        println!(
            "               p50 by quarter of the window (sent in it): {} ms",
            quarters.join(" / ")
        );
        let rate = self.events_per_second();
        for (destination, lag) in &self.lags {
            println!(
                "log lag       {destination:<13} mean {:>8} max {:>8} events (≈ {:>5.0} / {:>5.0} ms of ingest), mean by quarter {}; kept up: {}",
                thousands(lag.mean() as u64),
                thousands(lag.max()),
                lag.mean() / rate.max(1.0) * 1000.0,
                lag.max() as f64 / rate.max(1.0) * 1000.0,
                (0..4)
                    .map(|quarter| thousands(lag.quarter_mean(quarter) as u64))
                    .collect::<Vec<_>>()
                    .join(" / "),
                yes_no(lag.kept_up(rate)),
            );
        }
        match self.drain {
            Some(drain) => println!(
                "drain         every destination caught up {:.2} s after the load stopped",
                drain.as_secs_f64()
            ),
            None => println!(
                "drain         NOT caught up {} s after the load stopped",
                DRAIN_TIMEOUT.as_secs()
            ),
        }
        for mismatch in &self.delivery_mismatch {
            println!("DELIVERY MISMATCH {mismatch}");
        }
        println!("kept up       {}", yes_no(self.kept_up()));
        println!(
            "memory        server VmHWM {:.1} MiB (VmRSS at the end {:.1} MiB), {} threads",
            self.server_hwm_kib as f64 / 1024.0,
            self.server_rss_kib as f64 / 1024.0,
            self.server_threads
        );
        println!(
            "CPU (cores)   server {:.2}, load generator {:.2}, observer {:.2}, other processes {:.2} (per event: server {:.1} µs, load generator {:.1} µs)",
            self.server_cpu / window,
            self.load_cpu / window,
            self.observer_cpu / window,
            self.other_cpu / window,
            self.server_cpu / self.events.max(1) as f64 * 1e6,
            self.load_cpu / self.events.max(1) as f64 * 1e6,
        );
    }

    fn markdown_row(&self, case: &Case) -> String {
        let window = self.window.as_secs_f64();
        let max_lag = self.lags.values().map(LagSeries::max).max().unwrap_or(0);
        format!(
            "| {} | {} | **{}** | {} | {:.1} / **{:.1}** / {:.1} | {} | {} | **{:.0}** / {:.0} | {} | {} | {} | {:.1} MiB | {:.2} / {:.2} / {:.2} |",
            case.batch,
            case.connections,
            thousands(self.events_per_second() as u64),
            thousands(self.requests_per_second() as u64),
            ms(self.latency.value_at_quantile(0.5)),
            ms(self.latency.value_at_quantile(0.99)),
            ms(self.latency.max()),
            self.shed(),
            self.errors(),
            ms(self.end_to_end.value_at_quantile(0.5)),
            ms(self.end_to_end.value_at_quantile(0.99)),
            thousands(max_lag),
            self.drain.map_or_else(
                || "no".to_owned(),
                |drain| format!("{:.2} s", drain.as_secs_f64())
            ),
            yes_no(self.kept_up()),
            self.server_hwm_kib as f64 / 1024.0,
            self.server_cpu / window,
            self.load_cpu / window,
            self.other_cpu / window,
        )
    }
}

fn run_case(binary: &Path, case: &Case) -> CaseResult {
    let server = Server::start(binary, case);
    let routes = case.pipeline.routes();
    let pid = server.pid();
    let start = Instant::now() + Duration::from_millis(200);
    let window_start = start + case.warmup;
    let window_end = window_start + case.duration;
    let schedule = Schedule {
        address: server.address,
        batch: case.batch,
        window_start,
        window_end,
        marker_interval: case
            .pipeline
            .has_warehouse()
            .then_some(case.marker_interval),
        next_marker: AtomicU64::new(0),
        base: window_start,
        start,
        request_interval: case.rate.map(|rate| {
            Duration::from_secs_f64(case.connections as f64 * case.batch as f64 / rate)
        }),
        connections: case.connections as f64,
    };

    // The observer: markers in the warehouse, and /metrics.
    let (marker_sender, markers) = mpsc::channel::<(String, Instant)>();
    let stop_observer = Arc::new(AtomicBool::new(false));
    let observer = {
        let stop = stop_observer.clone();
        let warehouse = server.warehouse();
        let address = server.address;
        std::thread::Builder::new()
            .name("observer".into())
            .spawn(move || {
                observe(
                    address,
                    &warehouse,
                    &markers,
                    window_start,
                    window_end,
                    &stop,
                )
            })
            .expect("spawn the observer")
    };

    // CPU at the window's edges: the server and the machine are sampled by a helper thread.
    let sampler = {
        std::thread::spawn(move || {
            sleep_until(window_start);
            let server_start = cpu_seconds(&format!("/proc/{pid}/stat"));
            let machine_start = machine_busy_seconds();
            let process_start = cpu_seconds("/proc/self/stat");
            sleep_until(window_end);
            let server = cpu_seconds(&format!("/proc/{pid}/stat")) - server_start;
            let machine = machine_busy_seconds() - machine_start;
            let process = cpu_seconds("/proc/self/stat") - process_start;
            (server, machine, process)
        })
    };

    // The load: `threads` threads, each a current-thread runtime with its share of connections.
    let schedule = Arc::new(schedule);
    let threads: Vec<_> = (0..case.threads)
        .map(|thread| {
            let schedule = schedule.clone();
            let markers = marker_sender.clone();
            let connections: Vec<u16> = (0..case.connections)
                .filter(|connection| connection % case.threads == thread)
                .map(|connection| u16::try_from(connection).expect("under 65,536 connections"))
                .collect();
            std::thread::Builder::new()
                .name(format!("load-{thread}"))
                .spawn(move || load_thread(&schedule, &connections, &markers, start))
                .expect("spawn a load thread")
        })
        .collect();
    drop(marker_sender);
    let mut load = LoadStats::new();
    let mut load_cpu = 0.0;
    for thread in threads {
        let (stats, cpu) = thread.join().expect("a load thread");
        load.merge(stats);
        load_cpu += cpu;
    }
    let (server_cpu, machine_cpu, process_cpu) = sampler.join().expect("the CPU sampler");

    // Drain: wait until every destination has delivered everything accepted.
    let expected = load.routed(routes);
    let stopped = Instant::now();
    let mut drain = None;
    let mut delivery_mismatch = Vec::new();
    while stopped.elapsed() < DRAIN_TIMEOUT {
        if let Some(metrics) = scrape(server.address) {
            let lag_zero = routes
                .iter()
                .all(|(destination, _)| metrics.lag(destination) == Some(0));
            let delivered: Vec<(String, u64, u64)> = routes
                .iter()
                .map(|(destination, _)| {
                    (
                        (*destination).to_owned(),
                        metrics.delivered(destination).unwrap_or(0),
                        expected.get(*destination).copied().unwrap_or(0),
                    )
                })
                .collect();
            if lag_zero
                && delivered
                    .iter()
                    .all(|(_, delivered, expected)| delivered >= expected)
            {
                drain = Some(stopped.elapsed());
                if metrics.accepted != load.accepted_all {
                    delivery_mismatch.push(format!(
                        "the server counted {} accepted events, the load generator {}",
                        metrics.accepted, load.accepted_all
                    ));
                }
                for (destination, delivered, expected) in delivered {
                    if delivered != expected {
                        delivery_mismatch.push(format!(
                            "{destination}: delivered {delivered}, routed {expected}"
                        ));
                    }
                }
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if drain.is_some() && case.pipeline.has_warehouse() {
        let rows =
            Connection::open_with_flags(server.warehouse(), OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|connection| {
                    connection.query_row("SELECT COUNT(*) FROM events", [], |row| {
                        row.get::<_, i64>(0)
                    })
                })
                .unwrap_or(-1);
        if u64::try_from(rows).ok() != Some(load.accepted_all) {
            delivery_mismatch.push(format!(
                "the warehouse holds {rows} rows, {} events were accepted",
                load.accepted_all
            ));
        }
    }
    stop_observer.store(true, Ordering::Relaxed);
    let observed = observer.join().expect("the observer");
    let server_hwm_kib = status_kib(pid, "VmHWM:");
    let server_rss_kib = status_kib(pid, "VmRSS:");
    let server_threads = status_kib(pid, "Threads:");
    server.stop();

    let window = case.duration;
    CaseResult {
        window,
        latency: load.latency,
        shed_latency: load.shed_latency,
        end_to_end: observed.end_to_end,
        end_to_end_series: observed.end_to_end_series,
        markers_unseen: observed.unseen,
        requests: load.requests,
        events: load.events,
        body_bytes: load.body_bytes,
        statuses: load.statuses,
        short_accepted: load.short_accepted,
        io_errors: load.io_errors,
        lags: observed.lags,
        drain,
        delivery_mismatch,
        server_hwm_kib,
        server_rss_kib,
        server_cpu,
        load_cpu,
        observer_cpu: observed.cpu,
        other_cpu: (machine_cpu - server_cpu - process_cpu).max(0.0),
        server_threads,
    }
}

fn sleep_until(instant: Instant) {
    let now = Instant::now();
    if instant > now {
        std::thread::sleep(instant - now);
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator

/// What every load thread shares.
struct Schedule {
    address: SocketAddr,
    batch: usize,
    window_start: Instant,
    window_end: Instant,
    /// `None`: no markers (no warehouse).
    marker_interval: Option<Duration>,
    /// When the load starts.
    start: Instant,
    /// `--rate`: each connection sends one request per interval (open loop); `None`: each sends
    /// its next request as soon as the last is answered (closed loop).
    request_interval: Option<Duration>,
    /// How many connections (to stagger their first requests).
    connections: f64,
    /// Nanoseconds after `base` when the next marker is due.
    next_marker: AtomicU64,
    base: Instant,
}

impl Schedule {
    /// Whether a request sent at `now` should carry a marker (at most one per interval).
    fn take_marker(&self, now: Instant) -> bool {
        let Some(interval) = self.marker_interval else {
            return false;
        };
        if now < self.window_start || now >= self.window_end {
            return false;
        }
        let elapsed = u64::try_from(now.duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        let due = self.next_marker.load(Ordering::Relaxed);
        if elapsed < due {
            return false;
        }
        let interval = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
        self.next_marker
            .compare_exchange(
                due,
                elapsed + interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

/// What the load threads counted.
struct LoadStats {
    /// Requests sent inside the window.
    requests: u64,
    /// Events accepted in `200` answers to requests sent inside the window.
    events: u64,
    /// Bytes of request bodies sent inside the window.
    body_bytes: u64,
    /// Events accepted over the whole run (warm-up included), for the delivery check.
    accepted_all: u64,
    /// Accepted events per name over the whole run.
    names: [u64; NAMES.len()],
    latency: Histogram<u64>,
    /// Latency of the requests answered `503` (shed).
    shed_latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    short_accepted: u64,
    io_errors: u64,
}

impl LoadStats {
    fn new() -> Self {
        Self {
            requests: 0,
            events: 0,
            body_bytes: 0,
            accepted_all: 0,
            names: [0; NAMES.len()],
            latency: histogram(),
            shed_latency: histogram(),
            statuses: BTreeMap::new(),
            short_accepted: 0,
            io_errors: 0,
        }
    }

    fn merge(&mut self, other: Self) {
        self.requests += other.requests;
        self.events += other.events;
        self.body_bytes += other.body_bytes;
        self.accepted_all += other.accepted_all;
        for (mine, theirs) in self.names.iter_mut().zip(other.names) {
            *mine += theirs;
        }
        self.latency.add(&other.latency).expect("same bounds");
        self.shed_latency
            .add(&other.shed_latency)
            .expect("same bounds");
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.short_accepted += other.short_accepted;
        self.io_errors += other.io_errors;
    }

    /// Events routed to each destination.
    fn routed(
        &self,
        routes: &[(&'static str, Option<&'static [&'static str]>)],
    ) -> BTreeMap<&'static str, u64> {
        routes
            .iter()
            .map(|(destination, names)| {
                let count = NAMES
                    .iter()
                    .zip(self.names)
                    .filter(|(name, _)| names.is_none_or(|names| names.contains(name)))
                    .map(|(_, count)| count)
                    .sum();
                (*destination, count)
            })
            .collect()
    }
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 10 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Runs this thread's connections until the window ends; returns their counts and this thread's
/// CPU time over the window.
fn load_thread(
    schedule: &Arc<Schedule>,
    connections: &[u16],
    markers: &mpsc::Sender<(String, Instant)>,
    start: Instant,
) -> (LoadStats, f64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        let cpu = {
            let schedule = schedule.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(schedule.window_start.into()).await;
                let start = cpu_seconds("/proc/thread-self/stat");
                tokio::time::sleep_until(schedule.window_end.into()).await;
                cpu_seconds("/proc/thread-self/stat") - start
            })
        };
        tokio::time::sleep_until(start.into()).await;
        let tasks: Vec<_> = connections
            .iter()
            .map(|&connection| {
                let schedule = schedule.clone();
                let markers = markers.clone();
                tokio::spawn(async move { drive(connection, &schedule, &markers).await })
            })
            .collect();
        let mut stats = LoadStats::new();
        for task in tasks {
            stats.merge(task.await.expect("a connection task"));
        }
        (stats, cpu.await.expect("the CPU task"))
    })
}

#[derive(Deserialize)]
struct AcceptedBody {
    accepted: usize,
    rejected: Vec<serde_json::Value>,
}

/// How long after the window a request may still be answered.
const EXCHANGE_GRACE: Duration = Duration::from_secs(5);

/// One connection's closed loop.
async fn drive(
    connection: u16,
    schedule: &Schedule,
    markers: &mpsc::Sender<(String, Instant)>,
) -> LoadStats {
    let mut stats = LoadStats::new();
    let mut stream: Option<TcpStream> = None;
    let mut generator = EventGenerator::new(connection);
    let mut request = Vec::with_capacity(64 * 1024);
    let mut response = Vec::with_capacity(4096);
    let mut next_send: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= schedule.window_end {
            break;
        }
        if let Some(interval) = schedule.request_interval {
            // Open loop: one request per interval; a connection that falls behind does not
            // catch up in a burst (the achieved rate is reported).
            let due = *next_send.get_or_insert_with(|| {
                schedule.start + interval.mul_f64(f64::from(connection) / schedule.connections)
            });
            if due > now {
                tokio::time::sleep_until(due.into()).await;
                continue;
            }
            next_send = Some((due + interval).max(now));
        }
        let in_window = now >= schedule.window_start;
        if stream.is_none() {
            match TcpStream::connect(schedule.address).await {
                Ok(connected) => {
                    connected.set_nodelay(true).expect("TCP_NODELAY");
                    stream = Some(connected);
                }
                Err(_) => {
                    stats.io_errors += u64::from(in_window);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(connected) = stream.as_mut() else {
            continue;
        };
        let first_id = generator.request(&mut request, schedule.address, schedule.batch);
        let sent = Instant::now();
        if schedule.take_marker(sent) {
            let _ = markers.send((first_id, sent));
        }
        // A connection left in the listen queue (the server at `max_connections`) may never be
        // answered before the window ends: it gives up a few seconds after, as an I/O error.
        let answer = tokio::time::timeout_at(
            (schedule.window_end + EXCHANGE_GRACE).into(),
            exchange(connected, &request, &mut response),
        )
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
        let elapsed = sent.elapsed();
        match answer {
            Ok(answer) => {
                let body = &response[answer.body.clone()];
                let accepted = if answer.status == 200 {
                    serde_json::from_slice::<AcceptedBody>(body)
                        .ok()
                        .filter(|body| body.rejected.is_empty())
                        .map(|body| body.accepted)
                } else {
                    None
                };
                if accepted == Some(schedule.batch) {
                    stats.accepted_all += schedule.batch as u64;
                    for (count, sent) in stats.names.iter_mut().zip(generator.last_names) {
                        *count += sent;
                    }
                }
                if in_window {
                    stats.requests += 1;
                    stats.body_bytes += generator.body.len() as u64;
                    *stats.statuses.entry(answer.status).or_default() += 1;
                    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                    if answer.status == 503 {
                        stats.shed_latency.saturating_record(micros);
                    } else {
                        stats.latency.saturating_record(micros);
                    }
                    match accepted {
                        Some(accepted) if accepted == schedule.batch => {
                            stats.events += accepted as u64;
                        }
                        _ if answer.status == 200 => stats.short_accepted += 1,
                        _ => {}
                    }
                }
                if answer.close {
                    stream = None;
                }
            }
            Err(_) => {
                if in_window {
                    stats.requests += 1;
                    stats.io_errors += 1;
                }
                stream = None;
            }
        }
    }
    stats
}

struct Answer {
    status: u16,
    body: std::ops::Range<usize>,
    close: bool,
}

/// Writes one request and reads its answer (`Content-Length` bodies only: hyper sends those for
/// the ingest's answers).
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buffer: &mut Vec<u8>,
) -> std::io::Result<Answer> {
    let invalid = |message: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
    stream.write_all(request).await?;
    buffer.clear();
    loop {
        if buffer.capacity() - buffer.len() < 1024 {
            buffer.reserve(4096);
        }
        if stream.read_buf(buffer).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let Some(head_end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buffer[..head_end]).map_err(|_| invalid("head"))?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("status line"))?;
        let mut length = None;
        let mut close = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.trim().eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(invalid("chunked answers are not supported"));
            }
        }
        let length = length.ok_or_else(|| invalid("no Content-Length"))?;
        let total = head_end + 4 + length;
        while buffer.len() < total {
            buffer.reserve(total - buffer.len());
            if stream.read_buf(buffer).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        return Ok(Answer {
            status,
            body: head_end + 4..total,
            close,
        });
    }
}

/// Builds SDK-shaped requests with new ids.
struct EventGenerator {
    connection: u16,
    sequence: u64,
    body: String,
    /// Events per name in the last request built.
    last_names: [u64; NAMES.len()],
}

impl EventGenerator {
    fn new(connection: u16) -> Self {
        Self {
            connection,
            sequence: 0,
            body: String::with_capacity(64 * 1024),
            last_names: [0; NAMES.len()],
        }
    }

    /// Writes a whole HTTP request into `request`; returns the id of its first event.
    fn request(&mut self, request: &mut Vec<u8>, address: SocketAddr, batch: usize) -> String {
        let now = OffsetDateTime::now_utc();
        let timestamp = now.format(&Rfc3339).expect("RFC 3339");
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        self.body.clear();
        self.last_names = [0; NAMES.len()];
        let mut first_id = String::new();
        let _ = write!(self.body, r#"{{"sent_at":"{timestamp}","batch":["#);
        for index in 0..batch {
            self.sequence += 1;
            let sequence = self.sequence;
            // UUIDv7 layout: 48 bits of Unix milliseconds, version 7, 12 bits of connection,
            // variant 0b10, 62 bits of sequence: unique per run, time-ordered.
            let id = uuid::Uuid::from_u128(
                (u128::from(millis) << 80)
                    | (0x7 << 76)
                    | (u128::from(self.connection & 0x0fff) << 64)
                    | (0b10 << 62)
                    | u128::from(sequence & ((1 << 62) - 1)),
            );
            let name_index = (sequence % NAMES.len() as u64) as usize;
            self.last_names[name_index] += 1;
            if index > 0 {
                self.body.push(',');
            }
            let value = sequence % 1000;
            let _ = write!(
                self.body,
                r#"{{"id":"{id}","name":"{name}","data":{{"path":"/products/{value}","referrer":"https://example.com/search?q=item-{value}","value":{value}}},"timestamp":"{timestamp}","anonymous_id":"anon-{anonymous}","source":"server","context":{{"library":{{"name":"tributary-load-bench","version":"0.1.0"}}}}}}"#,
                name = NAMES[name_index],
                anonymous = (sequence * 7919 + u64::from(self.connection) * 104_729) % 10_000,
            );
            if index == 0 {
                first_id = id.to_string();
            }
        }
        self.body.push_str("]}");
        request.clear();
        let _ = write!(
            request,
            "POST /v1/batch HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {WRITE_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.body.len()
        );
        request.extend_from_slice(self.body.as_bytes());
        first_id
    }
}

// ---------------------------------------------------------------------------------------------
// The observer: markers in the warehouse, and /metrics

/// One destination's `tributary_log_lag_events` samples over the window.
#[derive(Default)]
struct LagSeries {
    samples: Vec<u64>,
}

impl LagSeries {
    fn max(&self) -> u64 {
        self.samples.iter().copied().max().unwrap_or(0)
    }

    fn mean(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        self.samples.iter().sum::<u64>() as f64 / self.samples.len() as f64
    }

    /// The mean of quarter `quarter` (0–3) of the samples.
    fn quarter_mean(&self, quarter: usize) -> f64 {
        let length = self.samples.len();
        let part = &self.samples[length * quarter / 4..length * (quarter + 1) / 4];
        if part.is_empty() {
            return 0.0;
        }
        part.iter().sum::<u64>() as f64 / part.len() as f64
    }

    /// The lag stayed under one second of ingest at `rate` events/s and did not grow through
    /// the window (the last quarter's mean is within 1.5× the second quarter's plus half a
    /// second of ingest): a worker that keeps up hovers around its commit interval's worth (it
    /// commits every 200 ms while busy); one falling behind grows without bound.
    fn kept_up(&self, rate: f64) -> bool {
        self.max() as f64 <= rate && self.quarter_mean(3) <= 1.5 * self.quarter_mean(1) + 0.5 * rate
    }
}

struct Observed {
    end_to_end: Histogram<u64>,
    /// (sent, seconds after the window's start; POST → warehouse, ms), in the order seen.
    end_to_end_series: Vec<(f64, f64)>,
    unseen: usize,
    lags: BTreeMap<String, LagSeries>,
    cpu: f64,
}

fn observe(
    address: SocketAddr,
    warehouse: &Path,
    markers: &mpsc::Receiver<(String, Instant)>,
    window_start: Instant,
    window_end: Instant,
    stop: &AtomicBool,
) -> Observed {
    let mut end_to_end = histogram();
    let mut end_to_end_series = Vec::new();
    // (id, sent, when to look next)
    let mut pending: Vec<(String, Instant, Instant)> = Vec::new();
    let mut lags: BTreeMap<String, LagSeries> = BTreeMap::new();
    let mut connection: Option<Connection> = None;
    let mut next_scrape = window_start;
    let mut cpu_start = None;
    let mut cpu = 0.0;
    loop {
        let now = Instant::now();
        if cpu_start.is_none() && now >= window_start {
            cpu_start = Some(cpu_seconds("/proc/thread-self/stat"));
        }
        if let Some(start) = cpu_start {
            if now >= window_end && cpu == 0.0 {
                cpu = cpu_seconds("/proc/thread-self/stat") - start;
            }
        }
        // After the drain everything was delivered: one last look at every marker, then stop.
        let stopping = stop.load(Ordering::Relaxed);
        while let Ok((id, sent)) = markers.try_recv() {
            pending.push((id, sent, sent));
        }
        if stopping {
            for (_, _, next_look) in &mut pending {
                *next_look = now;
            }
        }
        if connection.is_none() && warehouse.exists() {
            connection = Connection::open_with_flags(
                warehouse,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ok();
        }
        if let (Some(connection), false) = (&connection, pending.is_empty()) {
            let mut statement = connection
                .prepare_cached("SELECT 1 FROM events WHERE id = ?1")
                .expect("prepare the marker query");
            let seen_at = Instant::now();
            pending.retain_mut(|(id, sent, next_look)| {
                if *next_look > seen_at {
                    return true;
                }
                let found = statement
                    .query_row([id.as_str()], |_| Ok(()))
                    .optional()
                    .ok()
                    .flatten()
                    .is_some();
                let age = seen_at.duration_since(*sent);
                if found {
                    end_to_end
                        .saturating_record(u64::try_from(age.as_micros()).unwrap_or(u64::MAX));
                    end_to_end_series.push((
                        sent.saturating_duration_since(window_start).as_secs_f64(),
                        age.as_secs_f64() * 1000.0,
                    ));
                } else {
                    // Look again after 2% of the marker's age (at least 1 ms): the error stays
                    // under 2%, and hundreds of slow markers cost few queries.
                    *next_look = seen_at + (age / 50).max(Duration::from_millis(1));
                }
                !found
            });
        }
        if now >= next_scrape && now < window_end {
            if let Some(metrics) = scrape(address) {
                for (destination, lag) in metrics.lags {
                    lags.entry(destination).or_default().samples.push(lag);
                }
            }
            next_scrape += SCRAPE_INTERVAL;
        }
        if stopping {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Observed {
        end_to_end,
        end_to_end_series,
        unseen: pending.len(),
        lags,
        cpu,
    }
}

/// What the bench reads from `/metrics`.
struct Scraped {
    accepted: u64,
    lags: BTreeMap<String, u64>,
    delivered: BTreeMap<String, u64>,
}

impl Scraped {
    fn lag(&self, destination: &str) -> Option<u64> {
        self.lags.get(destination).copied()
    }

    fn delivered(&self, destination: &str) -> Option<u64> {
        self.delivered.get(destination).copied()
    }
}

/// `GET /metrics` on a new connection (blocking; `Connection: close`).
fn scrape(address: SocketAddr) -> Option<Scraped> {
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    let mut scraped = Scraped {
        accepted: 0,
        lags: BTreeMap::new(),
        delivered: BTreeMap::new(),
    };
    for line in body.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let value = value as u64;
        let destination = || {
            series
                .split_once("destination=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(name, _)| name.to_owned())
        };
        if series == "tributary_events_accepted_total" {
            scraped.accepted = value;
        } else if series.starts_with("tributary_log_lag_events{") {
            scraped.lags.insert(destination()?, value);
        } else if series.starts_with("tributary_destination_delivered_total{") {
            scraped.delivered.insert(destination()?, value);
        }
    }
    Some(scraped)
}

// ---------------------------------------------------------------------------------------------
// Formatting

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}
