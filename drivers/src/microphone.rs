//! ALSA capture devices (microphones), found in sysfs, each with the camera it belongs to.
//!
//! A USB camera with a microphone is one USB device with a video interface and an audio
//! interface: the sound card's and the video node's sysfs `device` links resolve to two
//! interfaces of the same USB device, which is how a microphone is matched to its camera.
//! Devices are named `hw:CARD=<id>,DEV=<n>`: the card's id is stable across reboots and USB
//! ports, where its number is not.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A capture device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Microphone {
    /// What a stream's `audio_device` takes: `hw:CARD=<id>,DEV=<n>`.
    pub device: String,
    pub card: u32,
    /// The card's ALSA id (`C920`, `PCH`).
    pub card_id: String,
    /// The USB product name when there is one, else the card's id.
    pub name: String,
    /// The camera (`/dev/videoN`) on the same USB device, when there is one.
    pub camera: Option<String>,
}

/// Lists the machine's capture devices; none when it has no sound cards.
pub fn discover() -> Vec<Microphone> {
    discover_in(Path::new("/sys/class"))
}

/// Lists the capture devices under a sysfs `class` directory (`sound/pcmC<c>D<d>c`), matched
/// to its `video4linux` nodes.
pub fn discover_in(class: &Path) -> Vec<Microphone> {
    let cameras: Vec<(u32, PathBuf)> = entries(&class.join("video4linux"))
        .into_iter()
        .filter_map(|(name, path)| {
            let n = name.strip_prefix("video")?.parse().ok()?;
            Some((n, usb_device(&path)?))
        })
        .collect();
    let mut out: Vec<Microphone> = entries(&class.join("sound"))
        .into_iter()
        .filter_map(|(name, _)| {
            let (card, dev) = name
                .strip_prefix("pcmC")?
                .strip_suffix('c')?
                .split_once('D')?;
            let (card, dev): (u32, u32) = (card.parse().ok()?, dev.parse().ok()?);
            let card_dir = class.join("sound").join(format!("card{card}"));
            let card_id = read_line(&card_dir.join("id")).unwrap_or_else(|| card.to_string());
            let usb = usb_device(&card_dir);
            let name = usb
                .as_ref()
                .and_then(|u| read_line(&u.join("product")))
                .unwrap_or_else(|| card_id.clone());
            let camera = usb.as_ref().and_then(|u| {
                cameras
                    .iter()
                    .filter(|(_, c)| c == u)
                    .map(|(n, _)| *n)
                    .min()
                    .map(|n| format!("/dev/video{n}"))
            });
            Some(Microphone {
                device: format!("hw:CARD={card_id},DEV={dev}"),
                card,
                card_id,
                name,
                camera,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.card, &a.device).cmp(&(b.card, &b.device)));
    out
}

/// The microphone of the camera at `camera` (`/dev/videoN`), when it has one.
pub fn of_camera<'a>(mics: &'a [Microphone], camera: &str) -> Option<&'a Microphone> {
    mics.iter().find(|m| m.camera.as_deref() == Some(camera))
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect()
}

fn read_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty() && line.len() <= 128).then(|| line.to_string())
}

/// The USB device a class entry's `device` link leads to: the interface's parent, when the
/// interface is a USB one (`<bus>-<port>:<config>.<interface>`).
fn usb_device(entry: &Path) -> Option<PathBuf> {
    let iface = std::fs::canonicalize(entry.join("device")).ok()?;
    let name = iface.file_name()?.to_str()?;
    let (port, _) = name.split_once(':')?;
    let parent = iface.parent()?;
    (parent.file_name()?.to_str()? == port).then(|| parent.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs `class` tree: a USB camera (video0, video1) with its microphone on card 1, a
    /// built-in sound card 0 with a capture and a playback device, and a USB microphone
    /// alone on card 2.
    fn fixture() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        let usb = root.join("devices/pci0000:00/usb1");
        for (dir, product) in [
            ("1-1", "HD Pro Webcam C920"),
            ("1-2", "Yeti Stereo Microphone"),
        ] {
            std::fs::create_dir_all(usb.join(dir)).expect("usb");
            std::fs::write(usb.join(dir).join("product"), format!("{product}\n")).expect("product");
        }
        for iface in ["1-1/1-1:1.0", "1-1/1-1:1.2", "1-2/1-2:1.0"] {
            std::fs::create_dir_all(usb.join(iface)).expect("iface");
        }
        let pci = root.join("devices/pci0000:00/0000:00:1f.3");
        std::fs::create_dir_all(&pci).expect("pci");
        let class = root.join("class");
        let link = |entry: &str, target: &Path| {
            let dir = class.join(entry);
            std::fs::create_dir_all(&dir).expect("entry");
            symlink(target, dir.join("device")).expect("symlink");
        };
        link("video4linux/video0", &usb.join("1-1/1-1:1.0"));
        link("video4linux/video1", &usb.join("1-1/1-1:1.0"));
        link("sound/card1", &usb.join("1-1/1-1:1.2"));
        link("sound/card0", &pci);
        link("sound/card2", &usb.join("1-2/1-2:1.0"));
        for (card, id) in [(0, "PCH"), (1, "C920"), (2, "Microphone")] {
            std::fs::write(
                class.join(format!("sound/card{card}/id")),
                format!("{id}\n"),
            )
            .expect("id");
        }
        for pcm in ["pcmC0D0c", "pcmC0D0p", "pcmC1D0c", "pcmC2D0c"] {
            std::fs::create_dir_all(class.join("sound").join(pcm)).expect("pcm");
        }
        t
    }

    #[test]
    fn capture_devices_are_listed_and_matched_to_their_camera() {
        let t = fixture();
        let mics = discover_in(&t.path().join("class"));
        let shown: Vec<(&str, &str, Option<&str>)> = mics
            .iter()
            .map(|m| (m.device.as_str(), m.name.as_str(), m.camera.as_deref()))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("hw:CARD=PCH,DEV=0", "PCH", None),
                (
                    "hw:CARD=C920,DEV=0",
                    "HD Pro Webcam C920",
                    Some("/dev/video0")
                ),
                ("hw:CARD=Microphone,DEV=0", "Yeti Stereo Microphone", None),
            ]
        );
        assert_eq!(
            of_camera(&mics, "/dev/video0").map(|m| m.device.as_str()),
            Some("hw:CARD=C920,DEV=0")
        );
        assert!(of_camera(&mics, "/dev/video5").is_none());
    }

    #[test]
    fn a_machine_without_sound_has_no_microphones() {
        let t = tempfile::tempdir().expect("tempdir");
        assert!(discover_in(t.path()).is_empty());
        // This machine's own: whatever it has, listing never fails.
        let _ = discover();
    }
}
