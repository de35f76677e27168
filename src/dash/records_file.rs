//! The JSON Lines metrics file (`logs/service_metrics.jsonl`): appends [`Record`]s.
//!
//! Each record is serialized first and written with a single `write` on a file opened in
//! append mode, so a line is never interleaved or half-written by this process; the file is
//! unbuffered, so a crash or `kill -9` of the dashboard loses nothing already written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::record::Record;

/// Append-only JSON Lines file of records.
pub struct RecordsFile {
    path: PathBuf,
    file: File,
}

impl RecordsFile {
    /// Opens (creating the directory and file if needed) for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { path: path.to_owned(), file })
    }

    /// Every record of a metrics file, and how many lines could not be read (a line from a
    /// newer version, or not a record).
    pub fn read(path: &Path) -> std::io::Result<(Vec<Record>, usize)> {
        let text = std::fs::read_to_string(path)?;
        let mut skipped = 0;
        let records = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .filter_map(|line| serde_json::from_str(line).map_err(|_| skipped += 1).ok())
            .collect();
        Ok((records, skipped))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record as one line.
    pub fn write(&mut self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }

    /// Flushes to the OS and to disk.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dash::record::{AlertRecord, Stamp};

    #[test]
    fn appends_whole_lines() {
        let dir = std::env::temp_dir().join(format!("capwatch-records-{}", std::process::id()));
        let path = dir.join("nested/metrics.jsonl");
        let alert = |message: &str| {
            let stamp = Stamp { ts: "2026-11-26T14:00:00.000Z".to_owned(), uptime_s: 1.0, instance: None };
            let event = crate::alerts::AlertEvent {
                rule: crate::alerts::RuleKind::ErrorRate,
                severity: crate::alerts::Severity::Warning,
                transition: crate::alerts::AlertTransition::Fired,
                value: 0.2,
                threshold: 0.1,
                instance: None,
            };
            Record::Alert(AlertRecord { message: message.to_owned(), ..AlertRecord::new(stamp, &event) })
        };
        let mut file = RecordsFile::open(&path).unwrap();
        file.write(&alert("one")).unwrap();
        file.write(&alert("line\nbreak")).unwrap();
        drop(file);
        let mut file = RecordsFile::open(&path).unwrap();
        file.write(&alert("three")).unwrap();
        file.sync().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Record> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert!(matches!(&lines[1], Record::Alert(a) if a.message == "line\nbreak"));
        assert!(matches!(&lines[2], Record::Alert(a) if a.message == "three"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
