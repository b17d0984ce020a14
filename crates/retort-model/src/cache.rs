//! The tool-encoding cache. Under the block attention mask
//! (`ModelConfig::block_mask`) a tool's encoder states depend only on its own
//! rendered tokens, so they are computed once and reused by every request
//! that renders the same tool the same way. The key is the exact token
//! sequence, so a tool rendered differently (a shortened description, say)
//! is a different entry and the cache can never change an answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::net::ToolBlock;

/// A least-recently-used map from rendered tool tokens to their encodings,
/// bounded by the number of floats it holds.
#[derive(Debug)]
pub struct ToolCache {
    inner: Mutex<Inner>,
    max_floats: usize,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Vec<u32>, (Arc<ToolBlock>, u64)>,
    clock: u64,
    floats: usize,
    hits: u64,
    misses: u64,
}

/// Counters of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
}

impl ToolCache {
    /// A cache holding at most `max_bytes` of encoder states (0 disables it).
    pub fn new(max_bytes: usize) -> Self {
        ToolCache {
            inner: Mutex::new(Inner::default()),
            max_floats: max_bytes / 4,
        }
    }

    /// The cached encoding of `ids`, or `make()`'s (stored when it fits;
    /// errors are not stored).
    pub fn get_or_try_insert<E>(
        &self,
        ids: &[u32],
        make: impl FnOnce() -> Result<ToolBlock, E>,
    ) -> Result<Arc<ToolBlock>, E> {
        if let Ok(mut g) = self.inner.lock() {
            g.clock += 1;
            let now = g.clock;
            if let Some(e) = g.map.get_mut(ids) {
                e.1 = now;
                let b = e.0.clone();
                g.hits += 1;
                return Ok(b);
            }
            g.misses += 1;
        }
        // Encode outside the lock: other requests go on meanwhile.
        let block = Arc::new(make()?);
        let n = block.floats();
        if n > self.max_floats {
            return Ok(block);
        }
        if let Ok(mut g) = self.inner.lock() {
            while g.floats + n > self.max_floats {
                let Some(oldest) = g
                    .map
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some((b, _)) = g.map.remove(&oldest) {
                    g.floats = g.floats.saturating_sub(b.floats());
                }
            }
            g.clock += 1;
            let now = g.clock;
            if let Some((old, _)) = g.map.insert(ids.to_vec(), (block.clone(), now)) {
                g.floats = g.floats.saturating_sub(old.floats());
            }
            g.floats += n;
        }
        Ok(block)
    }

    pub fn stats(&self) -> CacheStats {
        match self.inner.lock() {
            Ok(g) => CacheStats {
                entries: g.map.len(),
                bytes: g.floats * 4,
                hits: g.hits,
                misses: g.misses,
            },
            Err(_) => CacheStats::default(),
        }
    }

    pub fn clear(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.map.clear();
            g.floats = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Tensor};

    impl ToolCache {
        fn get_or_insert(&self, ids: &[u32], make: impl FnOnce() -> ToolBlock) -> Arc<ToolBlock> {
            match self.get_or_try_insert(ids, || Ok::<_, std::convert::Infallible>(make())) {
                Ok(b) => b,
                Err(never) => match never {},
            }
        }
    }

    fn block(len: usize) -> ToolBlock {
        let device = Device::flex();
        ToolBlock {
            kv: vec![(vec![0.0; len * 4], vec![0.0; len * 4])],
            out: Tensor::zeros([1, len, 4], &device),
            len,
        }
    }

    #[test]
    fn hits_misses_and_eviction_by_size() {
        // Each block of 2 tokens holds 2 * 4 * 3 = 24 floats = 96 bytes.
        let c = ToolCache::new(200);
        let mut made = 0;
        let _ = c.get_or_insert(&[1, 2], || {
            made += 1;
            block(2)
        });
        let _ = c.get_or_insert(&[1, 2], || {
            made += 1;
            block(2)
        });
        assert_eq!(made, 1);
        let _ = c.get_or_insert(&[3, 4], || block(2));
        // Touch [1, 2] so [3, 4] is the oldest, then a third entry evicts it.
        let _ = c.get_or_insert(&[1, 2], || block(2));
        let _ = c.get_or_insert(&[5, 6], || block(2));
        let s = c.stats();
        assert_eq!(s.entries, 2);
        assert!(s.bytes <= 200);
        assert_eq!((s.hits, s.misses), (2, 3));
        let mut remade = false;
        let _ = c.get_or_insert(&[3, 4], || {
            remade = true;
            block(2)
        });
        assert!(remade, "the least recently used entry was evicted");
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let c = ToolCache::new(0);
        let _ = c.get_or_insert(&[1], || block(1));
        assert_eq!(c.stats().entries, 0);
    }
}
