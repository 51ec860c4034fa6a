//! YOLO output layouts, told apart by their output's shape, decoded into candidates in model
//! input pixels:
//!
//! - v8 / v11 (`[1, 4 + C, N]`): centre-size boxes, class scores, no objectness;
//! - v5 (`[1, N, 5 + C]`, N = 3 anchors × the grid cells): boxes decoded, objectness × class;
//! - YOLOX (`[1, N, 5 + C]`, N = the grid cells at strides 8/16/32): raw grid offsets and
//!   log sizes (the default export), decoded here, objectness × class.

use serde::{Deserialize, Serialize};

use crate::detect::Candidate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    V5,
    V8,
    X,
}

/// Grid cells of a `width`×`height` input at strides 8, 16 and 32.
fn cells(width: usize, height: usize) -> usize {
    [8, 16, 32].iter().map(|s| (width / s) * (height / s)).sum()
}

/// The layout and class count of an output of `shape` for an input of `width`×`height`.
pub fn layout_of(shape: &[i64], width: usize, height: usize) -> Result<(Layout, usize), String> {
    let dims: Vec<usize> = shape
        .iter()
        .map(|d| usize::try_from(*d).unwrap_or(0))
        .collect();
    let [1, a, b] = dims[..] else {
        return Err(format!("a YOLO output is [1, A, B]; this one is {shape:?}"));
    };
    if a > 4 && a < b {
        return Ok((Layout::V8, a - 4));
    }
    if b > 5 && a > b {
        let grid = cells(width, height);
        let layout = if a == grid { Layout::X } else { Layout::V5 };
        return Ok((layout, b - 5));
    }
    Err(format!(
        "output {shape:?} is none of the YOLO layouts for a {width}×{height} input ([1, 4+C, N] v8/v11, [1, N, 5+C] v5/X)"
    ))
}

/// Candidates scoring at least `min_score` from an output of `shape` in `layout`.
pub fn decode(
    layout: Layout,
    data: &[f32],
    shape: &[i64],
    width: usize,
    height: usize,
    min_score: f32,
) -> Vec<Candidate> {
    let dims: Vec<usize> = shape
        .iter()
        .map(|d| usize::try_from(*d).unwrap_or(0))
        .collect();
    let [1, a, b] = dims[..] else {
        return Vec::new();
    };
    if data.len() < a * b {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut push = |class: usize, score: f32, cx: f32, cy: f32, w: f32, h: f32| {
        if score >= min_score && w > 0.0 && h > 0.0 {
            out.push(Candidate {
                class,
                score,
                x1: cx - w / 2.0,
                y1: cy - h / 2.0,
                x2: cx + w / 2.0,
                y2: cy + h / 2.0,
            });
        }
    };
    match layout {
        Layout::V8 => {
            // Channels first: data[c * N + i].
            let n = b;
            for i in 0..n {
                let at = |c: usize| data[c * n + i];
                let (class, score) = (4..a)
                    .map(|c| (c - 4, at(c)))
                    .fold((0, f32::MIN), |best, x| if x.1 > best.1 { x } else { best });
                push(class, score, at(0), at(1), at(2), at(3));
            }
        }
        Layout::V5 | Layout::X => {
            let grid: Vec<(f32, f32, f32)> = if layout == Layout::X {
                [8usize, 16, 32]
                    .iter()
                    .flat_map(|&s| {
                        let (gw, gh) = (width / s, height / s);
                        (0..gh)
                            .flat_map(move |y| (0..gw).map(move |x| (x as f32, y as f32, s as f32)))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            for i in 0..a {
                let row = &data[i * b..(i + 1) * b];
                let objectness = row[4];
                if objectness < min_score {
                    continue;
                }
                let (class, p) =
                    row[5..]
                        .iter()
                        .enumerate()
                        .fold(
                            (0, f32::MIN),
                            |best, (c, &p)| if p > best.1 { (c, p) } else { best },
                        );
                let (cx, cy, w, h) = match grid.get(i) {
                    Some(&(gx, gy, s)) => (
                        (row[0] + gx) * s,
                        (row[1] + gy) * s,
                        row[2].exp() * s,
                        row[3].exp() * s,
                    ),
                    None => (row[0], row[1], row[2], row[3]),
                };
                push(class, objectness * p, cx, cy, w, h);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_told_apart_by_shape() {
        assert_eq!(layout_of(&[1, 84, 8400], 640, 640), Ok((Layout::V8, 80)));
        assert_eq!(layout_of(&[1, 8400, 85], 640, 640), Ok((Layout::X, 80)));
        assert_eq!(layout_of(&[1, 25200, 85], 640, 640), Ok((Layout::V5, 80)));
        assert_eq!(layout_of(&[1, 6, 2100], 320, 320), Ok((Layout::V8, 2)));
        assert!(layout_of(&[1, 1, 80, 80], 320, 320).is_err());
        assert!(layout_of(&[2, 84, 8400], 640, 640).is_err());
    }

    #[test]
    fn v8_boxes_take_their_best_class() {
        // 2 classes, 3 candidates; channels first.
        let n = 3;
        let mut d = vec![0.0f32; 6 * n];
        let set = |d: &mut Vec<f32>, i: usize, v: [f32; 6]| {
            for (c, x) in v.iter().enumerate() {
                d[c * n + i] = *x;
            }
        };
        set(&mut d, 0, [50.0, 50.0, 20.0, 10.0, 0.1, 0.8]);
        set(&mut d, 2, [10.0, 10.0, 4.0, 4.0, 0.3, 0.2]);
        let c = decode(Layout::V8, &d, &[1, 6, 3], 320, 320, 0.25);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].class, c[0].score), (1, 0.8));
        assert_eq!(
            (c[0].x1, c[0].y1, c[0].x2, c[0].y2),
            (40.0, 45.0, 60.0, 55.0)
        );
        assert_eq!(c[1].class, 0);
    }

    #[test]
    fn yolox_rows_are_decoded_on_their_grid() {
        // 64×64: 64 + 16 + 4 = 84 cells; 1 class.
        let mut d = vec![0.0f32; 84 * 6];
        // Cell 9 of stride 8 is (1, 1): centre (1.5 + 1) × 8 = 20, size e^1 × 8.
        d[9 * 6..10 * 6].copy_from_slice(&[1.5, 1.5, 1.0, 0.0, 0.9, 0.5]);
        let c = decode(Layout::X, &d, &[1, 84, 6], 64, 64, 0.25);
        assert_eq!(c.len(), 1);
        let w = 1f32.exp() * 8.0;
        assert!(
            (c[0].x1 - (20.0 - w / 2.0)).abs() < 1e-4 && (c[0].y2 - 24.0).abs() < 1e-4,
            "{c:?}"
        );
        assert!((c[0].score - 0.45).abs() < 1e-6);
        // v5 rows are already decoded: read so, this row's box has no height.
        assert!(decode(Layout::V5, &d, &[1, 84, 6], 64, 64, 0.25).is_empty());
    }

    #[test]
    fn short_or_odd_outputs_decode_to_nothing() {
        assert!(decode(Layout::V8, &[0.0; 5], &[1, 6, 3], 320, 320, 0.1).is_empty());
        assert!(decode(Layout::X, &[0.0; 5], &[1, 2, 3, 4], 320, 320, 0.1).is_empty());
    }
}
