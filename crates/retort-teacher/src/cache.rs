//! A content-addressed cache of teacher responses: the key is the SHA-256 of
//! the protocol, the model and the exact request body; the value is the
//! response body. A re-run pays for nothing twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::TeacherError;

/// Responses stored as `DIR/ab/abcdef….json`.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache in `dir` (created if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, TeacherError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| TeacherError::io(&dir, e))?;
        Ok(Cache { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of a request: hex SHA-256 of `namespace`, a newline and the body.
    pub fn key(namespace: &str, body: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(namespace.as_bytes());
        h.update(b"\n");
        h.update(body);
        hex::encode(h.finalize())
    }

    fn path(&self, key: &str) -> PathBuf {
        let shard = key.get(..2).unwrap_or("00");
        self.dir.join(shard).join(format!("{key}.json"))
    }

    /// The stored response, if any. A damaged entry (a crash while writing
    /// cannot cause one, but a disk can) is treated as missing.
    pub fn get(&self, key: &str) -> Option<Value> {
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("ignoring damaged cache entry {}: {e}", path.display());
                None
            }
        }
    }

    /// Store a response: written to a temporary file, synced, then renamed
    /// into place, so an entry is either whole or absent.
    pub fn put(&self, key: &str, value: &Value) -> Result<(), TeacherError> {
        let path = self.path(key);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| TeacherError::io(&parent, e))?;
        let tmp = parent.join(format!(
            ".{key}.{}.{}.tmp",
            std::process::id(),
            rand::random::<u32>()
        ));
        let bytes = serde_json::to_vec(value).map_err(|e| TeacherError::Config(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            TeacherError::io(&path, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roundtrip_and_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Cache::open(dir.path().join("c")).expect("open");
        let k = Cache::key("openai\ngpt", b"{\"a\":1}");
        assert_eq!(k.len(), 64);
        assert_ne!(k, Cache::key("gemini\ngpt", b"{\"a\":1}"));
        assert_eq!(c.get(&k), None);
        c.put(&k, &json!({"ok": true})).expect("put");
        assert_eq!(c.get(&k), Some(json!({"ok": true})));
        std::fs::write(c.path(&k), b"{trunc").expect("damage");
        assert_eq!(c.get(&k), None);
    }
}
