//! HTTP mode against a loopback sink, beside `posthog-rs` 0.30 and `segment` 0.2.6 (issue 2).
//!
//! Every SDK sends to its own sink on 127.0.0.1: an axum server on its own thread and
//! single-threaded runtime that answers the path the SDK posts to (`/v1/batch` for Tributary and
//! segment, `/batch/` for posthog-rs) with a `200`, after counting the events of each body (the
//! length of its `batch` array). Every SDK gets the same workload: event `page_view`, user
//! `user-<i % 1000>`, one property `square = i²`. The application thread is this (the main)
//! thread; the SDKs' background work runs on a 2-worker tokio runtime (Tributary's driver and
//! uploads, segment's connections) or on threads of their own (posthog-rs).
//!
//! - `app_thread_per_track`: the time the application thread spends in each track call (building
//!   the event included), in batches of 1,000 calls; between batches, outside the timed region,
//!   queued SDKs are flushed so that no queue ever overflows (the bench checks that nothing was
//!   lost). segment has no background sender: its `AutoBatcher::push` sends a full ~500 KB batch
//!   inline, so its timed region includes those sends and the final flush. The thread's CPU time
//!   over the same timed regions is printed beside criterion's wall-clock figures.
//!   `tributary/track_prebuilt_event` times `track` alone, the events built beforehand, to show
//!   how the time splits between building an event and handing it over.
//! - `burst_100k_end_to_end`: 100,000 events as fast as the application can hand them over, timed
//!   from the first call until the SDK's flush returns (all delivered events counted by the
//!   sink). Printed per case: events the sink counted, events lost (and whether the SDK counted
//!   them), delivered events/s, the application thread's CPU per event and its longest call.
//!   Criterion's `elem/s` counts the 100,000 events offered, delivered or not. One Tributary case
//!   keeps its queue in a SQLite file (`Durability::ProcessCrash`): every event is persisted
//!   before it is sent and deleted once delivered.
//!
//! Run: `cargo bench -p tributary-server --features bench-peers --bench http_client`. Without
//! `bench-peers` (as CI builds it) only the Tributary cases exist. With `bench-mimalloc` as well,
//! every SDK runs with mimalloc as the global allocator instead of the system's; the group names
//! say which allocator ran (`…/system_allocator`, `…/mimalloc`).

#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use criterion::{criterion_group, criterion_main};
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::runtime::Runtime;
use tributary_server::{Client, Event, Policy};

#[cfg(feature = "bench-mimalloc")]
#[global_allocator]
static GLOBAL_ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Which global allocator this run uses, for the group names.
const ALLOCATOR: &str = if cfg!(feature = "bench-mimalloc") {
    "mimalloc"
} else {
    "system_allocator"
};

/// Events per timed batch of calls in `app_thread_per_track`, far below every queue's capacity.
const CHUNK: u64 = 1_000;
/// Events per burst in `burst_100k_end_to_end`.
const BURST: u64 = 100_000;
const WRITE_KEY: &str = "bench-write-key";

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

fn user(index: u64) -> String {
    format!("user-{}", index % 1_000)
}

fn square(index: u64) -> u64 {
    index.wrapping_mul(index)
}

fn tributary_event(index: u64) -> Event {
    Event::new("page_view")
        .user_id(user(index))
        .property("square", square(index))
}

// ---------------------------------------------------------------------------------------------
// The loopback sink
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct SinkCounts {
    events: AtomicU64,
    unreadable: AtomicU64,
}

/// An ingest on 127.0.0.1 that counts the events it receives and accepts them all.
struct Sink {
    url: String,
    counts: Arc<SinkCounts>,
}

/// Any SDK's batch body: an object with a `batch` array (other fields are skipped).
#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<IgnoredAny>,
}

