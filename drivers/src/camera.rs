//! V4L2 camera discovery and format negotiation.
//!
//! Discovery opens each `/dev/video*` node, keeps the ones that can capture video, and lists
//! the pixel formats, frame sizes and frame rates they offer. Negotiation picks the format the
//! node should ask for, preferring compressed formats that save USB bandwidth and decode work.

use std::path::{Path, PathBuf};

use serde::Serialize;
use v4l::Device;
use v4l::capability::Flags;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::video::Capture;

/// Errors from probing one camera.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("camera device {0} does not exist")]
    NotFound(String),
    #[error("cannot open camera device {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a video capture device")]
    NotCapture(String),
}

/// The pixel formats the node can ingest from a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    H264,
    Mjpeg,
    Yuyv,
}

impl PixelFormat {
    fn from_fourcc(fourcc: &[u8; 4]) -> Option<Self> {
        match fourcc {
            b"H264" => Some(Self::H264),
            b"MJPG" | b"JPEG" => Some(Self::Mjpeg),
            b"YUYV" => Some(Self::Yuyv),
            _ => None,
        }
    }

    /// Preference when several formats offer the wanted size: compressed first.
    fn rank(self) -> u8 {
        match self {
            Self::H264 => 0,
            Self::Mjpeg => 1,
            Self::Yuyv => 2,
        }
    }
}

/// One frame size a format offers, with the frame rates (frames per second, as num/den).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FrameMode {
    pub width: u32,
    pub height: u32,
    pub fps: Vec<(u32, u32)>,
}

/// One pixel format of a camera.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CameraFormat {
    pub fourcc: String,
    /// `None` for a format the node cannot ingest (it is still listed for the operator).
    pub format: Option<PixelFormat>,
    pub description: String,
    pub modes: Vec<FrameMode>,
}

/// A capture device and what it offers.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CameraInfo {
    pub path: String,
    pub name: String,
    pub driver: String,
    pub bus: String,
    pub formats: Vec<CameraFormat>,
}

/// What the node should ask a camera for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Negotiated {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub fps_num: u32,
    pub fps_den: u32,
}

/// Sizes tried inside a stepwise (continuous) frame-size range.
const COMMON_SIZES: &[(u32, u32)] = &[
    (3840, 2160),
    (1920, 1080),
    (1280, 720),
    (1024, 576),
    (854, 480),
    (640, 480),
    (640, 360),
    (320, 240),
];

/// Lists every video capture device under `/dev`. Devices that cannot be opened are skipped;
/// a machine without cameras yields an empty list.
pub fn discover() -> Vec<CameraInfo> {
    discover_in(Path::new("/dev"))
}

/// Lists the capture devices among the `video*` nodes of `dir`.
pub fn discover_in(dir: &Path) -> Vec<CameraInfo> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("video"))
        })
        .collect();
    paths.sort();
    paths.iter().filter_map(|p| probe(p).ok()).collect()
}

/// Opens one device and lists what it offers.
pub fn probe(path: &Path) -> Result<CameraInfo, CameraError> {
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(CameraError::NotFound(shown));
    }
    let dev = Device::with_path(path).map_err(|source| CameraError::Open {
        path: shown.clone(),
        source,
    })?;
    let caps = dev.query_caps().map_err(|source| CameraError::Open {
        path: shown.clone(),
        source,
    })?;
    if !caps.capabilities.contains(Flags::VIDEO_CAPTURE) {
        return Err(CameraError::NotCapture(shown));
    }
    let mut formats = Vec::new();
    for desc in Capture::enum_formats(&dev).unwrap_or_default() {
        let modes = modes_of(&dev, desc.fourcc);
        formats.push(CameraFormat {
            fourcc: String::from_utf8_lossy(&desc.fourcc.repr).into_owned(),
            format: PixelFormat::from_fourcc(&desc.fourcc.repr),
            description: desc.description,
            modes,
        });
    }
    Ok(CameraInfo {
        path: shown,
        name: caps.card,
        driver: caps.driver,
        bus: caps.bus,
        formats,
    })
}

