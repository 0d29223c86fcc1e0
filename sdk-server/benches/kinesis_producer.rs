//! Kinesis mode on a fixed workload, against the Kinesis test double (a separate process: this
//! binary re-run with `--double`) that enforces Kinesis's per-shard limits (1000 records/s and
//! 1 MiB/s) and counts requests:
//!
//! 1. CPU per user record (this process's CPU time, all threads, over the records put);
//! 2. aggregation efficiency: 200-byte events put per shard-second at saturation;
//!
//! for the producer with aggregation, without aggregation, and a naive loop of one-record
//! `PutRecords` calls (16 at a time, retrying a throttled record at once), in the same run.
//!
//! `cargo bench -p tributary-server --features kinesis --bench kinesis_producer`
//! (`-- --seconds N --shards N` change the window, default 10 s, and the shards, default 4;
//! `--only on|off|naive` runs one of the three).

#![allow(clippy::print_stdout, missing_docs, unreachable_pub)]

// `--features kinesis,bench-mimalloc`: the whole process (producer and double) on mimalloc.
#[cfg(feature = "bench-mimalloc")]
#[global_allocator]
static GLOBAL_ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/kinesis_common/double.rs"]
mod double;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::json;
use tributary_server::Event;
use tributary_server::kinesis::{Config, Producer};

const WARM_UP: Duration = Duration::from_secs(2);

fn thread_cpu_nanos() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A 200-byte event JSON (the envelope `send` builds for it is measured at start).
fn event(index: u64) -> Event {
    Event::new("page_view")
        .user_id(format!("user-{}", index % 1000))
        .id(format!("0192f0c4-1b2a-7c3d-8e4f-{index:012}"))
        .timestamp(time::OffsetDateTime::UNIX_EPOCH)
        .data(json!({"path": "/pricing", "ref": "newsletter"}))
        .context("library", json!("b"))
}

struct Figures {
    name: &'static str,
    put: u64,
    seconds: f64,
    cpu: Duration,
    /// Of `cpu`, the application thread's (building events and calling `send`).
    app_cpu: Option<Duration>,
    requests: u64,
}

impl Figures {
    fn print(&self, shards: u64) {
        let per_shard_second = self.put as f64 / self.seconds / shards as f64;
        let per_event = |cpu: Duration| cpu.as_secs_f64() * 1e6 / self.put.max(1) as f64;
        let split = match self.app_cpu {
            Some(app) => format!(
                " (application thread {:.2}, producer {:.2})",
                per_event(app),
                per_event(self.cpu.saturating_sub(app))
            ),
            None => String::new(),
        };
        println!(
            "{:<26} {:>6.0} events/shard-s {:>7.1} events/request {:>7} requests {:>7.2} µs CPU/event{split}",
            self.name,
            per_shard_second,
            self.put as f64 / self.requests.max(1) as f64,
            self.requests,
            per_event(self.cpu),
        );
    }
}

async fn run_producer(name: &'static str, url: &str, aggregation: bool, seconds: u64) -> Figures {
    let config = double::sdk_config(url).await;
    let producer = Producer::builder(format!("bench-{name}"))
        .sdk_config(&config)
        .config(Config {
            aggregation,
            aggregation_max_bytes: std::env::var("BENCH_AGGREGATE_BYTES")
                .ok()
                .and_then(|value| value.parse().ok())
                .unwrap_or(Config::default().aggregation_max_bytes),
            ..Config::default()
        })
        .build()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The application: one OS thread of its own building events and calling `send`, so that
    // its CPU time (building the event included) can be told from the producer's.
    let app_cpu = Arc::new(AtomicU64::new(0));
    let sender = {
        let producer = producer.clone();
        let stop = stop.clone();
        let app_cpu = app_cpu.clone();
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("application".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut index = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // The handle is dropped: the metrics count the outcome.
                        let _ = producer.send(event(index)).await;
                        index += 1;
                        if index % 256 == 0 {
                            app_cpu.store(thread_cpu_nanos(), Ordering::Relaxed);
                        }
                    }
                });
            })
            .unwrap()
    };
    tokio::time::sleep(WARM_UP).await;
    let (put0, requests0, cpu0, app0, at0) = {
        let metrics = producer.metrics();
        (
            metrics.user_records_put,
            metrics.put_records_requests,
            cpu_time(),
            app_cpu.load(Ordering::Relaxed),
            Instant::now(),
        )
    };
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let metrics = producer.metrics();
    let figures = Figures {
        name,
        put: metrics.user_records_put - put0,
        seconds: at0.elapsed().as_secs_f64(),
        cpu: cpu_time() - cpu0,
        app_cpu: Some(Duration::from_nanos(
            app_cpu.load(Ordering::Relaxed).saturating_sub(app0),
        )),
        requests: metrics.put_records_requests - requests0,
    };
    println!(
        "  ({name}: errors {:?}, retries per record {:.3})",
        metrics.errors_by_code,
        metrics.retries_per_record.mean()
    );
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    producer.shutdown(Duration::from_secs(5)).await;
    figures
}

