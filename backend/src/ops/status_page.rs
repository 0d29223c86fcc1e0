//! The status page: plain HTML and a little JavaScript, no build step. It polls `/metrics` every
//! second and shows events per second in and out, each destination's delivered / retrying /
//! dead-lettered counts, log lag and DLQ depth. Every number on it is an element with a
//! `data-metric` attribute naming the series it shows, so it can be checked against `/metrics`.

/// The page.
pub const HTML: &str = include_str!("status.html");
