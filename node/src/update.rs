//! System updates: the node's side of RAUC. The `update` command starts one
//! job (one at a time): the bundle is downloaded (or was uploaded) to the data partition,
//! checked against its SHA-256, installed by RAUC into the other slot, and the box reboots
//! into it. The job is kept in the store, so its outcome is decided after the reboot: the new
//! slot marks itself good only once this node is healthy there ([`Updater::after_boot`]);
//! a slot that never gets there is passed over by the bootloader and the job reads `failed`
//! from the old slot.
//!
//! Rebooting needs root: the node asks by creating `reboot-requested` in its data directory,
//! which a root-owned path unit of the image acts on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lpe_core::events::{EventBus, EventKind, now_ms};
use lpe_store::Store;
use lpe_update::download::{self, Limits};
use lpe_update::rauc::{Rauc, SystemStatus};
use serde::{Deserialize, Serialize};

use lpe_core::spec::SpecError;

/// Why an update was not started.
#[derive(Debug, thiserror::Error)]
pub enum NotStarted {
    #[error("{0}")]
    Invalid(SpecError),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Unavailable(String),
}

/// The job as the store keeps it.
const META_JOB: &str = "update_job";
/// The file a root-owned path unit turns into a reboot.
pub const REBOOT_FLAG: &str = "reboot-requested";
/// How long a freshly booted slot has to become healthy before it is marked bad.
const HEALTH_DEADLINE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    Idle,
    Accepted,
    Downloading,
    Installing,
    Rebooting,
    Succeeded,
    Failed,
}

impl UpdateState {
    /// A job in this state holds the update machinery.
    pub fn active(self) -> bool {
        matches!(
            self,
            Self::Accepted | Self::Downloading | Self::Installing | Self::Rebooting
        )
    }
}

/// The current or last update.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpdateJob {
    pub state: UpdateState,
    /// The request id it was started under, when the sender gave one.
    pub request_id: Option<String>,
    /// Percent of the current step (downloading, installing).
    pub progress: Option<u8>,
    /// The current step in words (RAUC's own for installing).
    pub message: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    /// The slot it was started from and the one it installed to (bootnames).
    pub from_slot: Option<String>,
    pub to_slot: Option<String>,
    /// The streams running when it started: the new slot is healthy only once they run again.
    #[serde(default)]
    pub streams_running: Vec<String>,
    pub started_ms: u64,
    pub updated_ms: u64,
}

impl Default for UpdateJob {
    fn default() -> Self {
        Self {
            state: UpdateState::Idle,
            request_id: None,
            progress: None,
            message: None,
            reason: None,
            from_slot: None,
            to_slot: None,
            streams_running: Vec::new(),
            started_ms: 0,
            updated_ms: 0,
        }
    }
}

/// Where the bundle comes from.
#[derive(Debug, Clone)]
pub enum BundleSource {
    Url(String),
    /// A bundle already on the data partition (an upload).
    File(PathBuf),
}

/// An update request.
#[derive(Debug, Clone)]
pub struct UpdateRequest {
    pub source: BundleSource,
    pub sha256: Option<String>,
}

/// The update status the API, the UI and the fleet show.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UpdateView {
    /// The slots, or why they cannot be read (no RAUC on this system).
    pub system: Option<SystemStatus>,
    pub unavailable: Option<String>,
    pub job: UpdateJob,
    pub version: String,
}

pub struct Updater {
    store: Arc<Store>,
    events: EventBus,
    dir: PathBuf,
    data_dir: PathBuf,
    limits: Limits,
    job: Mutex<UpdateJob>,
    /// The slots as RAUC last reported them (for readers that cannot wait on D-Bus).
    slots: Mutex<Option<SystemStatus>>,
}

impl Updater {
    pub fn new(store: Arc<Store>, events: EventBus, data_dir: &Path, limits: Limits) -> Self {
        let job = store
            .get_meta(META_JOB)
            .ok()
            .flatten()
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default();
        Self {
            store,
            events,
            dir: data_dir.join("update"),
            data_dir: data_dir.to_path_buf(),
            limits,
            job: Mutex::new(job),
            slots: Mutex::new(None),
        }
    }

