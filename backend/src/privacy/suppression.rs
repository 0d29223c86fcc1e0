//! The suppression list: whose events are no longer collected, and whose past events were
//! deleted. One small JSON document, the same in both modes: `suppressions.json` in the data
//! dir locally; in AWS mode an S3 object beside the rules, which the router loads (and re-reads
//! when its ETag changes) with [`SuppressionList::from_json`].
//!
//! ```json
//! {"version": 1,
//!  "suppressed": [{"subject": {"user_id": "u-42"}, "since": "2026-11-27T10:00:00Z", "reason": "GDPR art. 21"}],
//!  "deleted": [{"subject": {"anonymous_id": "a-7"}, "received_before": "2026-11-27T10:05:00Z", "request": "0193…"}]}
//! ```
//!
//! - `suppressed`: events of the subject received at or after `since` are dropped: by the
//!   ingest (counted in `tributary_events_suppressed_total`) and by the router, which also
//!   sees events that did not pass the ingest (records produced straight to the stream).
//! - `deleted`: events of the subject received before `received_before` are dropped by the
//!   router, so a deletion also covers events still in the log or stream, read ahead, or waiting
//!   for a retry when the request came.
//!
//! A subject is `{"user_id": …}` or `{"anonymous_id": …}`; an event matches when its `user_id`
//! or its `anonymous_id` equals the subject's.
//!
//! # Invariants
//! - The file is replaced whole (written to a temporary file, synced, renamed), under an
//!   exclusive lock on `suppressions.json.lock`, so concurrent `tributary privacy` commands and
//!   a running `serve` never lose each other's changes or read half a file.
//! - A missing file is an empty list; a malformed one is an error naming the file, never an
//!   empty list (that would silently collect suppressed users' events again).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::PrivacyError;

/// The list's file name inside the data dir.
pub const SUPPRESSION_FILE: &str = "suppressions.json";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Whose events: a user id or an anonymous id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Subject {
    /// Events whose `user_id` is this.
    UserId(String),
    /// Events whose `anonymous_id` is this.
    AnonymousId(String),
}

impl std::fmt::Display for Subject {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UserId(id) => write!(formatter, "user_id {id:?}"),
            Self::AnonymousId(id) => write!(formatter, "anonymous_id {id:?}"),
        }
    }
}

/// One suppressed subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    /// Whose events.
    pub subject: Subject,
    /// From when (RFC 3339): events received at or after it are dropped.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Why, for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One deletion the router must honour for events still on their way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deletion {
    /// Whose events.
    pub subject: Subject,
    /// Events received before it (RFC 3339) are dropped.
    #[serde(with = "time::serde::rfc3339")]
    pub received_before: OffsetDateTime,
    /// The id of the request in the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionList {
    /// Always [`FORMAT_VERSION`].
    pub version: u32,
    /// Subjects whose new events are dropped.
    #[serde(default)]
    pub suppressed: Vec<Suppression>,
    /// Subjects whose past events were deleted.
    #[serde(default)]
    pub deleted: Vec<Deletion>,
}

impl Default for SuppressionList {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            suppressed: Vec::new(),
            deleted: Vec::new(),
        }
    }
}

impl SuppressionList {
    /// Reads the document (the AWS router's entry point for the S3 object).
    ///
    /// # Errors
    /// Malformed JSON, an unknown field or an unknown version, with serde's line and column.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let list: Self = serde_json::from_str(text).map_err(|error| error.to_string())?;
        if list.version != FORMAT_VERSION {
            return Err(format!(
                "version {} is not supported (this build reads version {FORMAT_VERSION})",
                list.version
            ));
        }
        Ok(list)
    }

    /// The document, pretty-printed.
    pub fn to_json(&self) -> String {
        // A struct of strings and lists always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Adds `subject` (a no-op when it is suppressed already); whether it was added.
    pub fn suppress(
        &mut self,
        subject: Subject,
        since: OffsetDateTime,
        reason: Option<String>,
    ) -> bool {
        if self.suppressed.iter().any(|entry| entry.subject == subject) {
            return false;
        }
        self.suppressed.push(Suppression {
            subject,
            since,
            reason,
        });
        true
    }

    /// Removes `subject`; whether it was there.
    pub fn unsuppress(&mut self, subject: &Subject) -> bool {
        let before = self.suppressed.len();
        self.suppressed.retain(|entry| &entry.subject != subject);
        self.suppressed.len() != before
    }

    /// The fast lookup of this list.
    pub fn index(&self) -> SuppressionIndex {
        let mut index = SuppressionIndex::default();
        for entry in &self.suppressed {
            let since = unix_millis(entry.since);
            let slot = match &entry.subject {
                Subject::UserId(id) => index.suppressed_users.entry(id.clone()),
                Subject::AnonymousId(id) => index.suppressed_devices.entry(id.clone()),
            };
            let value = slot.or_insert(since);
            *value = (*value).min(since);
        }
        for entry in &self.deleted {
            let before = unix_millis(entry.received_before);
            let slot = match &entry.subject {
                Subject::UserId(id) => index.deleted_users.entry(id.clone()),
                Subject::AnonymousId(id) => index.deleted_devices.entry(id.clone()),
            };
            let value = slot.or_insert(before);
            *value = (*value).max(before);
        }
        index
    }
}

