//! The web SDK (wasm-bindgen bindings over tributary-core); built in a later milestone.
//!
//! A placeholder so the workspace builds; see the project README for the roadmap.
