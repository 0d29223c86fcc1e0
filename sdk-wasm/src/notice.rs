//! Notifications of the queue as JavaScript reads them: one line each, `kind count detail`.
//!
//! Plain text keeps the module free of a class per notification (the size budget); the
//! TypeScript wrapper splits the lines.

use tributary_core::queue::QueueEvent;

/// Appends `event` as a line: its kind (`delivered`, `dropped`, `evicted`, `retry`, `paused`),
/// how many events it concerns, and a detail: the drop reason and the server's or validator's
/// words (`dropped`), the cause (`retry`), the status (`paused`), else nothing.
pub(crate) fn write_notice(lines: &mut String, event: QueueEvent) {
    let (kind, count, reason, detail) = match event {
        QueueEvent::Delivered { count, .. } => ("delivered", count, "", String::new()),
        QueueEvent::Dropped {
            count,
            reason,
            detail,
        } => ("dropped", count, reason.as_str(), detail),
        QueueEvent::Evicted { count } => ("evicted", count, "", String::new()),
        QueueEvent::RetryScheduled { count, cause, .. } => ("retry", count, "", cause),
        QueueEvent::Paused { status, .. } => ("paused", 0, "", status.to_string()),
    };
    lines.push_str(kind);
    lines.push(' ');
    lines.push_str(&count.to_string());
    lines.push(' ');
    if !reason.is_empty() {
        lines.push_str(reason);
        lines.push_str(": ");
    }
    // One line per notification: a detail never spans lines.
    lines.push_str(&detail.replace('\n', " "));
    lines.push('\n');
}

#[cfg(test)]
mod tests {
    use tributary_core::queue::DropReason;

    use super::*;

    #[test]
    fn writes_one_line_per_notification() {
        let mut lines = String::new();
        write_notice(
            &mut lines,
            QueueEvent::Dropped {
                count: 2,
                reason: DropReason::Permanent,
                detail: "HTTP 400:\nbad".into(),
            },
        );
        write_notice(&mut lines, QueueEvent::Evicted { count: 3 });
        assert_eq!(lines, "dropped 2 permanent: HTTP 400: bad\nevicted 3 \n");
    }
}