/// One `PutRecords` per event, 16 loops at once, a throttled event retried at once.
async fn run_naive(url: &str, seconds: u64) -> Figures {
    let config = double::sdk_config(url).await;
    let client = aws_sdk_kinesis::Client::new(&config);
    let put = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for worker in 0..16u64 {
        let (client, put, requests, stop) =
            (client.clone(), put.clone(), requests.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            let mut index = worker;
            while !stop.load(Ordering::Relaxed) {
                let event = event(index);
                let key = format!("user-{}", index % 1000);
                let data = serde_json::to_vec(&json!({
                    "id": format!("0192f0c4-1b2a-7c3d-8e4f-{index:012}"),
                    "name": "page_view", "user_id": key, "data": {"path": "/pricing", "ref": "newsletter"},
                    "timestamp": "1970-01-01T00:00:00Z", "source": "server", "context": {"library": "b"}
                }))
                .unwrap();
                drop(event);
                loop {
                    let entry = PutRecordsRequestEntry::builder()
                        .data(Blob::new(data.clone()))
                        .partition_key(&key)
                        .build()
                        .unwrap();
                    requests.fetch_add(1, Ordering::Relaxed);
                    let answer = client
                        .put_records()
                        .stream_name("bench-naive")
                        .records(entry)
                        .send()
                        .await;
                    if answer.is_ok_and(|output| output.failed_record_count() == Some(0)) {
                        put.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                index += 16;
            }
        }));
    }
    tokio::time::sleep(WARM_UP).await;
    let (put0, requests0, cpu0, at0) = (
        put.load(Ordering::Relaxed),
        requests.load(Ordering::Relaxed),
        cpu_time(),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let figures = Figures {
        name: "naive PutRecords loop",
        put: put.load(Ordering::Relaxed) - put0,
        seconds: at0.elapsed().as_secs_f64(),
        cpu: cpu_time() - cpu0,
        app_cpu: None,
        requests: requests.load(Ordering::Relaxed) - requests0,
    };
    stop.store(true, Ordering::Relaxed);
    for handle in loops {
        handle.await.unwrap();
    }
    figures
}

/// `--double SHARDS`: serve the test double until stdin closes.
fn serve_double(shards: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("double")
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let double = double::KinesisDouble::start(shards).await;
        double.enforce_limits(true);
        double.keep_records(false);
        println!("{}", double.url);
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin()
                .read_line(&mut line)
                .is_ok_and(|read| read > 0)
            {}
        })
        .await
        .unwrap();
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|at| args.get(at + 1))
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let shards = value("--shards", 4);
    if args.iter().any(|arg| arg == "--double") {
        serve_double(shards as usize);
        return;
    }
    if args.iter().any(|arg| arg == "--list") {
        return;
    }
    let seconds = value("--seconds", 10);
    // What the application pays to build (and drop) the events alone, outside the producer.
    let build_cost = {
        let count = 200_000u64;
        let start = thread_cpu_nanos();
        for index in 0..count {
            std::hint::black_box(event(index));
        }
        (thread_cpu_nanos() - start) as f64 / count as f64 / 1e3
    };
    let envelope_len = {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let double = double::KinesisDouble::start(1).await;
            let producer = Producer::builder("probe")
                .sdk_config(&double::sdk_config(&double.url).await)
                .build()
                .await
                .unwrap();
            producer.send(event(123_456)).await.unwrap();
            producer.flush().await.unwrap();
            double.stored()[0].data.len()
        })
    };

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--double", "--shards", &shards.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_owned();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("producer")
        .enable_all()
        .build()
        .unwrap();
    println!(
        "allocator: {}",
        if cfg!(feature = "bench-mimalloc") {
            "mimalloc"
        } else {
            "system"
        }
    );
    println!(
        "{shards} shards, limits 1000 records/s and 1 MiB/s each, events of {envelope_len} bytes, \
         {seconds} s after a {} s warm-up, the double in another process",
        WARM_UP.as_secs()
    );
    let only = args
        .iter()
        .position(|arg| arg == "--only")
        .and_then(|at| args.get(at + 1))
        .cloned();
    let wanted = |name: &str| only.as_deref().is_none_or(|only| only == name);
    let results = runtime.block_on(async {
        let mut results = Vec::new();
        if wanted("on") {
            results.push(run_producer("producer, aggregation on", &url, true, seconds).await);
        }
        if wanted("off") {
            results.push(run_producer("producer, aggregation off", &url, false, seconds).await);
        }
        if wanted("naive") {
            results.push(run_naive(&url, seconds).await);
        }
        results
    });
    for figures in &results {
        figures.print(shards);
    }
    println!(
        "building one event (Event::new, ids, data) costs the application {build_cost:.2} µs of \
         the above, outside the producer"
    );
    drop(child.stdin.take());
    let _ = child.wait();
}
