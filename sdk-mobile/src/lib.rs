//! The mobile SDK (uniffi bindings over tributary-core for Kotlin and Swift); built in a later milestone.
//!
//! A placeholder so the workspace builds; see the project README for the roadmap.
