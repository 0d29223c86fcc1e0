//! Runnable examples for every Tributary producer.
//!
//! A placeholder so the workspace builds; see the project README for the roadmap.
