//! Files the monitor writes: the JSON Lines metrics file.
//!
//! Each record is serialized first and written with a single `write` on a file opened in
//! append mode, so a line is never interleaved or half-written by this process; the file is
//! unbuffered, so a crash or `kill -9` of the dashboard loses nothing already written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Append-only JSON Lines file.
pub struct JsonLinesSink {
    path: PathBuf,
    file: File,
}

impl JsonLinesSink {
    /// Opens (creating the directory and file if needed) for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { path: path.to_owned(), file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record as one line.
    pub fn write(&mut self, record: &Value) -> std::io::Result<()> {
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
    use serde_json::json;

    #[test]
    fn appends_whole_lines() {
        let dir = std::env::temp_dir().join(format!("capwatch-sink-{}", std::process::id()));
        let path = dir.join("nested/metrics.jsonl");
        let mut sink = JsonLinesSink::open(&path).unwrap();
        sink.write(&json!({"type": "cycle", "n": 1})).unwrap();
        sink.write(&json!({"type": "alert", "message": "line\nbreak"})).unwrap();
        drop(sink);
        let mut sink = JsonLinesSink::open(&path).unwrap();
        sink.write(&json!({"type": "cycle", "n": 2})).unwrap();
        sink.sync().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["message"], "line\nbreak");
        assert_eq!(lines[2]["n"], 2);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
