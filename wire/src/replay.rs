//! A bounded memory of what was already accepted, for refusing replays.
//!
//! Both sides of the host link use it: the enclave remembers encapsulated
//! requests it served (RFC 9458 section 6.2), the host remembers payer
//! proofs it admitted. An entry is kept until it expires (its message would
//! be refused as stale by then anyway); when full, the cache fails closed.

use std::collections::{HashMap, VecDeque};

/// The cache is full of unexpired entries: refuse until some expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Identifiers seen, each until its expiry time.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    seen: HashMap<[u8; 32], i64>,
    order: VecDeque<([u8; 32], i64)>,
}

impl ReplayCache {
    /// A cache holding at most `capacity` unexpired identifiers.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `id` at `now` until `expires` (expiry times must not
    /// decrease from one call to the next); `Ok(false)` if it was already
    /// there, `Err(Full)` if there is no room.
    pub fn insert(&mut self, id: [u8; 32], now: i64, expires: i64) -> Result<bool, Full> {
        while let Some((old, exp)) = self.order.front().copied() {
            if exp > now {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        if self.seen.contains_key(&id) {
            return Ok(false);
        }
        if self.seen.len() >= self.capacity {
            return Err(Full);
        }
        self.seen.insert(id, expires);
        self.order.push_back((id, expires));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_expiry_and_fails_closed_when_full() {
        let mut c = ReplayCache::new(2);
        assert_eq!(c.insert([1; 32], 100, 200), Ok(true));
        assert_eq!(c.insert([1; 32], 150, 250), Ok(false));
        assert_eq!(c.insert([2; 32], 150, 250), Ok(true));
        assert_eq!(c.insert([3; 32], 150, 250), Err(Full));
        assert_eq!(
            c.insert([1; 32], 201, 300),
            Ok(true),
            "expired entries are forgotten"
        );
    }
}