fn modes_of(dev: &Device, fourcc: v4l::FourCC) -> Vec<FrameMode> {
    let mut sizes: Vec<(u32, u32)> = Vec::new();
    for fs in Capture::enum_framesizes(dev, fourcc).unwrap_or_default() {
        match fs.size {
            FrameSizeEnum::Discrete(d) => sizes.push((d.width, d.height)),
            FrameSizeEnum::Stepwise(s) => {
                for &(w, h) in COMMON_SIZES {
                    if (s.min_width..=s.max_width).contains(&w)
                        && (s.min_height..=s.max_height).contains(&h)
                    {
                        sizes.push((w, h));
                    }
                }
            }
        }
    }
    sizes.dedup();
    sizes
        .into_iter()
        .map(|(width, height)| {
            let mut fps = Vec::new();
            for fi in Capture::enum_frameintervals(dev, fourcc, width, height).unwrap_or_default() {
                match fi.interval {
                    // An interval of n/d seconds is a rate of d/n frames per second.
                    FrameIntervalEnum::Discrete(f) if f.numerator > 0 => {
                        fps.push((f.denominator, f.numerator))
                    }
                    FrameIntervalEnum::Stepwise(s) if s.min.numerator > 0 => {
                        fps.push((s.min.denominator, s.min.numerator))
                    }
                    _ => {}
                }
            }
            FrameMode { width, height, fps }
        })
        .collect()
}

/// Chooses a format, size and rate for a wanted size and rate.
///
/// The mode closest to the wanted size (by pixel count, never preferring a larger one when an
/// exact match exists) wins; among equal sizes H.264 beats MJPEG beats YUYV. The rate is the
/// offered rate closest to the wanted one. Returns `None` when no ingestible format exists.
pub fn negotiate(info: &CameraInfo, width: u32, height: u32, fps: u32) -> Option<Negotiated> {
    let want_px = u64::from(width) * u64::from(height);
    let mut best: Option<(u64, u8, Negotiated)> = None;
    for f in &info.formats {
        let Some(format) = f.format else { continue };
        for m in &f.modes {
            let px = u64::from(m.width) * u64::from(m.height);
            let distance = px.abs_diff(want_px);
            let (fps_num, fps_den) = m
                .fps
                .iter()
                .copied()
                .min_by_key(|&(n, d)| {
                    let rate = f64::from(n) / f64::from(d.max(1));
                    ((rate - f64::from(fps)).abs() * 1000.0) as u64
                })
                .unwrap_or((fps, 1));
            let cand = Negotiated {
                format,
                width: m.width,
                height: m.height,
                fps_num,
                fps_den,
            };
            let key = (distance, format.rank());
            if best.as_ref().is_none_or(|(d, r, _)| key < (*d, *r)) {
                best = Some((key.0, key.1, cand));
            }
        }
    }
    best.map(|(_, _, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(formats: Vec<CameraFormat>) -> CameraInfo {
        CameraInfo {
            path: "/dev/video0".into(),
            name: "test".into(),
            driver: "uvcvideo".into(),
            bus: "usb".into(),
            formats,
        }
    }

    fn fmt(format: PixelFormat, modes: &[(u32, u32)]) -> CameraFormat {
        CameraFormat {
            fourcc: "XXXX".into(),
            format: Some(format),
            description: String::new(),
            modes: modes
                .iter()
                .map(|&(width, height)| FrameMode {
                    width,
                    height,
                    fps: vec![(30, 1), (15, 1)],
                })
                .collect(),
        }
    }

    #[test]
    fn prefers_compressed_format_at_the_same_size() {
        let c = cam(vec![
            fmt(PixelFormat::Yuyv, &[(1280, 720), (640, 480)]),
            fmt(PixelFormat::Mjpeg, &[(1280, 720)]),
        ]);
        let n = negotiate(&c, 1280, 720, 30).expect("a mode");
        assert_eq!(n.format, PixelFormat::Mjpeg);
        assert_eq!(
            (n.width, n.height, n.fps_num, n.fps_den),
            (1280, 720, 30, 1)
        );
    }

    #[test]
    fn picks_the_closest_size_and_rate() {
        let c = cam(vec![fmt(PixelFormat::Yuyv, &[(1920, 1080), (640, 480)])]);
        let n = negotiate(&c, 800, 600, 12).expect("a mode");
        assert_eq!((n.width, n.height), (640, 480));
        assert_eq!((n.fps_num, n.fps_den), (15, 1));
    }

    #[test]
    fn no_ingestible_format_gives_none() {
        let mut f = fmt(PixelFormat::Yuyv, &[(640, 480)]);
        f.format = None;
        assert!(negotiate(&cam(vec![f]), 640, 480, 30).is_none());
    }

    #[test]
    fn missing_device_is_a_clear_error() {
        let err = probe(Path::new("/dev/video-does-not-exist")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn discovery_in_an_empty_dir_is_empty() {
        let dir = std::env::temp_dir().join(format!("lpe-cam-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        assert!(discover_in(&dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