impl Sink {
    /// Starts a sink on its own thread and single-threaded runtime; it lives until the process
    /// ends.
    fn start() -> Self {
        let counts = Arc::new(SinkCounts::default());
        let app = Router::new()
            .route("/v1/batch", post(receive))
            .route("/batch/", post(receive))
            .layer(DefaultBodyLimit::max(16 << 20))
            .with_state(counts.clone());
        let (address_sender, address) = std::sync::mpsc::channel::<SocketAddr>();
        std::thread::Builder::new()
            .name("loopback-sink".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the sink's runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind 127.0.0.1");
                    address_sender
                        .send(listener.local_addr().expect("the sink's address"))
                        .expect("the bench waits for the address");
                    axum::serve(listener, app).await.expect("the sink serves");
                });
            })
            .expect("spawn the sink");
        let address = address.recv().expect("the sink started");
        Self {
            url: format!("http://{address}"),
            counts,
        }
    }

    fn events(&self) -> u64 {
        self.counts.events.load(Ordering::SeqCst)
    }

    /// Panics if any body could not be read: the counts would mean nothing.
    fn check_readable(&self) {
        let unreadable = self.counts.unreadable.load(Ordering::SeqCst);
        assert_eq!(unreadable, 0, "the sink could not read {unreadable} bodies");
    }
}

async fn receive(State(counts): State<Arc<SinkCounts>>, body: Bytes) -> Response {
    match serde_json::from_slice::<BatchBody>(&body) {
        Ok(body) => {
            let count = body.batch.len();
            counts.events.fetch_add(count as u64, Ordering::SeqCst);
            (
                [("content-type", "application/json")],
                format!(r#"{{"accepted":{count},"rejected":[]}}"#),
            )
                .into_response()
        }
        Err(error) => {
            counts.unreadable.fetch_add(1, Ordering::SeqCst);
            (StatusCode::BAD_REQUEST, error.to_string()).into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring the application thread
// ---------------------------------------------------------------------------------------------

/// This thread's CPU time so far (`CLOCK_THREAD_CPUTIME_ID`).
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Option<Duration> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

/// Wall-clock and CPU time of the application thread over every timed region of one case.
struct Tally {
    calls: u64,
    wall: Duration,
    /// `None` when the thread's CPU time cannot be read.
    cpu: Option<Duration>,
}

impl Tally {
    fn new() -> Self {
        Self {
            calls: 0,
            wall: Duration::ZERO,
            cpu: thread_cpu_time().map(|_| Duration::ZERO),
        }
    }

    /// Runs `calls` track calls on this thread and returns their wall-clock time.
    fn time(&mut self, calls: u64, work: impl FnOnce()) -> Duration {
        let cpu_before = thread_cpu_time();
        let started = Instant::now();
        work();
        let wall = started.elapsed();
        let cpu = cpu_before
            .zip(thread_cpu_time())
            .map(|(before, after)| after.saturating_sub(before));
        self.calls += calls;
        self.wall += wall;
        self.cpu = self.cpu.zip(cpu).map(|(total, cpu)| total + cpu);
        wall
    }

    fn summary(&self) -> String {
        let per_call = |total: Duration| total.as_secs_f64() * 1e6 / self.calls.max(1) as f64;
        let cpu = self.cpu.map_or_else(
            || "n/a".to_owned(),
            |cpu| format!("{:.3} µs", per_call(cpu)),
        );
        format!(
            "{} calls; wall {:.3} µs/call; thread CPU {cpu}/call",
            self.calls,
            per_call(self.wall)
        )
    }
}

/// Benchmarks `track_calls(prepare(range))` per batch of at most `chunk` calls. Only
/// `track_calls` is timed; `prepare` runs before and `settle` after each batch, outside the timed
/// region.
fn bench_app_thread<Input>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    chunk: u64,
    mut prepare: impl FnMut(Range<u64>) -> Input,
    mut track_calls: impl FnMut(Input),
    mut settle: impl FnMut(),
) -> (Tally, u64) {
    let mut tally = Tally::new();
    let mut next = 0;
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            let mut measured = Duration::ZERO;
            let end = next + iterations;
            while next < end {
                let range = next..end.min(next.saturating_add(chunk));
                next = range.end;
                let calls = range.end - range.start;
                let input = prepare(range);
                measured += tally.time(calls, || track_calls(input));
                settle();
            }
            measured
        });
    });
    (tally, next)
}

