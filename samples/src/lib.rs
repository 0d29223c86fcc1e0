//! Runnable examples for every Tributary producer (see `samples/README.md`), plus
//! `samples/rules.json` and `samples/tributary.toml`, which `tributary serve` embeds as its
//! built-in defaults.
//!
//! - `cargo run -p tributary-samples --example server_http`: a backend server sending events
//!   through `tributary-server`'s HTTP mode to a running `tributary serve`.
//! - `cargo run -p tributary-samples --example kinesis_producer`: the article's 300 events put
//!   straight into the Kinesis stream `data-collection-stream` (Kinesis mode; honours
//!   `AWS_ENDPOINT_URL`).
