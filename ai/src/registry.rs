//! The models the node can run: the ones it ships (CenterFace) and the ones operators upload,
//! each a directory `<root>/<id>/` holding `model.onnx` and `descriptor.json` (0600). An
//! upload is opened as a detector before it is kept, so a model that cannot work is refused
//! with the reason at upload.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::runtime::Runtime;
use crate::session::{AiError, Descriptor, Detector, ModelKind};
use crate::yolo::Layout;

/// The largest model accepted, bytes.
pub const MAX_MODEL_BYTES: u64 = 512 << 20;
/// Models kept at most (uploads beyond are refused until one is removed).
pub const MAX_MODELS: usize = 32;

/// A model as the API lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Model {
    pub id: String,
    pub descriptor: Descriptor,
    /// Shipped with the node (cannot be removed).
    pub builtin: bool,
    pub bytes: u64,
    /// The YOLO layout found at upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
}

pub struct Registry {
    root: PathBuf,
    builtin: Vec<(Model, PathBuf)>,
}

/// The id of the shipped face detector.
pub const CENTERFACE: &str = "centerface";

/// Where the shipped CenterFace is: installed beside the binary, or where a checkout's set-up
/// put it (`target/models`, beside `target/<profile>/`).
pub fn builtin_centerface() -> Option<PathBuf> {
    let exe_dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
    [
        exe_dir.join("../share/livepeer-edge/models/centerface.onnx"),
        exe_dir.join("../models/centerface.onnx"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 40 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Registry {
    /// The registry in `root` (created), with CenterFace when `centerface` is given.
    pub fn open(root: PathBuf, centerface: Option<PathBuf>) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        let builtin = centerface
            .and_then(|path| {
                let bytes = std::fs::metadata(&path).ok()?.len();
                let descriptor = Descriptor {
                    name: "CenterFace (faces)".into(),
                    kind: ModelKind::Centerface,
                    width: 640,
                    height: 384,
                    labels: vec!["face".into()],
                    min_score: 0.5,
                    nms_iou: 0.3,
                    layout: None,
                };
                Some((
                    Model {
                        id: CENTERFACE.into(),
                        descriptor,
                        builtin: true,
                        bytes,
                        layout: None,
                    },
                    path,
                ))
            })
            .into_iter()
            .collect();
        Ok(Self { root, builtin })
    }

    /// Every model, shipped ones first, then uploads by name.
    pub fn list(&self) -> Vec<Model> {
        let mut uploaded: Vec<Model> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let id = e.file_name().to_str()?.to_string();
                self.read(&id)
            })
            .collect();
        uploaded.sort_by(|a, b| a.descriptor.name.cmp(&b.descriptor.name));
        self.builtin
            .iter()
            .map(|(m, _)| m.clone())
            .chain(uploaded)
            .collect()
    }

    fn read(&self, id: &str) -> Option<Model> {
        if !valid_id(id) {
            return None;
        }
        let dir = self.root.join(id);
        let text = std::fs::read(dir.join("descriptor.json")).ok()?;
        let stored: Stored = serde_json::from_slice(&text).ok()?;
        let bytes = std::fs::metadata(dir.join("model.onnx")).ok()?.len();
        Some(Model {
            id: id.to_string(),
            descriptor: stored.descriptor,
            builtin: false,
            bytes,
            layout: stored.layout,
        })
    }

    /// A model's file and descriptor.
    pub fn get(&self, id: &str) -> Option<(PathBuf, Model)> {
        if let Some((m, p)) = self.builtin.iter().find(|(m, _)| m.id == id) {
            return Some((p.clone(), m.clone()));
        }
        let m = self.read(id)?;
        Some((self.root.join(id).join("model.onnx"), m))
    }

    /// Keeps the model in `file` (moved in) once it opens as `descriptor` says; otherwise the
    /// file is removed and the reason returned.
    pub fn add(
        &self,
        rt: &Runtime,
        file: &Path,
        descriptor: Descriptor,
        id: String,
    ) -> Result<Model, AiError> {
        let refuse = |e: AiError| {
            let _ = std::fs::remove_file(file);
            e
        };
        if !valid_id(&id) {
            return Err(refuse(AiError::Model(format!(
                "'{id}' cannot name a model"
            ))));
        }
        if self.list().iter().filter(|m| !m.builtin).count() >= MAX_MODELS {
            return Err(refuse(AiError::Model(format!(
                "{MAX_MODELS} models are kept at most; remove one first"
            ))));
        }
        let detector = Detector::open(rt, file, descriptor).map_err(refuse)?;
        let stored = Stored {
            descriptor: detector.descriptor.clone(),
            layout: detector.layout(),
        };
        drop(detector);
        let dir = self.root.join(&id);
        let keep = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let json = serde_json::to_vec_pretty(&stored).map_err(std::io::Error::other)?;
            write_private(&dir.join("descriptor.json"), &json)?;
            std::fs::rename(file, dir.join("model.onnx"))?;
            set_private(&dir.join("model.onnx"))
        };
        if let Err(e) = keep() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(refuse(AiError::Model(format!("cannot keep it: {e}"))));
        }
        self.read(&id)
            .ok_or_else(|| AiError::Model("it was kept but cannot be read back".into()))
    }

    /// Removes an uploaded model; `false` when there is none of that id (or it is shipped).
    pub fn remove(&self, id: &str) -> bool {
        valid_id(id)
            && self.read(id).is_some()
            && std::fs::remove_dir_all(self.root.join(id)).is_ok()
    }

    /// Where uploads are written before they are checked.
    pub fn staging(&self, name: &str) -> PathBuf {
        self.root.join(format!(".upload-{name}"))
    }
}

#[derive(Serialize, serde::Deserialize)]
struct Stored {
    descriptor: Descriptor,
    layout: Option<Layout>,
}

fn set_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain() {
        assert!(valid_id("yolox-s-2"));
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(41)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn an_empty_registry_lists_only_what_ships() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("cf.onnx");
        std::fs::write(&model, b"x").expect("write");
        let r = Registry::open(dir.path().join("models"), Some(model)).expect("open");
        let list = r.list();
        assert_eq!(list.len(), 1);
        assert!(list[0].builtin && list[0].id == CENTERFACE);
        assert!(!r.remove(CENTERFACE), "shipped models stay");
        assert!(r.get("nothing").is_none());
        // A directory that is not a model is not listed.
        std::fs::create_dir_all(dir.path().join("models/stray")).expect("mkdir");
        assert_eq!(r.list().len(), 1);
    }
}
