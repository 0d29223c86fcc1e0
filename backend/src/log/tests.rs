//! The log on its own: group commit, dedup window, offsets, retention, checksums.

use std::time::Duration;

use super::maintenance::sweep;
use super::{EventLog, IncomingEvent, LogError, LogOptions};

fn options(dedup_window: Duration) -> LogOptions {
    LogOptions {
        dedup_window,
        retention: Duration::from_secs(60),
        max_bytes: 0,
    }
}

fn event(id: &str) -> IncomingEvent {
    IncomingEvent {
        id: id.into(),
        name: "login".into(),
        partition_key: id.into(),
        received_at: crate::clock::now(),
        json: format!(r#"{{"id":"{id}","name":"login","data":{{}}}}"#),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_transactions_and_get_distinct_offsets() {
    let folder = tempfile::tempdir().unwrap();
    let log = EventLog::open(folder.path(), &options(Duration::from_secs(60))).unwrap();
    let mut appends = tokio::task::JoinSet::new();
    for request in 0..50 {
        let log = log.clone();
        appends.spawn(async move {
            let events = (0..20)
                .map(|n| event(&format!("c-{request}-{n}")))
                .collect();
            log.append(events).await.unwrap()
        });
    }
    let mut appended = 0;
    while let Some(outcome) = appends.join_next().await {
        appended += outcome.unwrap().appended;
    }
    assert_eq!(appended, 1_000);
    let mut reader = log.reader().unwrap();
    let batch = reader.read_after(0, 5_000).unwrap();
    let offsets: Vec<u64> = batch.records.iter().map(|record| record.offset).collect();
    assert_eq!(offsets, (1..=1_000).collect::<Vec<_>>());
    assert_eq!(*log.appended().borrow(), 1_000);
    log.close().await;
    assert!(matches!(
        log.append(vec![event("late")]).await,
        Err(LogError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_within_the_dedup_window_are_stored_once() {
    let folder = tempfile::tempdir().unwrap();
    let log = EventLog::open(folder.path(), &options(Duration::from_secs(60))).unwrap();
    let first = log
        .append(vec![event("a"), event("b"), event("a")])
        .await
        .unwrap();
    assert_eq!((first.appended, first.duplicates), (2, 1));
    let second = log.append(vec![event("b"), event("c")]).await.unwrap();
    assert_eq!((second.appended, second.duplicates), (1, 1));
    assert_eq!(log.reader().unwrap().record_count().unwrap(), 3);
    log.close().await;

    // A window of zero forgets at once: the same id is a new event again.
    let folder = tempfile::tempdir().unwrap();
    let log = EventLog::open(folder.path(), &options(Duration::ZERO)).unwrap();
    log.append(vec![event("a")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = log.append(vec![event("a")]).await.unwrap();
    assert_eq!(again.appended, 1);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_what_every_destination_committed_and_offsets_never_repeat() {
    let folder = tempfile::tempdir().unwrap();
    let log = EventLog::open(folder.path(), &options(Duration::from_secs(60))).unwrap();
    log.append((0..10).map(|n| event(&format!("r-{n}"))).collect())
        .await
        .unwrap();
    let reader = log.reader().unwrap();
    reader.commit_offset("fast", 10).unwrap();
    reader.commit_offset("slow", 4).unwrap();
    reader.commit_offset("slow", 2).unwrap();
    assert_eq!(
        reader.committed_offset("slow").unwrap(),
        4,
        "offsets never move back"
    );
    let destinations = ["fast".to_owned(), "slow".to_owned()];
    let later = crate::clock::now().saturating_add(Duration::from_secs(120));

    let kept = sweep(
        &reader,
        &destinations,
        crate::clock::now(),
        Duration::from_secs(60),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(kept.records, 0, "younger than retention");
    let swept = sweep(
        &reader,
        &destinations,
        later,
        Duration::from_secs(60),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(swept.records, 4, "up to the slowest destination's offset");
    assert_eq!(swept.ids, 10, "ids past the dedup window are forgotten");
    reader.commit_offset("slow", 10).unwrap();
    sweep(
        &reader,
        &destinations,
        later,
        Duration::from_secs(60),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(reader.record_count().unwrap(), 0);
    log.close().await;

    // Reopened with an empty log: offsets continue after the committed ones.
    let log = EventLog::open(folder.path(), &options(Duration::from_secs(60))).unwrap();
    log.append(vec![event("after")]).await.unwrap();
    let mut reader = log.reader().unwrap();
    assert_eq!(reader.read_after(0, 10).unwrap().records[0].offset, 11);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_checksum_fails_is_skipped_and_reported() {
    let folder = tempfile::tempdir().unwrap();
    let log = EventLog::open(folder.path(), &options(Duration::from_secs(60))).unwrap();
    log.append((0..3).map(|n| event(&format!("k-{n}"))).collect())
        .await
        .unwrap();
    let connection = rusqlite::Connection::open(log.path()).unwrap();
    connection
        .execute("UPDATE log SET payload = '{}' WHERE offset = 2", [])
        .unwrap();
    let mut reader = log.reader().unwrap();
    let batch = reader.read_after(0, 10).unwrap();
    let ids: Vec<&str> = batch
        .records
        .iter()
        .map(|record| record.id.as_str())
        .collect();
    assert_eq!(ids, ["k-0", "k-2"]);
    assert_eq!(batch.corrupt, [2]);
    assert_eq!(batch.last_examined, Some(3));
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_by_the_writer_while_it_runs_and_by_the_reader_after() {
    let folder = tempfile::tempdir().unwrap();
    let log = EventLog::open(folder.path(), &options(Duration::from_secs(60))).unwrap();
    // Appends and offset commits at the same time: every commit lands, none moves back.
    let mut appends = tokio::task::JoinSet::new();
    for request in 0..20 {
        let log = log.clone();
        appends.spawn(async move {
            let events = (0..50)
                .map(|n| event(&format!("o-{request}-{n}")))
                .collect();
            log.append(events).await.unwrap()
        });
    }
    let reader = log.reader().unwrap();
    let committer = tokio::task::spawn_blocking(move || {
        for offset in (1..=100).rev() {
            reader.commit_offset("d", offset).unwrap();
        }
        reader
    });
    while let Some(outcome) = appends.join_next().await {
        assert_eq!(outcome.unwrap().appended, 50);
    }
    let reader = committer.await.unwrap();
    assert_eq!(reader.committed_offset("d").unwrap(), 100);

    // Once the writer has stopped, the reader's own connection commits.
    log.close().await;
    reader.commit_offset("d", 150).unwrap();
    assert_eq!(reader.committed_offset("d").unwrap(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_still_takes_offset_commits() {
    let folder = tempfile::tempdir().unwrap();
    let log = EventLog::open(
        folder.path(),
        &LogOptions {
            max_bytes: 64 * 1024,
            ..options(Duration::from_secs(60))
        },
    )
    .unwrap();
    let mut full = None;
    for request in 0..1_000 {
        let events = (0..20)
            .map(|n| event(&format!("full-{request}-{n}")))
            .collect();
        if let Err(error) = log.append(events).await {
            full = Some(error);
            break;
        }
    }
    assert!(matches!(full, Some(LogError::Full(_))), "{full:?}");
    let reader = log.reader().unwrap();
    let committed = tokio::task::spawn_blocking(move || {
        reader.commit_offset("d", 7)?;
        reader.committed_offset("d")
    })
    .await
    .unwrap();
    assert_eq!(committed.unwrap(), 7);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_reads_return_only_the_names_asked_and_examine_up_to_the_bound() {
    let folder = tempfile::tempdir().unwrap();
    let log = EventLog::open(folder.path(), &options(Duration::from_secs(60))).unwrap();
    let mut events: Vec<IncomingEvent> = (0..10).map(|n| event(&format!("n-{n}"))).collect();
    for (index, event) in events.iter_mut().enumerate() {
        event.name = if index % 3 == 0 {
            "search".into()
        } else {
            "other".into()
        };
    }
    log.append(events).await.unwrap();
    let mut reader = log.reader().unwrap();
    let names = ["search".to_owned()];

    let batch = reader.read_routed(0, 10, Some(&names), 100).unwrap();
    let offsets: Vec<u64> = batch.records.iter().map(|record| record.offset).collect();
    assert_eq!(offsets, [1, 4, 7, 10]);
    assert_eq!(
        batch.last_examined,
        Some(10),
        "everything up to the bound was examined"
    );

    let limited = reader.read_routed(0, 10, Some(&names), 2).unwrap();
    assert_eq!(limited.records.len(), 2);
    assert_eq!(
        limited.last_examined,
        Some(4),
        "a full page stops at its last record"
    );

    let bounded = reader.read_routed(4, 6, None, 100).unwrap();
    let offsets: Vec<u64> = bounded.records.iter().map(|record| record.offset).collect();
    assert_eq!(offsets, [5, 6], "every name, within the bound");
    let none = reader.read_routed(0, 10, Some(&[]), 100).unwrap();
    assert!(none.records.is_empty());
    assert_eq!(none.last_examined, Some(10));
    log.close().await;
}
