//! Ingest, router, connectors, DLQ and the tributary binary; built in a later milestone.
//!
//! A placeholder so the workspace builds; see the project README for the roadmap.
