//! What a stream asks of the AI plane: object detection (model, rate, labels, zones) and
//! privacy mode. Coordinates are normalised to the picture (0 to 1, from the top left), so a
//! zone drawn on a snapshot holds whatever size the source or a rendition has.

use serde::{Deserialize, Serialize};

use super::SpecError;

pub const MAX_ZONES: usize = 16;
pub const MAX_ZONE_POINTS: usize = 32;
pub const MAX_LABELS: usize = 100;
pub const MAX_FPS: u32 = 30;
/// The longest an object must be seen before it counts (10 minutes).
pub const MAX_MIN_DURATION_MS: u32 = 600_000;

fn default_fps() -> u32 {
    5
}

fn default_min_duration_ms() -> u32 {
    1000
}

/// Object detection on a stream's pictures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// The model that finds objects (an id of `GET /api/ai`'s models); absent: no detection.
    #[serde(default)]
    pub model: Option<String>,
    /// Pictures looked at per second (1 to 30). Privacy mode looks at this many too.
    #[serde(default = "default_fps")]
    #[schema(default = 5, minimum = 1, maximum = 30)]
    pub fps: u32,
    /// The labels reported (`person`, `car`…); empty: every label the model knows.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub labels: Vec<String>,
    /// Detections scoring below this are ignored; absent: the model's own threshold.
    #[serde(default)]
    pub min_score: Option<f32>,
    /// Where objects count; empty: everywhere. An object is in a zone when the middle of its
    /// box's bottom edge (where a person stands) is.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub zones: Vec<Zone>,
    /// How long an object must be seen (in a zone, when there are zones) before it is an
    /// event, in milliseconds.
    #[serde(default = "default_min_duration_ms")]
    #[schema(default = 1000, maximum = 600000)]
    pub min_duration_ms: u32,
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        Self {
            model: None,
            fps: default_fps(),
            labels: Vec::new(),
            min_score: None,
            zones: Vec::new(),
            min_duration_ms: default_min_duration_ms(),
        }
    }
}

/// A polygon on the picture, in normalised coordinates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    /// 3 to 32 corners, `[x, y]` each from 0 to 1.
    #[schema(min_items = 3, max_items = 32)]
    pub points: Vec<[f32; 2]>,
}

/// What leaves the box.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpec {
    /// Faces are blurred in every rendition and snapshot before they leave the box. Fails
    /// closed: while faces cannot be looked for, the pictures are blanked.
    #[serde(default)]
    pub blur_faces: bool,
}

impl AnalysisSpec {
    pub fn enabled(&self) -> bool {
        self.model.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), SpecError> {
        if let Some(m) = &self.model
            && (m.is_empty()
                || m.len() > 64
                || !m
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(SpecError::new("ai.model", "is not a model id"));
        }
        if !(1..=MAX_FPS).contains(&self.fps) {
            return Err(SpecError::new(
                "ai.fps",
                format!("must be from 1 to {MAX_FPS}"),
            ));
        }
        if self.labels.len() > MAX_LABELS
            || self
                .labels
                .iter()
                .any(|l| l.trim().is_empty() || l.len() > 64)
        {
            return Err(SpecError::new(
                "ai.labels",
                format!("at most {MAX_LABELS} labels of 1 to 64 characters"),
            ));
        }
        if let Some(s) = self.min_score
            && !(s > 0.0 && s <= 1.0)
        {
            return Err(SpecError::new(
                "ai.min_score",
                "must be above 0 and at most 1",
            ));
        }
        if self.min_duration_ms > MAX_MIN_DURATION_MS {
            return Err(SpecError::new(
                "ai.min_duration_ms",
                format!("must be at most {MAX_MIN_DURATION_MS}"),
            ));
        }
        if self.zones.len() > MAX_ZONES {
            return Err(SpecError::new(
                "ai.zones",
                format!("at most {MAX_ZONES} zones"),
            ));
        }
        for (i, z) in self.zones.iter().enumerate() {
            let name = z.name.trim();
            if name.is_empty() || name.len() > 50 {
                return Err(SpecError::new(
                    format!("ai.zones[{i}].name"),
                    "must be 1 to 50 characters",
                ));
            }
            if self.zones[..i].iter().any(|o| o.name.trim() == name) {
                return Err(SpecError::new(
                    format!("ai.zones[{i}].name"),
                    "another zone has this name",
                ));
            }
            if !(3..=MAX_ZONE_POINTS).contains(&z.points.len())
                || z.points.iter().flatten().any(|v| !(0.0..=1.0).contains(v))
            {
                return Err(SpecError::new(
                    format!("ai.zones[{i}].points"),
                    format!("3 to {MAX_ZONE_POINTS} points, each [x, y] from 0 to 1"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_look_five_times_a_second() {
        let a: AnalysisSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(a, AnalysisSpec::default());
        assert_eq!(a.fps, 5);
        assert!(!a.enabled());
        a.validate().unwrap();
    }

    #[test]
    fn refuses_what_cannot_be_drawn_or_run() {
        let bad = [
            r#"{"fps": 0}"#,
            r#"{"fps": 31}"#,
            r#"{"model": "../x"}"#,
            r#"{"min_score": 0}"#,
            r#"{"min_score": 1.5}"#,
            r#"{"min_duration_ms": 600001}"#,
            r#"{"zones": [{"name": "door", "points": [[0,0],[1,0]]}]}"#,
            r#"{"zones": [{"name": "door", "points": [[0,0],[1,0],[1,1.2]]}]}"#,
            r#"{"zones": [{"name": " ", "points": [[0,0],[1,0],[1,1]]}]}"#,
            r#"{"zones": [{"name": "a", "points": [[0,0],[1,0],[1,1]]},
                          {"name": "a", "points": [[0,0],[1,0],[1,1]]}]}"#,
        ];
        for b in bad {
            let a: AnalysisSpec = serde_json::from_str(b).unwrap();
            assert!(a.validate().is_err(), "{b} was accepted");
        }
        let good: AnalysisSpec = serde_json::from_str(
            r#"{"model": "yolox-s", "fps": 10, "labels": ["person"], "min_score": 0.5,
                "zones": [{"name": "door", "points": [[0,0],[0.5,0],[0.5,1]]}]}"#,
        )
        .unwrap();
        good.validate().unwrap();
    }
}
