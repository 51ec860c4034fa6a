//! This node as the remote transcoder of an orchestrator (`net.orchestrator_addr`): what the
//! network plane's transcoder reports as it works, and what the API, UI and MQTT show — which
//! orchestrator it serves, whether it is attached, segments and pixels done, errors.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lpe_core::events::now_ms;
use serde::Serialize;

/// Counters and state, updated by the transcoder as it works.
#[derive(Debug, Default)]
pub struct TranscoderStats {
    attached: AtomicBool,
    segments: AtomicU64,
    pixels: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicU64,
    text: Mutex<Text>,
}

#[derive(Debug, Default, Clone)]
struct Text {
    orchestrator: String,
    capacity: i64,
    attached_ms: Option<u64>,
    last_error: Option<String>,
    last_error_ms: Option<u64>,
}

/// The transcoder as the API, UI and MQTT show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TranscoderView {
    /// `host:port` of the orchestrator served.
    pub orchestrator: String,
    /// Registered and receiving tasks now.
    pub attached: bool,
    /// When it last attached, milliseconds since the Unix epoch.
    pub attached_ms: Option<u64>,
    /// Sessions offered to the orchestrator.
    pub capacity: i64,
    /// Tasks being worked on now.
    pub in_flight: u64,
    /// Tasks whose renditions were posted, and their pixels, since the node started.
    pub segments: u64,
    pub pixels: u64,
    /// Tasks that failed, and attachments that were refused or lost.
    pub errors: u64,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
}

/// Counts a task as in flight until dropped.
pub struct InFlight<'a>(&'a TranscoderStats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TranscoderStats {
    fn text(&self) -> std::sync::MutexGuard<'_, Text> {
        self.text.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registered with `orchestrator`, offering `capacity` sessions.
    pub fn attached(&self, orchestrator: &str, capacity: i64) {
        let mut t = self.text();
        t.orchestrator = orchestrator.to_string();
        t.capacity = capacity;
        t.attached_ms = Some(now_ms());
        self.attached.store(true, Ordering::Relaxed);
    }

    /// The attachment was refused or lost (`why`); the transcoder retries with backoff.
    pub fn detached(&self, orchestrator: &str, why: &str) {
        self.attached.store(false, Ordering::Relaxed);
        let mut t = self.text();
        t.orchestrator = orchestrator.to_string();
        self.error(&mut t, why);
    }

    fn error(&self, t: &mut Text, why: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        t.last_error = Some(why.to_string());
        t.last_error_ms = Some(now_ms());
    }

    /// A task begins; it counts as in flight until the guard is dropped.
    pub fn task(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// A task's renditions were transcoded, `pixels` in all.
    pub fn done(&self, pixels: u64) {
        self.segments.fetch_add(1, Ordering::Relaxed);
        self.pixels.fetch_add(pixels, Ordering::Relaxed);
    }

    /// A task failed.
    pub fn failed(&self, why: &str) {
        let mut t = self.text();
        self.error(&mut t, why);
    }

    pub fn view(&self) -> TranscoderView {
        let t = self.text().clone();
        TranscoderView {
            orchestrator: t.orchestrator,
            attached: self.attached.load(Ordering::Relaxed),
            attached_ms: t.attached_ms,
            capacity: t.capacity,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            segments: self.segments.load(Ordering::Relaxed),
            pixels: self.pixels.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            last_error: t.last_error,
            last_error_ms: t.last_error_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tasks_and_keeps_the_last_error() {
        let s = TranscoderStats::default();
        s.attached("o:8935", 2);
        {
            let _a = s.task();
            let _b = s.task();
            assert_eq!(s.view().in_flight, 2);
            s.done(100);
            s.failed("decode failed");
        }
        s.detached("o:8935", "the task stream failed");
        let v = s.view();
        assert_eq!(v.in_flight, 0);
        assert_eq!((v.segments, v.pixels, v.errors), (1, 100, 2));
        assert!(!v.attached);
        assert_eq!(v.capacity, 2);
        assert_eq!(v.last_error.as_deref(), Some("the task stream failed"));
    }
}