/// What one burst did.
struct Burst {
    elapsed: Duration,
    delivered: u64,
    /// Lost events the SDK itself counted (`None`: the SDK keeps no count).
    counted_loss: Option<u64>,
    app_cpu: Option<Duration>,
    longest_call: Duration,
}

/// Benchmarks bursts of [`BURST`] events: `burst(range)` makes the calls, then waits for the
/// SDK's flush, and returns the longest call and the loss the SDK counted.
fn bench_burst(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    sink: &Sink,
    mut burst: impl FnMut(Range<u64>) -> (Duration, Option<u64>),
) -> Vec<Burst> {
    let mut bursts = Vec::new();
    let mut next = 0;
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            let mut measured = Duration::ZERO;
            for _ in 0..iterations {
                let range = next..next + BURST;
                next = range.end;
                let before = sink.events();
                let cpu_before = thread_cpu_time();
                let started = Instant::now();
                let (longest_call, counted_loss) = burst(range);
                let elapsed = started.elapsed();
                let app_cpu = cpu_before
                    .zip(thread_cpu_time())
                    .map(|(before, after)| after.saturating_sub(before));
                let delivered = sink.events() - before;
                assert!(delivered <= BURST, "the sink counted {delivered} events");
                if let Some(loss) = counted_loss {
                    assert_eq!(delivered + loss, BURST, "every event delivered or counted");
                }
                bursts.push(Burst {
                    elapsed,
                    delivered,
                    counted_loss,
                    app_cpu,
                    longest_call,
                });
                measured += elapsed;
            }
            measured
        });
    });
    sink.check_readable();
    bursts
}

fn print_bursts(name: &str, bursts: &mut [Burst]) {
    if bursts.is_empty() {
        return;
    }
    bursts.sort_by_key(|burst| burst.elapsed);
    let median = &bursts[bursts.len() / 2];
    let lost = BURST - median.delivered;
    let counted = match median.counted_loss {
        Some(_) => "counted by the SDK",
        None => "not reported by the SDK",
    };
    let cpu = median.app_cpu.map_or_else(
        || "n/a".to_owned(),
        |cpu| format!("{:.3}", cpu.as_secs_f64() * 1e6 / BURST as f64),
    );
    let min_delivered = bursts.iter().map(|burst| burst.delivered).min();
    let max_delivered = bursts.iter().map(|burst| burst.delivered).max();
    println!(
        "burst {ALLOCATOR} {name}: median of {} bursts: {:.1} ms, delivered {}/{BURST} \
         (range {}–{} over all bursts), lost {lost} ({:.1}%, {counted}), \
         {:.0} delivered events/s; app thread CPU {cpu} µs/event, longest call {:.1} µs",
        bursts.len(),
        median.elapsed.as_secs_f64() * 1e3,
        median.delivered,
        min_delivered.unwrap_or(0),
        max_delivered.unwrap_or(0),
        lost as f64 * 100.0 / BURST as f64,
        median.delivered as f64 / median.elapsed.as_secs_f64(),
        median.longest_call.as_secs_f64() * 1e6,
    );
}

// ---------------------------------------------------------------------------------------------
// The SDKs
// ---------------------------------------------------------------------------------------------

/// The runtime the SDKs' background work runs on: 2 workers, one per core of the bench machine.
fn sdk_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the SDK runtime")
}

fn tributary_client(runtime: &Runtime, sink: &Sink) -> Client {
    let _entered = runtime.enter();
    Client::builder(WRITE_KEY)
        .endpoint(&sink.url)
        .policy(Policy::server())
        .build()
        .expect("a client")
}

