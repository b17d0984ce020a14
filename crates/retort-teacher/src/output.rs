//! Resumable JSONL output: read what a previous run wrote, drop a torn last
//! line (a kill in the middle of a write), then append whole lines, flushed
//! and fsynced per batch.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use retort_core::Example;

use crate::error::TeacherError;

/// An append-only example file.
#[derive(Debug)]
pub struct ExampleLog {
    path: PathBuf,
    file: File,
    ids: HashSet<String>,
    existing: usize,
}

impl ExampleLog {
    /// Open (or create) `path`. Every complete line must be an example; an
    /// unterminated last line is cut off (it can only come from a killed
    /// write, and its example will be produced again).
    pub fn open(path: &Path) -> Result<Self, TeacherError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| TeacherError::io(parent, e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| TeacherError::io(path, e))?;
        let mut ids = HashSet::new();
        let mut good_len: u64 = 0;
        let mut torn = false;
        {
            let mut reader = BufReader::new(&file);
            let mut line = Vec::new();
            let mut n = 0;
            loop {
                line.clear();
                let read = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| TeacherError::io(path, e))?;
                if read == 0 {
                    break;
                }
                n += 1;
                if line.last() != Some(&b'\n') {
                    torn = true;
                    break;
                }
                let text = String::from_utf8_lossy(&line);
                if !text.trim().is_empty() {
                    let ex: Example =
                        serde_json::from_str(&text).map_err(|e| TeacherError::BadLine {
                            path: path.to_path_buf(),
                            line: n,
                            message: format!("not an example ({e}); refusing to append to it"),
                        })?;
                    ids.insert(ex.id);
                }
                good_len += read as u64;
            }
        }
        if torn {
            tracing::warn!(
                "{}: cutting off an unterminated last line left by an interrupted run",
                path.display()
            );
            file.set_len(good_len)
                .map_err(|e| TeacherError::io(path, e))?;
            file.sync_all().map_err(|e| TeacherError::io(path, e))?;
        }
        file.seek(SeekFrom::End(0))
            .map_err(|e| TeacherError::io(path, e))?;
        let existing = ids.len();
        Ok(ExampleLog {
            path: path.to_path_buf(),
            file,
            ids,
            existing,
        })
    }

    /// Examples found when the file was opened.
    pub fn existing(&self) -> usize {
        self.existing
    }

    /// The ids of the examples in the file.
    pub fn ids(&self) -> &HashSet<String> {
        &self.ids
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Append the examples whose id is new, in one write, then flush and
    /// fsync. Returns how many were written.
    pub fn append(&mut self, examples: &[Example]) -> Result<usize, TeacherError> {
        let mut buf = Vec::new();
        let mut added = Vec::new();
        for ex in examples {
            if self.ids.contains(&ex.id) || added.contains(&&ex.id) {
                continue;
            }
            serde_json::to_writer(&mut buf, ex).map_err(|e| TeacherError::Config(e.to_string()))?;
            buf.push(b'\n');
            added.push(&ex.id);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let path = &self.path;
        self.file
            .write_all(&buf)
            .and_then(|()| self.file.flush())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| TeacherError::io(path, e))?;
        let n = added.len();
        for id in added {
            self.ids.insert(id.clone());
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ex(id: &str) -> Example {
        serde_json::from_value(
            json!({"id": id, "source": "t", "query": "q", "tools": [], "calls": []}),
        )
        .expect("example")
    }

    #[test]
    fn append_resume_and_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub/out.jsonl");
        let mut log = ExampleLog::open(&p).expect("open");
        assert_eq!(log.append(&[ex("a"), ex("b"), ex("a")]).expect("append"), 2);
        drop(log);
        // A torn write.
        let mut f = OpenOptions::new().append(true).open(&p).expect("reopen");
        f.write_all(b"{\"id\": \"c\", \"sou").expect("torn");
        drop(f);
        let mut log = ExampleLog::open(&p).expect("resume");
        assert_eq!(log.existing(), 2);
        assert!(log.contains("a") && log.contains("b"));
        assert_eq!(log.append(&[ex("b"), ex("c")]).expect("append"), 1);
        let text = std::fs::read_to_string(&p).expect("read");
        assert_eq!(text.lines().count(), 3);
        for l in text.lines() {
            let _: Example = serde_json::from_str(l).expect("valid line");
        }
    }

    #[test]
    fn refuses_foreign_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.jsonl");
        std::fs::write(&p, "{\"id\": \"a\", \"source\": \"t\", \"query\": \"q\", \"tools\": [], \"calls\": []}\nhello\n")
            .expect("write");
        let e = ExampleLog::open(&p).expect_err("foreign");
        assert!(e.to_string().contains(":2:"), "{e}");
    }
}
