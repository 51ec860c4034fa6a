//! A status LED through the kernel's LED class (`/sys/class/leds/<name>`): a GPIO LED from the
//! device tree (`gpio-leds`), an I2C LED controller, or an input device's LED.
//!
//! The LED is found by its whole name or by its function, the part after the last `:` of the
//! class's `devicename:color:function` names, so `status` finds `pwr:green:status` and
//! `scrolllock` finds `input3::scrolllock` whatever number the input device got. Claiming it
//! detaches any kernel trigger, so what is written stays written.

use std::path::{Path, PathBuf};

/// Where the kernel lists LED class devices.
pub const CLASS_DIR: &str = "/sys/class/leds";

#[derive(Debug)]
pub struct Led {
    dir: PathBuf,
    max_brightness: u32,
}

impl Led {
    /// The LED called `wanted`, or whose function is `wanted`, in `class_dir`; none when no
    /// such LED exists (or `wanted` is empty).
    pub fn find(class_dir: &Path, wanted: &str) -> Option<Self> {
        if wanted.is_empty() {
            return None;
        }
        let mut names: Vec<String> = std::fs::read_dir(class_dir)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        // Deterministic when two LEDs share a function: the first by name.
        names.sort();
        let name = names
            .iter()
            .find(|n| n.as_str() == wanted)
            .or_else(|| names.iter().find(|n| n.rsplit(':').next() == Some(wanted)))?;
        let dir = class_dir.join(name);
        let max_brightness = std::fs::read_to_string(dir.join("max_brightness"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|m| *m > 0)
            .unwrap_or(1);
        Some(Self {
            dir,
            max_brightness,
        })
    }

    /// The LED class name (`input3::scrolllock`).
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Detaches the LED from any trigger (a heartbeat, a keyboard lock) so only this process
    /// drives it.
    pub fn claim(&self) -> std::io::Result<()> {
        std::fs::write(self.dir.join("trigger"), "none")
    }

    /// Full brightness or off.
    pub fn set(&self, on: bool) -> std::io::Result<()> {
        let value = if on { self.max_brightness } else { 0 };
        std::fs::write(self.dir.join("brightness"), value.to_string())
    }

    /// What the LED shows now, as the kernel reports it.
    pub fn is_on(&self) -> std::io::Result<bool> {
        let v = std::fs::read_to_string(self.dir.join("brightness"))?;
        Ok(v.trim().parse::<u32>().is_ok_and(|b| b > 0))
    }
}

/// A blink pattern: `(on, milliseconds)` steps played in a loop. A single step is a steady
/// state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern(pub &'static [(bool, u32)]);

impl Pattern {
    pub const OFF: Self = Self(&[(false, 1000)]);
    pub const ON: Self = Self(&[(true, 1000)]);

    /// The step shown `elapsed_ms` after the pattern began, and how long until the next.
    pub fn at(&self, elapsed_ms: u64) -> (bool, u64) {
        let period: u64 = self.0.iter().map(|(_, ms)| u64::from(*ms)).sum();
        if period == 0 {
            return (false, 1000);
        }
        let mut t = elapsed_ms % period;
        for (on, ms) in self.0 {
            let ms = u64::from(*ms);
            if t < ms {
                return (*on, ms - t);
            }
            t -= ms;
        }
        (false, 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_with(leds: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, max) in leds {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).expect("led dir");
            std::fs::write(d.join("max_brightness"), max).expect("max");
            std::fs::write(d.join("brightness"), "0").expect("brightness");
            std::fs::write(d.join("trigger"), "none [kbd-scrolllock]").expect("trigger");
        }
        dir
    }

    #[test]
    fn found_by_name_or_function_and_driven_to_its_maximum() {
        let class = class_with(&[
            ("input3::capslock", "1\n"),
            ("input3::scrolllock", "1\n"),
            ("pwr:green:status", "255\n"),
        ]);
        let led = Led::find(class.path(), "scrolllock").expect("by function");
        assert_eq!(led.name(), "input3::scrolllock");
        let led = Led::find(class.path(), "pwr:green:status").expect("by name");
        led.claim().expect("claim");
        led.set(true).expect("on");
        let written = std::fs::read_to_string(class.path().join("pwr:green:status/brightness"));
        assert_eq!(written.expect("read"), "255");
        assert!(led.is_on().expect("state"));
        led.set(false).expect("off");
        assert!(!led.is_on().expect("state"));
        let trigger = std::fs::read_to_string(class.path().join("pwr:green:status/trigger"));
        assert_eq!(trigger.expect("read"), "none");
        assert!(Led::find(class.path(), "green").is_none(), "not a function");
        assert!(Led::find(class.path(), "").is_none());
        assert!(Led::find(Path::new("/nonexistent"), "status").is_none());
    }

    #[test]
    fn a_pattern_loops_its_steps() {
        let p = Pattern(&[(true, 100), (false, 300)]);
        assert_eq!(p.at(0), (true, 100));
        assert_eq!(p.at(99), (true, 1));
        assert_eq!(p.at(100), (false, 300));
        assert_eq!(p.at(399), (false, 1));
        assert_eq!(p.at(400), (true, 100));
        assert!(Pattern::ON.at(12_345).0);
        assert_eq!(Pattern(&[]).at(5), (false, 1000));
    }
}