/// A client whose queue is a SQLite file (WAL, `synchronous = NORMAL`) in `folder`.
#[cfg(feature = "sqlite")]
fn durable_tributary_client(runtime: &Runtime, sink: &Sink, folder: &std::path::Path) -> Client {
    let _entered = runtime.enter();
    Client::builder(WRITE_KEY)
        .endpoint(&sink.url)
        .policy(Policy::server())
        .sqlite_store(
            folder.join("queue.db"),
            tributary_server::Durability::ProcessCrash,
        )
        .build()
        .expect("a durable client")
}

/// A burst through `track_with_backpressure`, then a flush; checks that nothing was evicted.
fn tributary_backpressure_burst(
    runtime: &Runtime,
    client: &Client,
    range: Range<u64>,
) -> (Duration, Option<u64>) {
    let evicted_before = client.stats().counters.evicted;
    let longest = runtime.block_on(async {
        let mut longest = Duration::ZERO;
        for index in range {
            let started = Instant::now();
            client
                .track_with_backpressure(tributary_event(index))
                .await
                .expect("queued");
            longest = longest.max(started.elapsed());
        }
        client.flush().await.expect("flushed");
        longest
    });
    let evicted = client.stats().counters.evicted - evicted_before;
    assert_eq!(evicted, 0, "backpressure evicts nothing");
    (longest, Some(evicted))
}

/// Shuts the client down and checks that everything it was given was delivered or counted.
fn finish_tributary(runtime: &Runtime, client: &Client, sink: &Sink, tracked: u64) {
    let report = runtime.block_on(client.shutdown(Duration::from_secs(30)));
    let counters = report.stats.counters;
    assert!(report.drained, "{report:?}");
    assert_eq!(counters.enqueued, tracked, "{report:?}");
    assert_eq!(counters.delivered + counters.evicted, tracked, "{report:?}");
    assert_eq!(sink.events(), counters.delivered, "{report:?}");
    assert_eq!(report.stats.store_errors, 0, "{report:?}");
    sink.check_readable();
}

#[cfg(feature = "bench-peers")]
mod peers {
    use super::{Runtime, Sink, WRITE_KEY, square, user};

    pub(super) fn posthog_event(index: u64) -> posthog_rs::Event {
        let mut event = posthog_rs::Event::new("page_view".to_owned(), user(index));
        event
            .insert_prop("square", square(index))
            .expect("a number serializes");
        event
    }

    /// A posthog-rs client; `max_queue_size` `None` keeps its default (10,000).
    pub(super) fn posthog_client(
        runtime: &Runtime,
        sink: &Sink,
        max_queue_size: Option<usize>,
    ) -> posthog_rs::Client {
        let mut options = posthog_rs::ClientOptionsBuilder::default();
        options.host(sink.url.clone()).api_key(WRITE_KEY.to_owned());
        if let Some(size) = max_queue_size {
            options.max_queue_size(size);
        }
        let options = options.build().expect("posthog options");
        runtime.block_on(posthog_rs::client(options))
    }

    pub(super) fn segment_track(index: u64) -> segment::message::Track {
        segment::message::Track {
            user: segment::message::User::UserId {
                user_id: user(index),
            },
            event: "page_view".to_owned(),
            properties: serde_json::json!({ "square": square(index) }),
            ..Default::default()
        }
    }