fn unix_millis(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos() / 1_000_000
}

/// Why the router drops an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its subject is suppressed.
    Suppressed,
    /// Its subject's events were deleted.
    Deleted,
}

/// [`SuppressionList`] as hash maps, for checking every event.
#[derive(Debug, Clone, Default)]
pub struct SuppressionIndex {
    suppressed_users: HashMap<String, i128>,
    suppressed_devices: HashMap<String, i128>,
    deleted_users: HashMap<String, i128>,
    deleted_devices: HashMap<String, i128>,
}

impl SuppressionIndex {
    /// Whether there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.suppressed_users.is_empty()
            && self.suppressed_devices.is_empty()
            && self.deleted_users.is_empty()
            && self.deleted_devices.is_empty()
    }

    /// Whether the ingest drops an event of these ids (a suppression in force now).
    pub fn is_suppressed(&self, user_id: Option<&str>, anonymous_id: Option<&str>) -> bool {
        user_id.is_some_and(|id| self.suppressed_users.contains_key(id))
            || anonymous_id.is_some_and(|id| self.suppressed_devices.contains_key(id))
    }

    /// Whether the router drops an event of these ids received at `received_at` (Unix ms;
    /// `None` when unknown, which counts as received now).
    pub fn router_drops(
        &self,
        user_id: Option<&str>,
        anonymous_id: Option<&str>,
        received_at: Option<i128>,
    ) -> Option<DropReason> {
        let now = received_at.unwrap_or_else(|| unix_millis(OffsetDateTime::now_utc()));
        let lookup = |users: &HashMap<String, i128>, devices: &HashMap<String, i128>| {
            let user = user_id.and_then(|id| users.get(id)).copied();
            let device = anonymous_id.and_then(|id| devices.get(id)).copied();
            [user, device]
        };
        let suppressed = lookup(&self.suppressed_users, &self.suppressed_devices);
        if suppressed.iter().flatten().any(|since| now >= *since) {
            return Some(DropReason::Suppressed);
        }
        let deleted = lookup(&self.deleted_users, &self.deleted_devices);
        if deleted.iter().flatten().any(|before| now < *before) {
            return Some(DropReason::Deleted);
        }
        None
    }

    /// [`SuppressionIndex::router_drops`] for an envelope's JSON (unreadable JSON is never
    /// dropped here: the destination decides what to do with it).
    pub fn router_drops_json(&self, json: &str) -> Option<DropReason> {
        if self.is_empty() {
            return None;
        }
        #[derive(Deserialize)]
        struct Ids<'a> {
            #[serde(borrow, default)]
            user_id: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow, default)]
            anonymous_id: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow, default)]
            received_at: Option<std::borrow::Cow<'a, str>>,
        }
        let ids: Ids<'_> = serde_json::from_str(json).ok()?;
        let received_at = ids.received_at.as_deref().and_then(|text| {
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(unix_millis)
        });
        self.router_drops(
            ids.user_id.as_deref(),
            ids.anonymous_id.as_deref(),
            received_at,
        )
    }
}

/// The list's file, read and replaced under a lock.
#[derive(Debug, Clone)]
pub struct SuppressionFile {
    path: PathBuf,
}

impl SuppressionFile {
    /// `suppressions.json` in `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(SUPPRESSION_FILE),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The list (empty when the file does not exist).
    ///
    /// # Errors
    /// When the file cannot be read or does not parse.
    pub fn load(&self) -> Result<SuppressionList, PrivacyError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => SuppressionList::from_json(&text).map_err(|message| PrivacyError::Parse {
                path: self.path.display().to_string(),
                message,
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(SuppressionList::default())
            }
            Err(error) => Err(PrivacyError::io(&self.path, &error)),
        }
    }

    /// Reads, changes and replaces the list under the lock; returns `change`'s result and the
    /// new list.
    ///
    /// # Errors
    /// When the lock, the file or the folder cannot be used.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut SuppressionList) -> T,
    ) -> Result<(T, SuppressionList), PrivacyError> {
        let folder = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(folder).map_err(|error| PrivacyError::io(folder, &error))?;
        let lock_path = self.path.with_extension("json.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| PrivacyError::io(&lock_path, &error))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|error| PrivacyError::io(&lock_path, &error.into()))?;
        let mut list = self.load()?;
        let result = change(&mut list);
        let temporary = self.path.with_extension("json.tmp");
        let written = (|| {
            let mut file = File::create(&temporary)?;
            file.write_all(list.to_json().as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)?;
            // The rename itself is durable once the folder is synced.
            File::open(folder)?.sync_all()
        })();
        drop(lock);
        written.map_err(|error| PrivacyError::io(&self.path, &error))?;
        Ok((result, list))
    }

    /// The file's inode, modification time and length, to notice changes made by other
    /// processes (every change renames a new file into place, so the inode alone would do on
    /// most file systems).
    fn stamp(&self) -> Option<FileStamp> {
        let metadata = std::fs::metadata(&self.path).ok()?;
        Some((metadata.ino(), metadata.modified().ok()?, metadata.len()))
    }
}

