//! A detector: a model's ONNX Runtime session on the best execution provider that works for
//! it (tried, TensorRT → CUDA → CPU), checked at open with a dry run so that a model that
//! cannot work is refused then, never at 3 a.m.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::centerface;
use crate::detect::{self, Detection, Frame, PixelFormat};
use crate::runtime::Runtime;
use crate::yolo::{self, Layout};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Objects: YOLO v5/v8/v11/X output layouts.
    Yolo,
    /// Faces (CenterFace).
    Centerface,
}

/// What a model is and how to run it (stored beside the model file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Descriptor {
    pub name: String,
    pub kind: ModelKind,
    /// Input size fed to the model, multiples of 32.
    pub width: u32,
    pub height: u32,
    /// Class names by index (YOLO); empty: `class N`.
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default = "min_score")]
    pub min_score: f32,
    #[serde(default = "nms_iou")]
    pub nms_iou: f32,
    /// The YOLO layout; absent: told from the output's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
}

fn min_score() -> f32 {
    0.25
}
fn nms_iou() -> f32 {
    0.45
}

impl Descriptor {
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.len() > 100 {
            return Err("name: 1 to 100 characters".into());
        }
        for (what, v) in [("width", self.width), ("height", self.height)] {
            if !(32..=2048).contains(&v) || v % 32 != 0 {
                return Err(format!("{what}: a multiple of 32 from 32 to 2048"));
            }
        }
        if !(0.0..=1.0).contains(&self.min_score) || !(0.0..=1.0).contains(&self.nms_iou) {
            return Err("min_score and nms_iou are between 0 and 1".into());
        }
        if self.labels.len() > 10_000 || self.labels.iter().any(|l| l.len() > 100) {
            return Err("labels: at most 10 000 of at most 100 characters".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AiError {
    #[error("inference is unavailable: {0}")]
    Unavailable(String),
    #[error("the model cannot be used: {0}")]
    Model(String),
    #[error("inference failed: {0}")]
    Run(String),
}

/// How the provider choice went for one session.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderAttempt {
    pub provider: String,
    pub error: Option<String>,
}

/// One output of a run: its name, shape and values.
pub type Output = (String, Vec<i64>, Vec<f32>);

pub struct Detector {
    session: ort::session::Session,
    pub descriptor: Descriptor,
    input: String,
    /// Output names: YOLO's one, or CenterFace's heatmap, scale, offset.
    outputs: Vec<String>,
    layout: Option<Layout>,
    pixels: PixelFormat,
    pub provider: String,
    pub attempts: Vec<ProviderAttempt>,
    /// The last inference's time (the session's run alone).
    pub last_inference: Duration,
}

fn session_on(
    rt: &Runtime,
    path: &Path,
    provider: &str,
    threads: usize,
) -> Result<ort::session::Session, String> {
    let builder = ort::session::Session::builder(&rt.env)
        .map_err(|e| e.to_string())?
        .with_intra_threads(threads)
        .map_err(|e| e.to_string())?;
    let mut builder = match provider {
        "TensorRT" => builder
            .with_execution_providers([ort::ep::TensorRT::default().build().error_on_failure()]),
        "CUDA" => {
            builder.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
        }
        _ => Ok(builder),
    }
    .map_err(|e| e.to_string())?;
    builder.commit_from_file(path).map_err(|e| e.to_string())
}

impl Detector {
    /// Opens `path` as `descriptor` says, on the first provider that works, and checks it with
    /// a dry run.
    pub fn open(rt: &Runtime, path: &Path, descriptor: Descriptor) -> Result<Detector, AiError> {
        Self::open_avoiding(rt, path, descriptor, &[])
    }

    /// [`Detector::open`] without the providers in `avoid` (those that failed while running
    /// this model).
    pub fn open_avoiding(
        rt: &Runtime,
        path: &Path,
        descriptor: Descriptor,
        avoid: &[String],
    ) -> Result<Detector, AiError> {
        descriptor.validate().map_err(AiError::Model)?;
        let mut attempts = Vec::new();
        let mut opened = None;
        for p in crate::runtime::PROVIDERS {
            let compiled = rt
                .report
                .providers
                .iter()
                .any(|r| r.name == p && r.compiled_in);
            if avoid.iter().any(|a| a == p) {
                attempts.push(ProviderAttempt {
                    provider: p.into(),
                    error: Some("failed while running this model; not tried again".into()),
                });
                continue;
            }
            if !compiled {
                continue;
            }
            match session_on(rt, path, p, rt.report.intra_threads) {
                Ok(s) => {
                    attempts.push(ProviderAttempt {
                        provider: p.into(),
                        error: None,
                    });
                    opened = Some((s, p));
                    break;
                }
                Err(e) => {
                    if p == "CPU" {
                        // The model itself is at fault: no provider will take it.
                        return Err(AiError::Model(e));
                    }
                    attempts.push(ProviderAttempt {
                        provider: p.into(),
                        error: Some(e),
                    });
                }
            }
        }
        let (session, provider) =
            opened.ok_or_else(|| AiError::Model("no execution provider took it".into()))?;
        let inputs = session.inputs();
        let [input] = inputs else {
            return Err(AiError::Model(format!(
                "{} inputs; a detector has one image input",
                inputs.len()
            )));
        };
        let shape: Vec<i64> = input
            .dtype()
            .tensor_shape()
            .map(|s| s.to_vec())
            .unwrap_or_default();
        let fits = |i: usize, want: i64| shape.get(i).is_some_and(|d| *d == want || *d < 0);
        if shape.len() != 4
            || !fits(0, 1)
            || !fits(1, 3)
            || !fits(2, i64::from(descriptor.height))
            || !fits(3, i64::from(descriptor.width))
            || input.dtype().tensor_type() != Some(ort::value::TensorElementType::Float32)
        {
            return Err(AiError::Model(format!(
                "input '{}' is {:?} {shape:?}; this descriptor needs float32 [1, 3, {}, {}]",
                input.name(),
                input.dtype().tensor_type(),
                descriptor.height,
                descriptor.width
            )));
        }
        let input = input.name().to_string();
        let outputs: Vec<String> = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let mut d = Detector {
            session,
            descriptor,
            input,
            outputs,
            layout: None,
            pixels: PixelFormat {
                rgb: true,
                scale: 1.0,
                pad: 0,
            },
            provider: provider.to_string(),
            attempts,
            last_inference: Duration::ZERO,
        };
        d.check()?;
        Ok(d)
    }

    /// The dry run: outputs of the kind's shapes, the YOLO layout told, pixels chosen.
    fn check(&mut self) -> Result<(), AiError> {
        let (w, h) = (
            self.descriptor.width as usize,
            self.descriptor.height as usize,
        );
        let outputs = self.run(vec![0.0; 3 * w * h])?;
        match self.descriptor.kind {
            ModelKind::Yolo => {
                let [(_, shape, _)] = &outputs[..] else {
                    return Err(AiError::Model(format!(
                        "{} outputs; a YOLO model has one",
                        outputs.len()
                    )));
                };
                let (layout, classes) = yolo::layout_of(shape, w, h).map_err(AiError::Model)?;
                let layout = self.descriptor.layout.unwrap_or(layout);
                if !self.descriptor.labels.is_empty() && self.descriptor.labels.len() != classes {
                    return Err(AiError::Model(format!(
                        "{} labels for a model with {classes} classes",
                        self.descriptor.labels.len()
                    )));
                }
                self.layout = Some(layout);
                // YOLOX's own pre-processing feeds 0–255 in BGR; the others 0–1 RGB.
                self.pixels = match layout {
                    Layout::X => PixelFormat {
                        rgb: false,
                        scale: 1.0,
                        pad: 114,
                    },
                    _ => PixelFormat {
                        rgb: true,
                        scale: 1.0 / 255.0,
                        pad: 114,
                    },
                };
            }
            ModelKind::Centerface => {
                let channels: Vec<i64> = outputs
                    .iter()
                    .map(|(_, s, _)| s.get(1).copied().unwrap_or(0))
                    .collect();
                if outputs.len() < 3 || channels[..3] != [1, 2, 2] {
                    return Err(AiError::Model(format!(
                        "CenterFace has outputs of 1, 2, 2 (and 10) channels; this one has {channels:?}"
                    )));
                }
                self.pixels = PixelFormat {
                    rgb: true,
                    scale: 1.0,
                    pad: 0,
                };
            }
        }
        Ok(())
    }

    /// Runs the model on an NCHW input; each output's name, shape and values.
    pub fn run(&mut self, input: Vec<f32>) -> Result<Vec<Output>, AiError> {
        let (w, h) = (
            self.descriptor.width as usize,
            self.descriptor.height as usize,
        );
        let tensor = ort::value::Tensor::from_array(([1usize, 3, h, w], input))
            .map_err(|e| AiError::Run(e.to_string()))?;
        let started = Instant::now();
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| AiError::Run(e.to_string()))?;
        self.last_inference = started.elapsed();
        let mut out = Vec::new();
        for name in &self.outputs {
            let Some(v) = outputs.get(name) else {
                continue;
            };
            let (shape, data) = v
                .try_extract_tensor::<f32>()
                .map_err(|e| AiError::Run(format!("{name}: {e}")))?;
            out.push((name.clone(), shape.to_vec(), data.to_vec()));
        }
        Ok(out)
    }

    /// Detections in `frame`, in its pixels, best first.
    pub fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, AiError> {
        let (w, h) = (self.descriptor.width, self.descriptor.height);
        let (input, fit) = detect::letterbox(frame, w, h, self.pixels);
        let outputs = self.run(input)?;
        let min = self.descriptor.min_score;
        let candidates = match (self.descriptor.kind, self.layout) {
            (ModelKind::Yolo, Some(layout)) => {
                let (_, shape, data) = outputs
                    .first()
                    .ok_or_else(|| AiError::Run("no output".into()))?;
                yolo::decode(layout, data, shape, w as usize, h as usize, min)
            }
            (ModelKind::Centerface, _) => {
                let [(_, shape, heatmap), (_, _, scale), (_, _, offset), ..] = &outputs[..] else {
                    return Err(AiError::Run("CenterFace gave fewer than 3 outputs".into()));
                };
                let dim = |i: usize| {
                    shape
                        .get(i)
                        .and_then(|d| usize::try_from(*d).ok())
                        .unwrap_or(0)
                };
                let o = centerface::Outputs {
                    heatmap,
                    scale,
                    offset,
                    rows: dim(2),
                    cols: dim(3),
                };
                centerface::decode(&o, w as f32, h as f32, min)
            }
            (ModelKind::Yolo, None) => {
                return Err(AiError::Run("the model was not checked".into()));
            }
        };
        Ok(detect::nms(candidates, self.descriptor.nms_iou)
            .into_iter()
            .map(|c| Detection {
                class: c.class,
                label: self
                    .descriptor
                    .labels
                    .get(c.class)
                    .cloned()
                    .unwrap_or_else(|| match self.descriptor.kind {
                        ModelKind::Centerface => "face".into(),
                        ModelKind::Yolo => format!("class {}", c.class),
                    }),
                score: c.score,
                bbox: fit.to_source(c.x1, c.y1, c.x2, c.y2),
            })
            .collect())
    }

    /// The YOLO layout in use, once checked.
    pub fn layout(&self) -> Option<Layout> {
        self.layout
    }
}
