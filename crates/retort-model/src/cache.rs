//! The tool-encoding cache. Under the block attention mask
//! (`ModelConfig::block_mask`) a tool's encoder states depend only on its own
//! rendered tokens, so they are computed once and reused by every request
//! that renders the same tool the same way. The key is the exact token
//! sequence, so a tool rendered differently (a shortened description, say)
//! is a different entry and the cache can never change an answer.
//!
//! The same least-recently-used map holds the sentence embeddings that rank
//! tools when a catalogue does not fit into the input ([`EmbedCache`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::net::ToolBlock;

/// What a cache entry weighs, in floats.
pub trait Weigh {
    fn floats(&self) -> usize;
}

impl Weigh for ToolBlock {
    fn floats(&self) -> usize {
        ToolBlock::floats(self)
    }
}

impl Weigh for Vec<f32> {
    fn floats(&self) -> usize {
        self.len()
    }
}

/// A least-recently-used map from token sequences to what was computed
/// from them, bounded by the number of floats it holds.
#[derive(Debug)]
pub struct Lru<V> {
    inner: Mutex<Inner<V>>,
    max_floats: usize,
}

/// Rendered tool tokens to their encoder states (block-masked models).
pub type ToolCache = Lru<ToolBlock>;

/// Tokens of a query or a tool to their sentence embedding (tool ranking).
pub type EmbedCache = Lru<Vec<f32>>;

#[derive(Debug)]
struct Inner<V> {
    map: HashMap<Vec<u32>, (Arc<V>, u64)>,
    clock: u64,
    floats: usize,
    hits: u64,
    misses: u64,
}

impl<V> Default for Inner<V> {
    fn default() -> Self {
        Inner {
            map: HashMap::new(),
            clock: 0,
            floats: 0,
            hits: 0,
            misses: 0,
        }
    }
}

/// Counters of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
}

impl<V: Weigh> Lru<V> {
    /// A cache holding at most `max_bytes` of floats (0 disables it).
    pub fn new(max_bytes: usize) -> Self {
        Lru {
            inner: Mutex::new(Inner::default()),
            max_floats: max_bytes / 4,
        }
    }

    /// The cached encoding of `ids`, or `make()`'s (stored when it fits;
    /// errors are not stored).
    pub fn get_or_try_insert<E>(
        &self,
        ids: &[u32],
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
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