/// Inode, modification time, length.
type FileStamp = (u64, SystemTime, u64);

/// The list as a running process sees it: reloaded when the file changes.
pub struct LiveSuppressions {
    file: SuppressionFile,
    index: RwLock<Arc<SuppressionIndex>>,
    stamp: Mutex<Option<FileStamp>>,
}

impl LiveSuppressions {
    /// Loads the file now.
    ///
    /// # Errors
    /// As [`SuppressionFile::load`].
    pub fn open(file: SuppressionFile) -> Result<Self, PrivacyError> {
        let stamp = file.stamp();
        let list = file.load()?;
        Ok(Self {
            file,
            index: RwLock::new(Arc::new(list.index())),
            stamp: Mutex::new(stamp),
        })
    }

    /// An empty list that never reloads (tests, and ingest without a data dir).
    pub fn empty() -> Self {
        Self {
            file: SuppressionFile {
                path: PathBuf::new(),
            },
            index: RwLock::new(Arc::new(SuppressionIndex::default())),
            stamp: Mutex::new(None),
        }
    }

    /// The current lookup.
    pub fn current(&self) -> Arc<SuppressionIndex> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the lookup with `list` (after this process changed the file).
    pub fn set(&self, list: &SuppressionList) {
        *self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(list.index());
        *self
            .stamp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = self.file.stamp();
    }

    /// Replaces the lookup with `index` (a list read from elsewhere: AWS mode's S3 object).
    pub fn set_index(&self, index: Arc<SuppressionIndex>) {
        *self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = index;
    }

    /// Reloads the file when it changed since the last look (blocking: a `stat`, and a read
    /// when it changed). A file that does not parse keeps the previous list in force.
    ///
    /// # Errors
    /// When the changed file cannot be read or parsed.
    pub fn refresh(&self) -> Result<bool, PrivacyError> {
        if self.file.path.as_os_str().is_empty() {
            return Ok(false);
        }
        let stamp = self.file.stamp();
        {
            let seen = self
                .stamp
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *seen == stamp {
                return Ok(false);
            }
        }
        let list = self.file.load()?;
        *self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(list.index());
        *self
            .stamp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = stamp;
        Ok(true)
    }

    /// The file behind it.
    pub fn file(&self) -> &SuppressionFile {
        &self.file
    }
}

/// The users and devices of one request, for matching events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectSet {
    user_ids: HashSet<String>,
    anonymous_ids: HashSet<String>,
}

impl SubjectSet {
    /// These subjects.
    pub fn new(subjects: &[Subject]) -> Self {
        let mut set = Self::default();
        for subject in subjects {
            match subject {
                Subject::UserId(id) => set.user_ids.insert(id.clone()),
                Subject::AnonymousId(id) => set.anonymous_ids.insert(id.clone()),
            };
        }
        set
    }

    /// The user ids.
    pub fn user_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.user_ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// The anonymous ids.
    pub fn anonymous_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.anonymous_ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// Whether an event of these ids belongs to a subject.
    pub fn matches(&self, user_id: Option<&str>, anonymous_id: Option<&str>) -> bool {
        user_id.is_some_and(|id| self.user_ids.contains(id))
            || anonymous_id.is_some_and(|id| self.anonymous_ids.contains(id))
    }