    /// Where uploads are written (on the data partition).
    pub fn upload_path(&self) -> PathBuf {
        self.dir.join("upload.raucb")
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn job(&self) -> UpdateJob {
        self.job.lock().map(|j| j.clone()).unwrap_or_default()
    }

    /// The job and the slots as last read, without asking RAUC (the fleet's `state`).
    pub fn summary(&self) -> (UpdateJob, Option<SystemStatus>) {
        let slots = self.slots.lock().ok().and_then(|s| s.clone());
        (self.job(), slots)
    }

    pub async fn view(&self) -> UpdateView {
        let (system, unavailable) = match status().await {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        if let (Some(s), Ok(mut kept)) = (&system, self.slots.lock()) {
            *kept = Some(s.clone());
        }
        UpdateView {
            system,
            unavailable,
            job: self.job(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    fn set(&self, change: impl FnOnce(&mut UpdateJob)) {
        let snapshot = match self.job.lock() {
            Ok(mut j) => {
                change(&mut j);
                j.updated_ms = now_ms();
                j.clone()
            }
            Err(_) => return,
        };
        if let Ok(text) = serde_json::to_string(&snapshot)
            && let Err(e) = self
                .store
                .write_blocking(move |w| w.set_meta(META_JOB, &text))
        {
            tracing::warn!("cannot record the update's state: {e}");
        }
    }

    /// A step's progress: kept in memory only. Persisting every percent would put a blocking
    /// store write on the async threads for each one, and after a restart it means nothing.
    fn progress(&self, percent: Option<u8>, message: Option<String>) {
        if let Ok(mut j) = self.job.lock() {
            j.progress = percent;
            if message.is_some() {
                j.message = message;
            }
            j.updated_ms = now_ms();
        }
    }

    fn fail(&self, why: String) {
        tracing::error!("update failed: {why}");
        self.events.emit(
            None,
            EventKind::UpdateFailed,
            format!("update failed: {why}"),
        );
        self.set(|j| {
            j.state = UpdateState::Failed;
            j.reason = Some(why);
            j.progress = None;
        });
    }

    /// Starts a job; refused while another runs. Returns at once with the accepted job.
    pub fn start(
        self: &Arc<Self>,
        request: UpdateRequest,
        request_id: Option<String>,
        streams_running: Vec<String>,
    ) -> Result<UpdateJob, NotStarted> {
        if let Some(sha) = &request.sha256
            && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(NotStarted::Invalid(SpecError::new(
                "sha256",
                "must be 64 hexadecimal digits",
            )));
        }
        if let BundleSource::Url(u) = &request.source
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(NotStarted::Invalid(SpecError::new(
                "url",
                "must be http:// or https://",
            )));
        }
        {
            let mut j = self
                .job
                .lock()
                .map_err(|_| NotStarted::Unavailable("the update state is unreadable".into()))?;
            if j.state.active() {
                return Err(NotStarted::Busy(
                    format!("an update is already {:?}", j.state).to_lowercase(),
                ));
            }
            *j = UpdateJob {
                state: UpdateState::Accepted,
                request_id,
                streams_running,
                started_ms: now_ms(),
                ..UpdateJob::default()
            };
        }
        self.set(|_| {});
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let upload = match &request.source {
                BundleSource::File(p) => Some(p.clone()),
                BundleSource::Url(_) => None,
            };
            if let Err(why) = me.run(request).await {
                // An uploaded bundle that was not installed is not kept either.
                if let Some(p) = upload {
                    let _ = tokio::fs::remove_file(p).await;
                }
                me.fail(why);
            }
        });
        Ok(self.job())
    }

    async fn run(&self, request: UpdateRequest) -> Result<(), String> {
        let rauc = Rauc::connect().await.map_err(|e| e.to_string())?;
        let before = rauc.status().await.map_err(|e| e.to_string())?;
        self.set(|j| j.from_slot = Some(before.booted.clone()));
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let bundle = match request.source {
            BundleSource::File(p) => p,
            BundleSource::Url(url) => {
                self.set(|j| {
                    j.state = UpdateState::Downloading;
                    j.progress = Some(0);
                    j.message = Some("downloading the bundle".into());
                });
                let dest = self.dir.join("download.raucb");
                let mut last = None;
                download::fetch(&url, &dest, self.limits, |have, total| {
                    let pct = total.map(|t| (have * 100 / t.max(1)).min(100) as u8);
                    if pct != last {
                        last = pct;
                        self.progress(pct, None);
                    }
                })
                .await
                .map_err(|e| e.to_string())?;
                dest
            }
        };
        if let Some(sha) = &request.sha256 {
            self.set(|j| j.message = Some("checking the bundle's SHA-256".into()));
            download::verify(&bundle, sha)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.set(|j| {
            j.state = UpdateState::Installing;
            j.progress = Some(0);
            j.message = Some("installing".into());
        });
        let installed = rauc
            .install(&bundle, |p| self.progress(Some(p.percent), Some(p.message)))
            .await;
        // The bundle has done its work either way; the data partition keeps no copy.
        let _ = tokio::fs::remove_file(&bundle).await;
        installed.map_err(|e| e.to_string())?;
        let after = rauc.status().await.map_err(|e| e.to_string())?;
        let to = after.primary.clone().unwrap_or_default();
        self.events.emit(
            None,
            EventKind::UpdateInstalled,
            format!("update installed to slot {to}; rebooting into it"),
        );
        self.set(|j| {
            j.state = UpdateState::Rebooting;
            j.to_slot = Some(to);
            j.progress = None;
            j.message = Some("rebooting into the new slot".into());
        });
        self.request_reboot()
    }

    fn request_reboot(&self) -> Result<(), String> {
        let flag = self.data_dir.join(REBOOT_FLAG);
        std::fs::write(&flag, b"update\n")
            .map_err(|e| format!("cannot ask for a reboot ({}): {e}", flag.display()))
    }

    /// After a start: once `healthy` (told which streams must run again) says so within
    /// [`HEALTH_DEADLINE`], the booted slot is marked good; an update that was rebooting into
    /// it succeeded, or — when the box came back in the old slot — failed, and the slot it
    /// gave up on is marked bad. A new slot that never becomes healthy is marked bad and the
    /// box reboots into the old one.
    pub async fn after_boot<F, Fut>(&self, healthy: F)
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let rauc = match Rauc::connect().await {
            Ok(r) => r,
            Err(e) => {
                tracing::info!("no system updates here: {e}");
                return;
            }
        };
        let booted = match rauc.status().await {
            Ok(s) => s.booted,
            Err(e) => {
                tracing::info!("no system updates here: {e}");
                return;
            }
        };
        let job = self.job();
        let updating = job.state == UpdateState::Rebooting;
        if job.state.active() && !updating {
            // Cut short by a restart before it reached RAUC's end.
            self.fail("the node restarted before the update was installed".into());
        }
        let deadline = tokio::time::Instant::now() + HEALTH_DEADLINE;
        let mut why = String::from("not checked");
        let must_run = if updating {
            job.streams_running.clone()
        } else {
            Vec::new()
        };
        let healthy_now = loop {
            match healthy(must_run.clone()).await {
                Ok(()) => break true,
                Err(e) => why = e,
            }
            if tokio::time::Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        let into_new = updating && job.to_slot.as_deref() == Some(booted.as_str());
        if healthy_now {
            match rauc.mark(true, "booted").await {
                Ok(m) => tracing::info!("slot {booted} is healthy: {m}"),
                Err(e) => tracing::warn!("cannot mark slot {booted} good: {e}"),
            }
            if let (Ok(s), Ok(mut kept)) = (rauc.status().await, self.slots.lock()) {
                *kept = Some(s);
            }
            if into_new {
                self.events.emit(
                    None,
                    EventKind::UpdateSucceeded,
                    format!("updated: slot {booted} runs and is marked good"),
                );
                self.set(|j| {
                    j.state = UpdateState::Succeeded;
                    j.message = Some(format!("slot {booted} runs and is marked good"));
                });
            } else if updating {
                let gave_up = job.to_slot.clone().unwrap_or_default();
                if let Err(e) = rauc.mark(false, "other").await {
                    tracing::warn!("cannot mark slot {gave_up} bad: {e}");
                }
                self.fail(format!(
                    "rolled back: slot {gave_up} did not come up healthy; slot {booted} runs again"
                ));
            }
        } else {
            tracing::error!("slot {booted} is not healthy: {why}");
            if into_new {
                if let Err(e) = rauc.mark(false, "booted").await {
                    tracing::warn!("cannot mark slot {booted} bad: {e}");
                }
                self.set(|j| {
                    j.message = Some(format!(
                        "slot {booted} failed its health check ({why}); going back"
                    ))
                });
                if let Err(e) = self.request_reboot() {
                    tracing::error!("{e}");
                }
            }
        }
    }
}

async fn status() -> Result<SystemStatus, String> {
    let rauc = Rauc::connect().await.map_err(|e| e.to_string())?;
    rauc.status().await.map_err(|e| e.to_string())
}
