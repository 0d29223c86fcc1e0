//! `tributary send`: demo traffic through the server SDK's HTTP mode.
//!
//! Event `i` (from 0) is named `event-i` when `i % 10 == 9` (no rule of the article's takes
//! it), else the article's nine names in turn by `i % 9`, with `data: {"square": i*i}`, from
//! one of ten demo users: `user_id` `demo-user-{i % 10}` and `context.traits.email`
//! `demo-user-{i % 10}@example.com` (HubSpot associates occurrences by email).

use std::time::Duration;

use serde_json::json;
use tributary_server::{Client, Event};

use super::SendArgs;

/// The article's event names.
pub(super) const ARTICLE_EVENT_NAMES: [&str; 9] = [
    "login",
    "logout",
    "registration",
    "page_view",
    "search",
    "button_click",
    "page_scroll",
    "email_sent",
    "email_open",
];

/// How many demo users the events come from.
pub(super) const DEMO_USERS: u64 = 10;

/// The name of demo event `index`.
pub(super) fn demo_event_name(index: u64) -> String {
    if index % 10 == 9 {
        format!("event-{index}")
    } else {
        ARTICLE_EVENT_NAMES[(index % 9) as usize].to_owned()
    }
}

pub(super) async fn run(args: SendArgs) -> Result<(), String> {
    let client = Client::builder(&args.write_key)
        .endpoint(&args.endpoint)
        .build()
        .map_err(|error| error.to_string())?;
    for index in 0..args.count {
        let square = u128::from(index) * u128::from(index);
        let user = index % DEMO_USERS;
        let event = Event::new(demo_event_name(index))
            .data(json!({ "square": square }))
            .user_id(format!("demo-user-{user}"))
            .context(
                "traits",
                json!({ "email": format!("demo-user-{user}@example.com") }),
            );
        client
            .track_with_backpressure(event)
            .await
            .map_err(|error| error.to_string())?;
    }
    let report = client.shutdown(Duration::from_secs(30)).await;
    let counters = report.stats.counters;
    println!(
        "sent {} events to {}: {} accepted, {} rejected, {} not delivered",
        args.count,
        args.endpoint,
        counters.delivered,
        counters.dropped.rejected + counters.dropped.permanent + counters.dropped.invalid,
        report.lost + report.persisted
    );
    if counters.delivered != args.count {
        return Err(format!(
            "only {} of {} events were accepted (is `tributary serve` running at {}?)",
            counters.delivered, args.count, args.endpoint
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let names: Vec<String> = (0..20).map(demo_event_name).collect();
        assert_eq!(&names[..9], ARTICLE_EVENT_NAMES);
        assert_eq!(names[9], "event-9");
        assert_eq!(names[10], "logout", "10 % 9 == 1");
        assert_eq!(names[19], "event-19");
        let routed = (0..300).filter(|index| index % 10 != 9).count();
        assert_eq!(routed, 270);
    }
}
