//! LM75-style I2C temperature sensors (LM75, LM75B, TMP75, DS75 and their kin) through
//! `/dev/i2c-*`: register 0 holds the temperature, most significant byte first, in 1/256 °C
//! steps of which the sensor fills the top 9 to 12 bits.
//!
//! The register is read with an SMBus word read, which every adapter offers (plain I2C
//! transfers are not: SMBus-only controllers and `i2c-stub` lack them). SMBus words arrive
//! least significant byte first, so the bytes are swapped.

use std::path::{Path, PathBuf};

use linux_embedded_hal::I2cdev;
use linux_embedded_hal::i2cdev::core::I2CDevice;

/// Where the kernel names its I2C adapters.
pub const CLASS_DIR: &str = "/sys/class/i2c-dev";

/// One configured sensor: `<adapter>@<address>`, the adapter by its device node
/// (`/dev/i2c-1`) or by the name the kernel gives it (`SMBus I801 adapter at f000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorSpec {
    pub adapter: String,
    pub address: u16,
}

impl std::str::FromStr for SensorSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (adapter, address) = s
            .rsplit_once('@')
            .ok_or_else(|| format!("'{s}' is not <adapter>@<address>"))?;
        let address = address.trim();
        let parsed = match address.strip_prefix("0x") {
            Some(hex) => u16::from_str_radix(hex, 16),
            None => address.parse(),
        };
        let address = parsed
            .ok()
            .filter(|a| (0x03..=0x77).contains(a))
            .ok_or_else(|| format!("'{address}' is not a 7-bit I2C address (0x03 to 0x77)"))?;
        let adapter = adapter.trim();
        if adapter.is_empty() {
            return Err(format!("'{s}' names no adapter"));
        }
        Ok(Self {
            adapter: adapter.to_string(),
            address,
        })
    }
}

impl std::fmt::Display for SensorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{:#04x}", self.adapter, self.address)
    }
}

/// The device node of `adapter`: itself when it is a path, else the adapter of that name in
/// `class_dir`.
pub fn adapter_node(class_dir: &Path, adapter: &str) -> Option<PathBuf> {
    if adapter.starts_with('/') {
        return Some(PathBuf::from(adapter));
    }
    let mut nodes: Vec<String> = std::fs::read_dir(class_dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    nodes.sort();
    nodes
        .into_iter()
        .find(|n| {
            std::fs::read_to_string(class_dir.join(n).join("name"))
                .is_ok_and(|name| name.trim_end() == adapter)
        })
        .map(|n| Path::new("/dev").join(n))
}

/// Reads the sensor once, in °C.
pub fn read_celsius(class_dir: &Path, spec: &SensorSpec) -> Result<f32, String> {
    let node = adapter_node(class_dir, &spec.adapter)
        .ok_or_else(|| format!("no I2C adapter '{}'", spec.adapter))?;
    let mut dev = I2cdev::new(&node).map_err(|e| format!("{}: {e}", node.display()))?;
    dev.set_slave_address(spec.address)
        .map_err(|e| format!("{spec}: {e}"))?;
    let word = dev
        .smbus_read_word_data(0)
        .map_err(|e| format!("{spec}: {e}"))?;
    Ok(celsius(word))
}

/// The temperature an SMBus word read of register 0 returned.
pub fn celsius(smbus_word: u16) -> f32 {
    let register = smbus_word.swap_bytes() as i16;
    // The top 11 bits (LM75B's resolution; a 9-bit LM75 reads its unused bits as 0).
    f32::from(register >> 5) * 0.125
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_words_are_degrees() {
        // LM75 datasheet examples, as the SMBus word (LSB first) carries them.
        for (register, expected) in [
            (0x1900u16, 25.0f32),
            (0x7D00, 125.0),
            (0x0080, 0.5),
            (0x0000, 0.0),
            (0xFF80, -0.5),
            (0xE700, -25.0),
            (0xC900, -55.0),
            (0x1920, 25.125),
        ] {
            assert_eq!(celsius(register.swap_bytes()), expected, "{register:#06x}");
        }
    }

    #[test]
    fn specs_parse_and_name_adapters() {
        let s: SensorSpec = "/dev/i2c-1@0x48".parse().expect("path");
        assert_eq!((s.adapter.as_str(), s.address), ("/dev/i2c-1", 0x48));
        assert_eq!(s.to_string(), "/dev/i2c-1@0x48");
        let s: SensorSpec = "SMBus stub driver@73".parse().expect("name");
        assert_eq!((s.adapter.as_str(), s.address), ("SMBus stub driver", 73));
        for bad in ["/dev/i2c-1", "@0x48", "/dev/i2c-1@0x80", "/dev/i2c-1@x"] {
            assert!(bad.parse::<SensorSpec>().is_err(), "{bad}");
        }

        let class = tempfile::tempdir().expect("tempdir");
        for (node, name) in [
            ("i2c-0", "SMBus I801 adapter"),
            ("i2c-1", "SMBus stub driver"),
        ] {
            std::fs::create_dir_all(class.path().join(node)).expect("dir");
            std::fs::write(class.path().join(node).join("name"), format!("{name}\n"))
                .expect("name");
        }
        assert_eq!(
            adapter_node(class.path(), "SMBus stub driver"),
            Some(PathBuf::from("/dev/i2c-1"))
        );
        assert_eq!(adapter_node(class.path(), "nothing"), None);
        let missing = SensorSpec {
            adapter: "nothing".into(),
            address: 0x48,
        };
        assert!(read_celsius(class.path(), &missing).is_err());
    }
}
