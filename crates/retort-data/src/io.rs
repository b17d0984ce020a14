//! Reading JSON / JSONL with errors that name the file and line, and atomic
//! writing of outputs.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::DataError;

/// Read a whole JSON document. Parse errors carry serde's line number.
pub fn read_json(path: &Path) -> Result<Value, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    parse_json_doc(path, &text)
}

/// Parse a JSON document held in memory (`path` is only for messages).
pub fn parse_json_doc(path: &Path, text: &str) -> Result<Value, DataError> {
    serde_json::from_str(text).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        line: source.line(),
        source,
    })
}

/// Read a JSON-lines file: one value per non-blank line, with its 1-based
/// line number.
pub fn read_jsonl(path: &Path) -> Result<Vec<(usize, Value)>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| DataError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(&line).map_err(|source| DataError::Json {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        out.push((i + 1, v));
    }
    Ok(out)
}

/// Read a file that is either one JSON array or JSON lines, returning
/// `(line, value)` pairs (the line is 1 for every element of an array).
pub fn read_json_or_jsonl(path: &Path) -> Result<Vec<(usize, Value)>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    if text.trim_start().starts_with('[') {
        match parse_json_doc(path, &text)? {
            Value::Array(a) => Ok(a.into_iter().map(|v| (1, v)).collect()),
            _ => Err(DataError::format(path, 1, "expected a JSON array")),
        }
    } else {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v = serde_json::from_str(line).map_err(|source| DataError::Json {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })?;
            out.push((i + 1, v));
        }
        Ok(out)
    }
}

/// Write `path` atomically (temporary file, sync, rename; the folder is
/// created if needed), so a reader never sees half a file.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), DataError> {
    retort_core::fsutil::write_atomic_with(path, write).map_err(|e| DataError::io(path, e))
}

/// Write items as JSON lines, atomically.
pub fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<(), DataError> {
    write_atomic(path, |w| {
        for it in items {
            serde_json::to_writer(&mut *w, it).map_err(std::io::Error::other)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// Write one pretty JSON value, atomically.
pub fn write_json_pretty<T: Serialize>(path: &Path, value: &T) -> Result<(), DataError> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_error_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.jsonl");
        std::fs::write(&p, "{\"a\": 1}\n\n{\"a\": \n").expect("write");
        let e = read_jsonl(&p).expect_err("line 3 is broken");
        let msg = e.to_string();
        assert!(msg.contains("x.jsonl:3: invalid JSON"), "{msg}");
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub").join("o.jsonl");
        write_jsonl(&p, &[serde_json::json!({"a": 1}), serde_json::json!(2)]).expect("write");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "{\"a\":1}\n2\n");
        write_jsonl::<Value>(&p, &[]).expect("rewrite");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "");
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().expect("dir"))
            .expect("ls")
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }
}
