//! Transcoding sessions (one per auth session id a gateway uses) and the renditions they
//! produced, kept as go-livepeer keeps them: the last [`KEPT_PER_RENDITION`] segments of each
//! rendition, all of a session dropped after [`IDLE`] without a segment or when the gateway
//! ends it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lpe_pm::Address;

/// Segments kept per rendition (go-livepeer's memory store keeps 12).
pub const KEPT_PER_RENDITION: usize = 12;
/// A session without a segment for this long ends (go-livepeer: 70 s).
pub const IDLE: Duration = Duration::from_secs(70);
/// Segments a session holds waiting while one transcodes (go-livepeer: a 4-slot queue).
pub const QUEUE: usize = 4;

pub struct Session {
    pub sender: Address,
    last_used: Instant,
    /// One segment of a session transcodes at a time.
    pub turn: Arc<tokio::sync::Mutex<()>>,
    pub waiting: Arc<std::sync::atomic::AtomicUsize>,
    renditions: HashMap<String, VecDeque<(String, Bytes)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capped;

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn live(&self) -> usize {
        self.inner.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// The session `id`, made for `sender` when new unless `max` sessions exist.
    pub fn open(
        &self,
        id: &str,
        sender: Address,
        max: usize,
    ) -> Result<
        (
            Arc<tokio::sync::Mutex<()>>,
            Arc<std::sync::atomic::AtomicUsize>,
        ),
        Capped,
    > {
        let mut all = self.inner.lock().map_err(|_| Capped)?;
        if !all.contains_key(id) && all.len() >= max {
            return Err(Capped);
        }
        let s = all.entry(id.to_string()).or_insert_with(|| Session {
            sender,
            last_used: Instant::now(),
            turn: Arc::default(),
            waiting: Arc::default(),
            renditions: HashMap::new(),
        });
        s.last_used = Instant::now();
        Ok((s.turn.clone(), s.waiting.clone()))
    }

    /// Whether `id` may start (exists, or there is room for one more).
    pub fn has_room_for(&self, id: &str, max: usize) -> bool {
        self.inner
            .lock()
            .map(|s| s.contains_key(id) || s.len() < max)
            .unwrap_or(false)
    }

    pub fn keep(&self, id: &str, rendition: &str, file: String, data: Bytes) {
        if let Ok(mut all) = self.inner.lock()
            && let Some(s) = all.get_mut(id)
        {
            let ring = s.renditions.entry(rendition.to_string()).or_default();
            ring.retain(|(f, _)| *f != file);
            ring.push_back((file, data));
            while ring.len() > KEPT_PER_RENDITION {
                ring.pop_front();
            }
        }
    }

    pub fn rendition(&self, id: &str, rendition: &str, file: &str) -> Option<Bytes> {
        let all = self.inner.lock().ok()?;
        let ring = all.get(id)?.renditions.get(rendition)?;
        ring.iter().find(|(f, _)| f == file).map(|(_, d)| d.clone())
    }

    /// Ends a session; returns its sender.
    pub fn end(&self, id: &str) -> Option<Address> {
        self.inner.lock().ok()?.remove(id).map(|s| s.sender)
    }

    /// Ends the sessions idle for longer than `idle`; returns (id, sender) of each.
    pub fn sweep(&self, idle: Duration) -> Vec<(String, Address)> {
        let Ok(mut all) = self.inner.lock() else {
            return Vec::new();
        };
        let stale: Vec<String> = all
            .iter()
            .filter(|(_, s)| s.last_used.elapsed() > idle)
            .map(|(id, _)| id.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|id| all.remove(&id).map(|s| (id, s.sender)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_counts_sessions_not_segments() {
        let s = Sessions::default();
        let a = Address::repeat_byte(1);
        assert!(s.open("one", a, 2).is_ok());
        assert!(s.open("one", a, 2).is_ok());
        assert!(s.open("two", a, 2).is_ok());
        assert_eq!(s.open("three", a, 2).err(), Some(Capped));
        assert!(s.has_room_for("two", 2));
        assert!(!s.has_room_for("three", 2));
        assert_eq!(s.end("one"), Some(a));
        assert!(s.open("three", a, 2).is_ok());
    }

    #[test]
    fn renditions_keep_the_last_twelve() {
        let s = Sessions::default();
        s.open("x", Address::ZERO, 1).expect("open");
        for seq in 0..20 {
            s.keep(
                "x",
                "P240p",
                format!("{seq}.ts"),
                Bytes::from(vec![seq as u8]),
            );
        }
        assert!(s.rendition("x", "P240p", "7.ts").is_none());
        assert_eq!(
            s.rendition("x", "P240p", "8.ts").as_deref(),
            Some(&[8u8][..])
        );
        assert_eq!(s.sweep(Duration::ZERO).len(), 1);
        assert!(s.rendition("x", "P240p", "19.ts").is_none());
    }
}
