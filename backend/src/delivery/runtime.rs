//! The runtime delivery runs on in `tributary serve`: its own threads, at a lower scheduling
//! priority than the ingest's.
//!
//! Accepting an event durably comes first: a `200` is what lets a client drop its copy, while
//! delivery can catch up from the log later. So when both want the CPU (a burst beyond what the
//! destinations take), the kernel gives the ingest and the log writer precedence and delivery the
//! rest; the log absorbs the difference (bounded by `storage.max_log_bytes`, beyond which the
//! ingest answers `503`). When the ingest is idle, delivery has every core.
//!
//! # Invariants
//! - Every thread of this runtime (workers and its blocking pool, where SQLite connectors write)
//!   runs at nice [`DELIVERY_NICENESS`]; a system that refuses it leaves the thread at normal
//!   priority (logged once per thread at debug level), which only changes who waits under load.
//! - Dropping a [`DeliveryRuntime`] never blocks: its threads are released in the background,
//!   so it may be dropped inside another runtime.

use tokio::runtime::{Handle, Runtime};

/// How much lower delivery's priority is (nice value, 0–19): at 10 the kernel's weight of a
/// delivery thread is about a tenth of an ingest thread's.
pub const DELIVERY_NICENESS: i32 = 10;

/// A multi-threaded runtime for the destination workers, released in the background on drop.
pub struct DeliveryRuntime {
    runtime: Option<Runtime>,
}

impl DeliveryRuntime {
    /// One worker thread per core.
    ///
    /// # Errors
    /// When the runtime's threads cannot be started.
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("tributary-delivery")
            .on_thread_start(lower_this_threads_priority)
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Where to spawn the workers.
    pub fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("the runtime is only taken by drop")
            .handle()
    }
}

impl Drop for DeliveryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// On Linux a nice value is per thread: `setpriority(PRIO_PROCESS, 0, n)` sets the calling
/// thread's.
fn lower_this_threads_priority() {
    if let Err(error) = rustix::process::setpriority_process(None, DELIVERY_NICENESS) {
        tracing::debug!(message = "delivery thread keeps normal priority", %error);
    }
}