    pub(super) fn segment_batcher(sink: &Sink) -> segment::AutoBatcher {
        let http = segment::HttpClient::new(reqwest_012::Client::new(), sink.url.clone());
        segment::AutoBatcher::new(http, segment::Batcher::new(None), WRITE_KEY.to_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// a. The application thread's cost per track call
// ---------------------------------------------------------------------------------------------

fn app_thread_per_track(c: &mut Criterion) {
    let runtime = sdk_runtime();
    let mut group = c.benchmark_group(format!("app_thread_per_track/{ALLOCATOR}"));
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut tallies = Vec::new();

    {
        let sink = Sink::start();
        let client = tributary_client(&runtime, &sink);
        let (tally, tracked) = bench_app_thread(
            &mut group,
            "tributary/track",
            CHUNK,
            |range| range,
            |range| {
                for index in range {
                    client.track(tributary_event(index)).expect("queued");
                }
            },
            || runtime.block_on(client.flush()).expect("flushed"),
        );
        finish_tributary(&runtime, &client, &sink, tracked);
        assert_eq!(sink.events(), tracked, "nothing evicted between flushes");
        tallies.push(("tributary/track", tally));
    }

    {
        let sink = Sink::start();
        let client = tributary_client(&runtime, &sink);
        let (tally, tracked) = bench_app_thread(
            &mut group,
            "tributary/track_with_backpressure",
            CHUNK,
            |range| range,
            |range| {
                runtime.block_on(async {
                    for index in range {
                        client
                            .track_with_backpressure(tributary_event(index))
                            .await
                            .expect("queued");
                    }
                });
            },
            || runtime.block_on(client.flush()).expect("flushed"),
        );
        finish_tributary(&runtime, &client, &sink, tracked);
        assert_eq!(sink.events(), tracked, "nothing evicted between flushes");
        tallies.push(("tributary/track_with_backpressure", tally));
    }

    {
        // Where the time goes: the same calls with the events built beforehand, untimed.
        let sink = Sink::start();
        let client = tributary_client(&runtime, &sink);
        let (tally, tracked) = bench_app_thread(
            &mut group,
            "tributary/track_prebuilt_event",
            CHUNK,
            |range| range.map(tributary_event).collect::<Vec<_>>(),
            |events| {
                for event in events {
                    client.track(event).expect("queued");
                }
            },
            || runtime.block_on(client.flush()).expect("flushed"),
        );
        finish_tributary(&runtime, &client, &sink, tracked);
        assert_eq!(sink.events(), tracked, "nothing evicted between flushes");
        tallies.push(("tributary/track_prebuilt_event", tally));
    }

    #[cfg(feature = "bench-peers")]
    {
        let sink = Sink::start();
        let posthog = peers::posthog_client(&runtime, &sink, None);
        let (tally, captured) = bench_app_thread(
            &mut group,
            "posthog-rs/capture",
            CHUNK,
            |range| range,
            |range| {
                for index in range {
                    posthog.capture(peers::posthog_event(index));
                }
            },
            || runtime.block_on(posthog.flush()),
        );
        runtime.block_on(posthog.shutdown());
        sink.check_readable();
        // Chunks of 1,000 with a flush between them never fill its 10,000-event queue.
        assert_eq!(sink.events(), captured, "posthog-rs dropped events");
        tallies.push(("posthog-rs/capture", tally));
    }

    #[cfg(feature = "bench-peers")]
    {
        let sink = Sink::start();
        let mut batcher = peers::segment_batcher(&sink);
        // No background sender: whatever it costs happens on this thread, sends included, so the
        // whole sample is one timed region (with the final flush).
        let (tally, pushed) = bench_app_thread(
            &mut group,
            "segment/auto_batcher_push",
            u64::MAX,
            |range| range,
            |range| {
                runtime.block_on(async {
                    for index in range {
                        batcher
                            .push(peers::segment_track(index))
                            .await
                            .expect("sent");
                    }
                    batcher.flush().await.expect("sent");
                });
            },
            || {},
        );
        sink.check_readable();
        assert_eq!(sink.events(), pushed, "segment lost events");
        tallies.push(("segment/auto_batcher_push", tally));
    }

    group.finish();
    for (name, tally) in &tallies {
        if tally.calls > 0 {
            println!("app thread {ALLOCATOR} {name}: {}", tally.summary());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// b. End-to-end delivery of a 100k-event burst
// ---------------------------------------------------------------------------------------------

/// Runs `call` for each index, returning the longest single call.
fn timed_calls(range: Range<u64>, mut call: impl FnMut(u64)) -> Duration {
    let mut longest = Duration::ZERO;
    for index in range {
        let started = Instant::now();
        call(index);
        longest = longest.max(started.elapsed());
    }
    longest
}

fn burst_end_to_end(c: &mut Criterion) {
    let runtime = sdk_runtime();
    let mut group = c.benchmark_group(format!("burst_100k_end_to_end/{ALLOCATOR}"));
    group
        .throughput(Throughput::Elements(BURST))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(4));
    let mut results: Vec<(&str, Vec<Burst>)> = Vec::new();

    {
        let name = "tributary/track_with_backpressure";
        let sink = Sink::start();
        let client = tributary_client(&runtime, &sink);
        let mut tracked = 0;
        let bursts = bench_burst(&mut group, name, &sink, |range| {
            tracked += range.end - range.start;
            tributary_backpressure_burst(&runtime, &client, range)
        });
        finish_tributary(&runtime, &client, &sink, tracked);
        results.push((name, bursts));
    }

    #[cfg(feature = "sqlite")]
    {
        let name = "tributary/track_with_backpressure (SQLite store, ProcessCrash)";
        let folder = tempfile::Builder::new()
            .prefix("http-client-bench")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("a temporary folder");
        let sink = Sink::start();
        let client = durable_tributary_client(&runtime, &sink, folder.path());
        let mut tracked = 0;
        let bursts = bench_burst(
            &mut group,
            "tributary/track_with_backpressure_sqlite",
            &sink,
            |range| {
                tracked += range.end - range.start;
                tributary_backpressure_burst(&runtime, &client, range)
            },
        );
        finish_tributary(&runtime, &client, &sink, tracked);
        results.push((name, bursts));
    }

    {
        let name = "tributary/track (default capacity 10,000)";
        let sink = Sink::start();
        let client = tributary_client(&runtime, &sink);
        let mut tracked = 0;
        let bursts = bench_burst(&mut group, "tributary/track", &sink, |range| {
            tracked += range.end - range.start;
            let evicted_before = client.stats().counters.evicted;
            let longest = timed_calls(range, |index| {
                client.track(tributary_event(index)).expect("queued");
            });
            runtime.block_on(client.flush()).expect("flushed");
            let evicted = client.stats().counters.evicted - evicted_before;
            (longest, Some(evicted))
        });
        finish_tributary(&runtime, &client, &sink, tracked);
        results.push((name, bursts));
    }

    #[cfg(feature = "bench-peers")]
    for (id, name, max_queue_size) in [
        (
            "posthog-rs/default_options",
            "posthog-rs (default options: queue of 10,000)",
            None,
        ),
        (
            "posthog-rs/max_queue_size_100k",
            "posthog-rs (max_queue_size = 100,000)",
            Some(BURST as usize),
        ),
    ] {
        let sink = Sink::start();
        let posthog = peers::posthog_client(&runtime, &sink, max_queue_size);
        let bursts = bench_burst(&mut group, id, &sink, |range| {
            let longest = timed_calls(range, |index| {
                posthog.capture(peers::posthog_event(index));
            });
            runtime.block_on(posthog.flush());
            // A full queue drops silently: no hook fires and no counter is public.
            (longest, None)
        });
        runtime.block_on(posthog.shutdown());
        results.push((name, bursts));
    }

    #[cfg(feature = "bench-peers")]
    {
        let name = "segment (AutoBatcher)";
        let sink = Sink::start();
        let mut batcher = peers::segment_batcher(&sink);
        let bursts = bench_burst(&mut group, "segment/auto_batcher", &sink, |range| {
            runtime.block_on(async {
                let mut longest = Duration::ZERO;
                for index in range {
                    let started = Instant::now();
                    batcher
                        .push(peers::segment_track(index))
                        .await
                        .expect("sent");
                    longest = longest.max(started.elapsed());
                }
                batcher.flush().await.expect("sent");
                // Nothing is dropped: a failed send is the caller's error.
                (longest, Some(0))
            })
        });
        results.push((name, bursts));
    }

    group.finish();
    for (name, bursts) in &mut results {
        print_bursts(name, bursts);
    }
}

criterion_group!(benches, app_thread_per_track, burst_end_to_end);
criterion_main!(benches);
