//! What every detector shares: frames in, detections out, the letterbox between them, and
//! non-maximum suppression.

use serde::{Deserialize, Serialize};

/// An RGB frame, 3 bytes per pixel, rows `stride` bytes apart. Made only by its
/// constructors, which check that the bytes hold every row.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    width: u32,
    height: u32,
    stride: usize,
    rgb: &'a [u8],
}

impl<'a> Frame<'a> {
    /// A frame whose rows are `stride` bytes apart (a video frame's padding); `None` when
    /// `rgb` does not hold them all.
    pub fn new(width: u32, height: u32, stride: usize, rgb: &'a [u8]) -> Option<Self> {
        let row = width as usize * 3;
        let needed = (height as usize)
            .checked_sub(1)?
            .checked_mul(stride)?
            .checked_add(row)?;
        (width > 0 && stride >= row && rgb.len() >= needed).then_some(Self {
            width,
            height,
            stride,
            rgb,
        })
    }

    /// A packed frame (`stride` = 3 × `width`); `None` when `rgb` is too short.
    pub fn packed(width: u32, height: u32, rgb: &'a [u8]) -> Option<Self> {
        Self::new(width, height, width as usize * 3, rgb)
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }
}

/// A box in the source frame's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BoundingBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BoundingBox {
    pub fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    pub fn iou(&self, o: &BoundingBox) -> f32 {
        let w = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let h = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        let inter = w * h;
        let union = self.area() + o.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Detection {
    /// Index into the model's labels.
    pub class: usize,
    pub label: String,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
}

/// How a frame was fitted into the model's input: scaled by `scale`, then offset by the pads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    pub pad_x: f32,
    pub pad_y: f32,
    pub source_width: u32,
    pub source_height: u32,
}

impl Letterbox {
    pub fn fit(source_width: u32, source_height: u32, width: u32, height: u32) -> Self {
        let scale = (width as f32 / source_width as f32).min(height as f32 / source_height as f32);
        let scaled_w = (source_width as f32 * scale).round();
        let scaled_h = (source_height as f32 * scale).round();
        Self {
            scale,
            pad_x: ((width as f32 - scaled_w) / 2.0).floor(),
            pad_y: ((height as f32 - scaled_h) / 2.0).floor(),
            source_width,
            source_height,
        }
    }

    /// A box in model input pixels, in the source frame (clamped to it).
    pub fn to_source(&self, x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        let (w, h) = (self.source_width as f32, self.source_height as f32);
        let map = |v: f32, pad: f32, max: f32| ((v - pad) / self.scale).clamp(0.0, max);
        BoundingBox {
            x1: map(x1, self.pad_x, w),
            y1: map(y1, self.pad_y, h),
            x2: map(x2, self.pad_x, w),
            y2: map(y2, self.pad_y, h),
        }
    }
}

/// How a model wants its pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelFormat {
    /// Channel order red, green, blue (else blue first).
    pub rgb: bool,
    /// Multiplier of the 0–255 values (1/255 for most YOLO exports).
    pub scale: f32,
    /// The letterbox's border value (0–255).
    pub pad: u8,
}

/// The frame letterboxed into a `width`×`height` NCHW tensor (bilinear), and the fit.
pub fn letterbox(frame: &Frame, width: u32, height: u32, px: PixelFormat) -> (Vec<f32>, Letterbox) {
    let fit = Letterbox::fit(frame.width, frame.height, width, height);
    let (w, h) = (width as usize, height as usize);
    let plane = w * h;
    let mut out = vec![f32::from(px.pad) * px.scale; 3 * plane];
    let scaled_w = ((frame.width as f32 * fit.scale).round() as usize).min(w);
    let scaled_h = ((frame.height as f32 * fit.scale).round() as usize).min(h);
    let (px0, py0) = (fit.pad_x as usize, fit.pad_y as usize);
    let sx = frame.width as f32 / scaled_w.max(1) as f32;
    let sy = frame.height as f32 / scaled_h.max(1) as f32;
    let max_x = frame.width as usize - 1;
    let max_y = frame.height as usize - 1;
    let order: [usize; 3] = if px.rgb { [0, 1, 2] } else { [2, 1, 0] };
    let (red, rest) = out.split_at_mut(plane);
    let (green, blue) = rest.split_at_mut(plane);
    let planes = [red, green, blue];
    if scaled_w == frame.width as usize && scaled_h == frame.height as usize {
        // The frame fits as it is (the live tap scaled it in GStreamer): no resampling, each
        // value converted once.
        for y in 0..scaled_h {
            let row = &frame.rgb[y * frame.stride..y * frame.stride + scaled_w * 3];
            let at = (py0 + y) * w + px0;
            for (c, &src) in order.iter().enumerate() {
                let dst = &mut planes[c][at..at + scaled_w];
                for (d, p) in dst.iter_mut().zip(row.chunks_exact(3)) {
                    *d = f32::from(p[src]) * px.scale;
                }
            }
        }
        return (out, fit);
    }
    // Source columns and weights, once per column rather than once per pixel.
    let columns: Vec<(usize, usize, f32)> = (0..scaled_w)
        .map(|x| {
            let fx = ((x as f32 + 0.5) * sx - 0.5).max(0.0);
            let x0 = (fx as usize).min(max_x);
            (x0 * 3, (x0 + 1).min(max_x) * 3, fx - x0 as f32)
        })
        .collect();
    for y in 0..scaled_h {
        let fy = ((y as f32 + 0.5) * sy - 0.5).max(0.0);
        let y0 = (fy as usize).min(max_y);
        let y1 = (y0 + 1).min(max_y);
        let wy = fy - y0 as f32;
        let row0 = &frame.rgb[y0 * frame.stride..y0 * frame.stride + frame.width as usize * 3];
        let row1 = &frame.rgb[y1 * frame.stride..y1 * frame.stride + frame.width as usize * 3];
        let at = (py0 + y) * w + px0;
        for (c, &src) in order.iter().enumerate() {
            let dst = &mut planes[c][at..at + scaled_w];
            for (d, &(a, b, wx)) in dst.iter_mut().zip(&columns) {
                let top = f32::from(row0[a + src]) * (1.0 - wx) + f32::from(row0[b + src]) * wx;
                let bottom = f32::from(row1[a + src]) * (1.0 - wx) + f32::from(row1[b + src]) * wx;
                *d = (top * (1.0 - wy) + bottom * wy) * px.scale;
            }
        }
    }
    (out, fit)
}