    /// [`SubjectSet::matches`] for an envelope's JSON (unreadable JSON never matches).
    pub fn matches_json(&self, json: &str) -> bool {
        #[derive(Deserialize)]
        struct Ids<'a> {
            #[serde(borrow, default)]
            user_id: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow, default)]
            anonymous_id: Option<std::borrow::Cow<'a, str>>,
        }
        serde_json::from_str::<Ids<'_>>(json)
            .is_ok_and(|ids| self.matches(ids.user_id.as_deref(), ids.anonymous_id.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_document_round_trips_and_is_strict() {
        let mut list = SuppressionList::default();
        assert!(list.suppress(
            Subject::UserId("u-42".into()),
            datetime!(2026-11-27 10:00 UTC),
            Some("asked".into())
        ));
        assert!(!list.suppress(
            Subject::UserId("u-42".into()),
            datetime!(2026-11-28 10:00 UTC),
            None
        ));
        list.deleted.push(Deletion {
            subject: Subject::AnonymousId("a-7".into()),
            received_before: datetime!(2026-11-27 10:05 UTC),
            request: Some("r1".into()),
        });
        let text = list.to_json();
        assert!(text.contains(r#""user_id": "u-42""#), "{text}");
        assert!(
            text.contains(r#""since": "2026-11-27T10:00:00Z""#),
            "{text}"
        );
        assert_eq!(SuppressionList::from_json(&text).unwrap(), list);

        assert!(SuppressionList::from_json(r#"{"version": 2}"#).is_err());
        let error = SuppressionList::from_json(
            r#"{"version": 1, "suppressed": [{"subject": {"email": "x"}, "since": "2026-11-27T10:00:00Z"}]}"#,
        )
        .unwrap_err();
        assert!(error.contains("email"), "{error}");
        assert!(list.unsuppress(&Subject::UserId("u-42".into())));
        assert!(!list.unsuppress(&Subject::UserId("u-42".into())));
    }

    #[test]
    fn the_index_answers_the_ingest_and_the_router() {
        let mut list = SuppressionList::default();
        list.suppress(
            Subject::UserId("u".into()),
            datetime!(2026-11-27 10:00 UTC),
            None,
        );
        list.deleted.push(Deletion {
            subject: Subject::AnonymousId("a".into()),
            received_before: datetime!(2026-11-27 12:00 UTC),
            request: None,
        });
        let index = list.index();
        assert!(index.is_suppressed(Some("u"), None));
        assert!(!index.is_suppressed(Some("v"), None));
        let at = |text: &str| {
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map(unix_millis)
                .ok()
        };
        assert_eq!(
            index.router_drops(Some("u"), None, at("2026-11-27T10:00:00Z")),
            Some(DropReason::Suppressed)
        );
        assert_eq!(
            index.router_drops(Some("u"), None, at("2026-11-27T09:59:59Z")),
            None,
            "received before the suppression: still delivered"
        );
        assert_eq!(
            index.router_drops(None, Some("a"), at("2026-11-27T11:00:00Z")),
            Some(DropReason::Deleted)
        );
        assert_eq!(
            index.router_drops(None, Some("a"), at("2026-11-27T12:00:00Z")),
            None,
            "received after the deletion: a new event"
        );
        assert_eq!(
            index.router_drops_json(
                r#"{"name":"x","data":{},"anonymous_id":"a","received_at":"2026-11-27T11:30:00Z"}"#
            ),
            Some(DropReason::Deleted)
        );
        assert_eq!(index.router_drops_json("[1]"), None);
    }

    #[test]
    fn the_file_is_replaced_under_a_lock_and_reloaded() {
        let folder = tempfile::tempdir().unwrap();
        let file = SuppressionFile::in_data_dir(folder.path());
        assert_eq!(file.load().unwrap(), SuppressionList::default());
        let live = LiveSuppressions::open(file.clone()).unwrap();
        assert!(live.current().is_empty());
        let (added, list) = file
            .update(|list| {
                list.suppress(
                    Subject::AnonymousId("a".into()),
                    OffsetDateTime::now_utc(),
                    None,
                )
            })
            .unwrap();
        assert!(added);
        assert_eq!(list.suppressed.len(), 1);
        assert!(
            live.refresh().unwrap(),
            "another process's change is noticed"
        );
        assert!(live.current().is_suppressed(None, Some("a")));
        assert!(!live.refresh().unwrap());

        std::fs::write(file.path(), "{not json").unwrap();
        assert!(live.refresh().is_err());
        assert!(
            live.current().is_suppressed(None, Some("a")),
            "a broken file keeps the previous list in force"
        );
        assert!(
            file.update(|_| ()).is_err(),
            "a broken file is not overwritten"
        );
    }

    #[test]
    fn subject_sets_match_envelopes() {
        let set = SubjectSet::new(&[
            Subject::UserId("u".into()),
            Subject::AnonymousId("a".into()),
        ]);
        assert!(set.matches_json(r#"{"user_id":"u","name":"x"}"#));
        assert!(set.matches_json(r#"{"anonymous_id":"a","user_id":"other"}"#));
        assert!(!set.matches_json(r#"{"anonymous_id":"u","user_id":"a"}"#));
        assert!(!set.matches_json("not json"));
        assert_eq!(set.user_ids(), ["u"]);
    }
}
