//! The web SDK's core: [`WebQueue`], the sans-IO delivery queue of `tributary-core` exported to
//! JavaScript with wasm-bindgen. The TypeScript wrapper in `ts/` (the npm package
//! `@tributary/web`) drives it: it builds each event's JSON with the browser's own
//! `JSON.stringify`, performs the queue's storage work in IndexedDB (or localStorage), uploads
//! batches with `fetch` and `navigator.sendBeacon`, and reports every outcome back.
//!
//! # Invariants
//! - The module links no JSON library and no UUID library (the size budget: see
//!   `docs/BENCHMARKS.md`): event JSON and ids come from the browser, 2xx answers are parsed by
//!   the browser and reported as [`tributary_core::UploadOutcome::Accepted`].
//! - Nothing here panics on input from JavaScript: a bad event is an error string and a counted
//!   drop; an unknown upload id is ignored by the core.
//! - Every decision (when to flush, what a batch holds, what an answer means, backoff, eviction)
//!   is the core's, by the browser [`tributary_core::Policy`].

// The allocator: lol_alloc's free list is a fraction of the size of the default dlmalloc, and the
// wrapper only ever calls the module from the page's one thread.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
// SAFETY: wasm32 without the `atomics` feature has one thread, so nothing allocates concurrently.
#[allow(unsafe_code)]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

mod notice;
mod web_queue;

pub use web_queue::WebQueue;
