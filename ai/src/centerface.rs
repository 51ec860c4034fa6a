//! CenterFace's outputs (a heatmap, box scales and centre offsets at a quarter of the input's
//! resolution) decoded into face candidates, the way its authors' reference code does.

use crate::detect::Candidate;

/// The four outputs, each `[1, C, H/4, W/4]` row-major: heatmap (C = 1), scale (2), offset
/// (2); landmarks are not used.
pub struct Outputs<'a> {
    pub heatmap: &'a [f32],
    pub scale: &'a [f32],
    pub offset: &'a [f32],
    /// The heatmap's height and width.
    pub rows: usize,
    pub cols: usize,
}

/// Faces scoring at least `min_score`, in input pixels of a `width`×`height` input.
pub fn decode(o: &Outputs, width: f32, height: f32, min_score: f32) -> Vec<Candidate> {
    let plane = o.rows * o.cols;
    if o.heatmap.len() < plane || o.scale.len() < 2 * plane || o.offset.len() < 2 * plane {
        return Vec::new();
    }
    let mut out = Vec::new();
    for y in 0..o.rows {
        for x in 0..o.cols {
            let i = y * o.cols + x;
            let score = o.heatmap[i];
            if score <= min_score {
                continue;
            }
            let (s0, s1) = (o.scale[i].exp() * 4.0, o.scale[plane + i].exp() * 4.0);
            let (o0, o1) = (o.offset[i], o.offset[plane + i]);
            let x1 = ((x as f32 + o1 + 0.5) * 4.0 - s1 / 2.0).clamp(0.0, width);
            let y1 = ((y as f32 + o0 + 0.5) * 4.0 - s0 / 2.0).clamp(0.0, height);
            out.push(Candidate {
                class: 0,
                score,
                x1,
                y1,
                x2: (x1 + s1).min(width),
                y2: (y1 + s0).min(height),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peak_becomes_a_box_around_its_cell() {
        // 4×4 heatmap (a 16×16 input), one peak at row 1, column 2.
        let mut heatmap = vec![0.0f32; 16];
        heatmap[6] = 0.9;
        let mut scale = vec![0.0f32; 32];
        scale[6] = 2f32.ln(); // height 8
        scale[16 + 6] = 1f32.ln(); // width 4
        let offset = vec![0.0f32; 32];
        let o = Outputs {
            heatmap: &heatmap,
            scale: &scale,
            offset: &offset,
            rows: 4,
            cols: 4,
        };
        let c = decode(&o, 16.0, 16.0, 0.5);
        assert_eq!(c.len(), 1);
        // Centre ((2 + 0.5) × 4, (1 + 0.5) × 4) = (10, 6).
        assert_eq!((c[0].x1, c[0].y1, c[0].x2, c[0].y2), (8.0, 2.0, 12.0, 10.0));
        assert!(decode(&o, 16.0, 16.0, 0.95).is_empty());
        let short = Outputs {
            heatmap: &heatmap[..3],
            ..o
        };
        assert!(decode(&short, 16.0, 16.0, 0.5).is_empty());
    }
}