/// A candidate before suppression, in model input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub class: usize,
    pub score: f32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl Candidate {
    fn bbox(&self) -> BoundingBox {
        BoundingBox {
            x1: self.x1,
            y1: self.y1,
            x2: self.x2,
            y2: self.y2,
        }
    }
}

/// The most candidates a frame may keep after suppression.
pub const MAX_DETECTIONS: usize = 300;

/// Per-class non-maximum suppression: best first, dropping any box overlapping a kept box of
/// its class by more than `iou`.
pub fn nms(mut candidates: Vec<Candidate>, iou: f32) -> Vec<Candidate> {
    candidates.retain(|c| c.score.is_finite() && c.x2 > c.x1 && c.y2 > c.y1);
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if kept.len() >= MAX_DETECTIONS {
            break;
        }
        if kept
            .iter()
            .all(|k| k.class != c.class || k.bbox().iou(&c.bbox()) <= iou)
        {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(class: usize, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> Candidate {
        Candidate {
            class,
            score,
            x1,
            y1,
            x2,
            y2,
        }
    }

    #[test]
    fn suppression_keeps_the_best_per_class() {
        let kept = nms(
            vec![
                cand(0, 0.6, 10.0, 10.0, 50.0, 50.0),
                cand(0, 0.9, 12.0, 12.0, 52.0, 52.0),
                cand(1, 0.5, 12.0, 12.0, 52.0, 52.0),
                cand(0, 0.7, 100.0, 100.0, 120.0, 120.0),
                cand(0, f32::NAN, 0.0, 0.0, 1.0, 1.0),
                cand(0, 0.99, 5.0, 5.0, 5.0, 9.0),
            ],
            0.45,
        );
        let scores: Vec<f32> = kept.iter().map(|c| c.score).collect();
        assert_eq!(scores, [0.9, 0.7, 0.5]);
    }

    #[test]
    fn the_letterbox_maps_boxes_back_exactly() {
        // 1280×720 into 640×640: scale 0.5, 140 px of border above and below.
        let fit = Letterbox::fit(1280, 720, 640, 640);
        assert_eq!((fit.scale, fit.pad_x, fit.pad_y), (0.5, 0.0, 140.0));
        let b = fit.to_source(100.0, 190.0, 300.0, 290.0);
        assert_eq!(
            b,
            BoundingBox {
                x1: 200.0,
                y1: 100.0,
                x2: 600.0,
                y2: 300.0
            }
        );
        // Clamped to the frame.
        assert_eq!(fit.to_source(-10.0, 0.0, 700.0, 700.0).y2, 720.0);
        assert!(
            (BoundingBox {
                x1: 0.0,
                y1: 0.0,
                x2: 2.0,
                y2: 2.0
            }
            .iou(&BoundingBox {
                x1: 1.0,
                y1: 0.0,
                x2: 3.0,
                y2: 2.0
            }) - 1.0 / 3.0)
                .abs()
                < 1e-6
        );
    }

    #[test]
    fn letterboxing_places_pixels_in_planes_with_borders() {
        // A 4×2 frame, left half red, right half blue, into 4×4: rows 1–2 carry it.
        let mut rgb = vec![0u8; 4 * 2 * 3];
        for y in 0..2 {
            for x in 0..4 {
                let p = (y * 4 + x) * 3;
                if x < 2 {
                    rgb[p] = 255
                } else {
                    rgb[p + 2] = 255
                }
            }
        }
        let frame = Frame::packed(4, 2, &rgb).expect("frame");
        assert!(Frame::packed(4, 3, &rgb).is_none(), "too few bytes");
        assert!(
            Frame::new(4, 2, 11, &rgb).is_none(),
            "a stride shorter than a row"
        );
        assert!(Frame::packed(0, 2, &rgb).is_none());
        let (t, fit) = letterbox(
            &frame,
            4,
            4,
            PixelFormat {
                rgb: true,
                scale: 1.0 / 255.0,
                pad: 114,
            },
        );
        assert_eq!(fit.pad_y, 1.0);
        let at = |c: usize, y: usize, x: usize| t[c * 16 + y * 4 + x];
        assert!((at(0, 0, 0) - 114.0 / 255.0).abs() < 1e-6, "border");
        assert_eq!(at(0, 1, 0), 1.0);
        assert_eq!(at(2, 1, 0), 0.0);
        assert_eq!(at(2, 2, 3), 1.0);
        // Blue first.
        let (t, _) = letterbox(
            &frame,
            4,
            4,
            PixelFormat {
                rgb: false,
                scale: 1.0,
                pad: 0,
            },
        );
        assert_eq!(t[16 + 4], 0.0);
        assert_eq!(t[4], 0.0, "channel 0 is blue: the left is red");
        assert_eq!(t[4 + 3], 255.0);
    }
}
