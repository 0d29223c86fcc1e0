//! The backup file: one JSON object per line, the article's script's shape:
//! `{"body": "<the message body as a string>", "attributes": {name: {"DataType": "…",
//! "StringValue": "…"}}}`. `dlq backup --out FILE` appends to it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::message::Attribute;

/// One line of a backup file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupLine {
    /// The message body, as text.
    pub body: String,
    /// The message attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, Attribute>,
}

/// Appends lines to `path` and syncs it.
///
/// # Errors
/// When the file cannot be written.
pub fn append(path: &Path, lines: &[BackupLine]) -> std::io::Result<()> {
    let mut text = String::new();
    for line in lines {
        text.push_str(&serde_json::to_string(line).map_err(std::io::Error::other)?);
        text.push('\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Reads a backup file; a line that does not parse is an error naming its line number, beside
/// the good lines.
///
/// # Errors
/// When the file cannot be read.
pub fn read(path: &Path) -> std::io::Result<Vec<Result<BackupLine, String>>> {
    let file = std::fs::File::open(path)?;
    let mut lines = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        lines.push(serde_json::from_str::<BackupLine>(&line).map_err(|error| {
            format!(
                "{}:{}: not a backup line: {error}",
                path.display(),
                number + 1
            )
        }));
    }
    Ok(lines)
}
