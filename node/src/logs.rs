//! Logging: the system journal (natively, with priorities, when systemd runs the node; stderr
//! otherwise), a ring of recent lines for the UI's log viewer, and a level that can be changed
//! while the node runs (UI, API, MQTT).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Lines kept for the log viewer.
const KEPT_LINES: usize = 2000;

/// The most recent log lines, without colour codes.
#[derive(Default)]
pub struct LogRing {
    lines: Mutex<VecDeque<String>>,
}

impl LogRing {
    pub fn push(&self, line: &str) {
        if let Ok(mut l) = self.lines.lock() {
            if l.len() == KEPT_LINES {
                l.pop_front();
            }
            l.push_back(line.trim_end().to_string());
        }
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        self.lines
            .lock()
            .map(|l| l.iter().skip(l.len().saturating_sub(n)).cloned().collect())
            .unwrap_or_default()
    }
}

struct RingWriter(Arc<LogRing>);

impl Write for RingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for line in String::from_utf8_lossy(buf).lines() {
            self.0.push(line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The running log configuration: its ring and its level.
pub struct LogControl {
    pub ring: Arc<LogRing>,
    level: Mutex<String>,
    reload: Option<reload::Handle<EnvFilter, Registry>>,
}

impl LogControl {
    /// Installs the global subscriber (once per process).
    pub fn init(level: &str) -> Arc<Self> {
        let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
        let (filter, handle) = reload::Layer::new(filter);
        let ring = Arc::new(LogRing::default());
        let for_ring = Arc::clone(&ring);
        // Under systemd (stderr is a journal stream) entries keep their priority, so a
        // warning — the first-boot setup code among them — reaches the console.
        let journal =
            std::env::var_os("JOURNAL_STREAM").and_then(|_| tracing_journald::layer().ok());
        // stdout carries command output (JSON); logs go to stderr.
        let stderr = journal
            .is_none()
            .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
        let installed = tracing_subscriber::registry()
            .with(filter)
            .with(journal)
            .with(stderr)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || RingWriter(Arc::clone(&for_ring))),
            )
            .try_init()
            .is_ok();
        Arc::new(Self {
            ring,
            level: Mutex::new(level.to_string()),
            reload: installed.then_some(handle),
        })
    }

    /// A control that changes nothing global.
    #[cfg(test)]
    pub fn detached(level: &str) -> Arc<Self> {
        Arc::new(Self {
            ring: Arc::default(),
            level: Mutex::new(level.to_string()),
            reload: None,
        })
    }

    pub fn level(&self) -> String {
        self.level.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Sets the level (`error` … `trace`, or a filter directive such as `info,livepeer_edge=debug`).
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let filter = parse_level(level)?;
        if let Some(h) = &self.reload {
            h.reload(filter).map_err(|e| e.to_string())?;
        }
        if let Ok(mut l) = self.level.lock() {
            *l = level.to_string();
        }
        Ok(())
    }
}

/// A log level or filter directive, or why it is not one.
pub fn parse_level(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(level)
        .map_err(|_| format!("'{level}' is not a level; allowed: error, warn, info, debug, trace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_lines() {
        let ring = LogRing::default();
        for i in 0..(KEPT_LINES + 5) {
            ring.push(&format!("line {i}\n"));
        }
        let tail = ring.tail(2);
        assert_eq!(
            tail,
            vec![
                format!("line {}", KEPT_LINES + 3),
                format!("line {}", KEPT_LINES + 4)
            ]
        );
        assert_eq!(ring.tail(usize::MAX).len(), KEPT_LINES);
    }

    #[test]
    fn levels_are_checked() {
        let c = LogControl::detached("info");
        assert!(c.set_level("debug").is_ok());
        assert_eq!(c.level(), "debug");
        assert!(c.set_level("loud=[").is_err());
        assert_eq!(c.level(), "debug");
    }
}
