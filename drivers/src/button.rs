//! A button through evdev (`/dev/input/event*`): boards expose theirs through `gpio-keys`, a
//! USB keypad is one too. The device is found by the name the kernel gives it; the button is
//! one key code on it (a board's `gpio-keys` often carries power and recovery keys too), or
//! any key when none is named.
//!
//! Events are read as the kernel's `struct input_event` (a `timeval`, then type, code and
//! value), fixed-size records, so a read never has to be reassembled.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Where the kernel lists input devices, and where their event nodes are.
pub const CLASS_DIR: &str = "/sys/class/input";
pub const DEV_DIR: &str = "/dev/input";

const EV_KEY: u16 = 0x01;
/// `struct input_event` on this platform: the `timeval`, then u16 type, u16 code, i32 value.
const TIMEVAL: usize = std::mem::size_of::<libc::timeval>();
const EVENT: usize = TIMEVAL + 8;

/// A key going down, repeating while held, or up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEdge {
    Down,
    Repeat,
    Up,
}

#[derive(Debug)]
pub struct Button {
    name: String,
    path: PathBuf,
    /// The key code that is the button (`KEY_*` in `linux/input-event-codes.h`); `None`: any.
    key: Option<u16>,
    file: std::fs::File,
}

impl Button {
    /// The event device whose name is `wanted` (`gpio-keys`), opened for reading, its `key`
    /// the button (`None`: any key); none when there is no such device or it cannot be opened.
    pub fn find(class_dir: &Path, dev_dir: &Path, wanted: &str, key: Option<u16>) -> Option<Self> {
        if wanted.is_empty() {
            return None;
        }
        let mut events: Vec<String> = std::fs::read_dir(class_dir)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("event"))
            .collect();
        events.sort_by_key(|n| n[5..].parse::<u32>().unwrap_or(u32::MAX));
        events.into_iter().find_map(|event| {
            let name = std::fs::read_to_string(class_dir.join(&event).join("device/name")).ok()?;
            (name.trim_end() == wanted).then_some(())?;
            let path = dev_dir.join(&event);
            let file = std::fs::File::open(&path).ok()?;
            Some(Self {
                name: wanted.to_string(),
                path,
                key,
                file,
            })
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Blocks until the button's key goes down, repeats or goes up; an error when the
    /// device went away.
    pub fn next_edge(&mut self) -> std::io::Result<KeyEdge> {
        let mut record = [0u8; EVENT];
        loop {
            self.file.read_exact(&mut record)?;
            match key_edge(&record) {
                Some((code, edge)) if self.key.is_none_or(|k| k == code) => return Ok(edge),
                _ => {}
            }
        }
    }
}

/// The key code and edge one `input_event` record carries, if it is a key event.
fn key_edge(record: &[u8; EVENT]) -> Option<(u16, KeyEdge)> {
    let kind = u16::from_ne_bytes([record[TIMEVAL], record[TIMEVAL + 1]]);
    let code = u16::from_ne_bytes([record[TIMEVAL + 2], record[TIMEVAL + 3]]);
    let value = i32::from_ne_bytes([
        record[TIMEVAL + 4],
        record[TIMEVAL + 5],
        record[TIMEVAL + 6],
        record[TIMEVAL + 7],
    ]);
    if kind != EV_KEY {
        return None;
    }
    let edge = match value {
        0 => KeyEdge::Up,
        1 => KeyEdge::Down,
        2 => KeyEdge::Repeat,
        _ => return None,
    };
    Some((code, edge))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u16, code: u16, value: i32) -> [u8; EVENT] {
        let mut r = [0u8; EVENT];
        r[TIMEVAL..TIMEVAL + 2].copy_from_slice(&kind.to_ne_bytes());
        r[TIMEVAL + 2..TIMEVAL + 4].copy_from_slice(&code.to_ne_bytes());
        r[TIMEVAL + 4..TIMEVAL + 8].copy_from_slice(&value.to_ne_bytes());
        r
    }

    #[test]
    fn the_named_device_is_found_and_its_key_edges_read() {
        let root = tempfile::tempdir().expect("tempdir");
        let (class, dev) = (root.path().join("class"), root.path().join("dev"));
        for (event, name) in [("event0", "Power Button"), ("event2", "gpio-keys")] {
            std::fs::create_dir_all(class.join(event).join("device")).expect("dir");
            std::fs::write(class.join(event).join("device/name"), format!("{name}\n"))
                .expect("name");
        }
        std::fs::create_dir_all(class.join("input7")).expect("not an event node");
        std::fs::create_dir_all(&dev).expect("dev");
        let mut bytes = Vec::new();
        // A scan code, the key down, a sync, another key (power) down and up, a repeat, the
        // key up, then the end of the device.
        for (kind, code, value) in [
            (0x04, 4, 0x1c),
            (EV_KEY, 0x198, 1),
            (0, 0, 0),
            (EV_KEY, 116, 1),
            (EV_KEY, 116, 0),
            (EV_KEY, 0x198, 2),
            (EV_KEY, 0x198, 0),
        ] {
            bytes.extend_from_slice(&record(kind, code, value));
        }
        std::fs::write(dev.join("event2"), &bytes).expect("events");
        std::fs::write(dev.join("event0"), b"").expect("events");

        // The button is one key: the power key's edges are not its.
        let mut button = Button::find(&class, &dev, "gpio-keys", Some(0x198)).expect("found");
        assert_eq!(button.path(), dev.join("event2"));
        assert_eq!(button.next_edge().expect("down"), KeyEdge::Down);
        assert_eq!(button.next_edge().expect("repeat"), KeyEdge::Repeat);
        assert_eq!(button.next_edge().expect("up"), KeyEdge::Up);
        assert!(button.next_edge().is_err(), "the device is gone");
        // Any key: the power key's edges are the button's too.
        let mut any = Button::find(&class, &dev, "gpio-keys", None).expect("found");
        let edges: Vec<KeyEdge> = std::iter::from_fn(|| any.next_edge().ok()).collect();
        assert_eq!(
            edges,
            [
                KeyEdge::Down,
                KeyEdge::Down,
                KeyEdge::Up,
                KeyEdge::Repeat,
                KeyEdge::Up
            ]
        );
        assert!(Button::find(&class, &dev, "gpio", None).is_none());
        assert!(Button::find(&class, &dev, "", None).is_none());
    }
}
