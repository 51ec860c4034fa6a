//! The AI plane as the node holds it: the ONNX Runtime loaded at start (or why not) and the
//! model registry in `<data_dir>/models`. Uploads are checked one at a time.

use std::path::Path;
use std::sync::Arc;

use lpe_ai::registry::{Model, Registry};
use lpe_ai::runtime::{Runtime, RuntimeReport};
use lpe_ai::session::{AiError, Descriptor};

pub struct AiPlane {
    runtime: Option<Arc<Runtime>>,
    report: RuntimeReport,
    registry: Option<Registry>,
    /// One upload is checked (a session opened, a dry run) at a time.
    checking: tokio::sync::Semaphore,
}

/// What `GET /api/ai` shows.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AiView {
    pub runtime: RuntimeReport,
    pub models: Vec<Model>,
    /// An object detector (a YOLO model) is installed; none ships with the node.
    pub object_detector: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Unavailable(String),
    #[error("another model is being checked; try again when it is done")]
    Busy,
    #[error("{0}")]
    Refused(String),
}

impl AiPlane {
    /// Loads the runtime and opens the registry; either failing leaves the plane reporting
    /// why, and the node runs on without inference.
    pub fn start(cfg: &crate::config::Config) -> Self {
        let (runtime, report) = match Runtime::load(
            Path::new(&cfg.ai.onnxruntime_path),
            cfg.ai.intra_threads as usize,
        ) {
            Ok(rt) => {
                tracing::info!(
                    library = rt.report.library.as_deref().unwrap_or(""),
                    providers = ?rt.report.providers.iter().filter(|p| p.compiled_in).map(|p| p.name.as_str()).collect::<Vec<_>>(),
                    "ONNX Runtime loaded"
                );
                let report = rt.report.clone();
                (Some(Arc::new(rt)), report)
            }
            Err(report) => {
                tracing::warn!(
                    "inference unavailable: {}",
                    report.error.as_deref().unwrap_or("?")
                );
                (None, report)
            }
        };
        let registry = match Registry::open(
            cfg.data_dir.join("models"),
            lpe_ai::registry::builtin_centerface(),
        ) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!("models directory: {e}");
                None
            }
        };
        Self {
            runtime,
            report,
            registry,
            checking: tokio::sync::Semaphore::new(1),
        }
    }

    /// What was found at start: the library, its providers, or why inference is unavailable.
    pub fn runtime(&self) -> &RuntimeReport {
        &self.report
    }

    pub fn view(&self) -> AiView {
        let models = self
            .registry
            .as_ref()
            .map(Registry::list)
            .unwrap_or_default();
        let object_detector = models
            .iter()
            .any(|m| m.descriptor.kind == lpe_ai::session::ModelKind::Yolo);
        AiView {
            runtime: self.report.clone(),
            models,
            object_detector,
        }
    }

    /// Where an upload is written before it is checked.
    pub fn staging(&self, name: &str) -> Option<std::path::PathBuf> {
        self.registry.as_ref().map(|r| r.staging(name))
    }

    /// Checks the model written to `file` and keeps it under a new id.
    pub async fn add(
        self: &Arc<Self>,
        file: std::path::PathBuf,
        descriptor: Descriptor,
    ) -> Result<Model, UploadError> {
        let discard = |e: UploadError| {
            let _ = std::fs::remove_file(&file);
            e
        };
        let Some(rt) = self.runtime.clone() else {
            return Err(discard(UploadError::Unavailable(
                self.report.error.clone().unwrap_or_default(),
            )));
        };
        if self.registry.is_none() {
            return Err(discard(UploadError::Unavailable(
                "the models directory cannot be used; see the log".into(),
            )));
        }
        let Ok(_permit) = self.checking.try_acquire() else {
            return Err(discard(UploadError::Busy));
        };
        let id = format!(
            "m-{}",
            lpe_core::ids::random_string(lpe_core::ids::ID_ALPHABET, 10)
        );
        let plane = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || {
            let registry = plane
                .registry
                .as_ref()
                .ok_or_else(|| AiError::Model("no registry".into()))?;
            registry.add(&rt, &file, descriptor, id)
        })
        .await
        .map_err(|e| UploadError::Refused(format!("the check stopped: {e}")))?;
        result.map_err(|e| match e {
            AiError::Unavailable(w) => UploadError::Unavailable(w),
            other => UploadError::Refused(other.to_string()),
        })
    }

    /// What a detector process needs to open model `id`: the library this node loaded, its
    /// thread count, the model's file and descriptor.
    pub fn worker_spec(&self, id: &str) -> Result<lpe_ai::worker::WorkerSpec, String> {
        let Some(rt) = &self.runtime else {
            return Err(self.report.error.clone().unwrap_or_default());
        };
        let registry = self
            .registry
            .as_ref()
            .ok_or("the models directory cannot be used; see the log")?;
        let (model, m) = registry
            .get(id)
            .ok_or_else(|| format!("model {id} is not installed"))?;
        Ok(lpe_ai::worker::WorkerSpec {
            model,
            descriptor: m.descriptor,
            onnxruntime: rt.report.library.clone().unwrap_or_default().into(),
            threads: rt.report.intra_threads,
            avoid_providers: Vec::new(),
        })
    }

    pub fn remove(&self, id: &str) -> bool {
        self.registry.as_ref().is_some_and(|r| r.remove(id))
    }
}
