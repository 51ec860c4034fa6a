//! RAUC's D-Bus service, `de.pengutronix.rauc.Installer` at `/` on the system bus.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use zbus::zvariant::{OwnedValue, Value};

use crate::UpdateError;

#[zbus::proxy(
    interface = "de.pengutronix.rauc.Installer",
    default_service = "de.pengutronix.rauc",
    default_path = "/"
)]
trait Installer {
    fn install_bundle(&self, source: &str, args: HashMap<&str, Value<'_>>) -> zbus::Result<()>;
    fn mark(&self, state: &str, slot_identifier: &str) -> zbus::Result<(String, String)>;
    fn get_slot_status(&self) -> zbus::Result<Vec<(String, HashMap<String, OwnedValue>)>>;
    fn get_primary(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn operation(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<(i32, String, i32)>;
    #[zbus(property)]
    fn compatible(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn boot_slot(&self) -> zbus::Result<String>;
    #[zbus(signal)]
    fn completed(&self, result: i32) -> zbus::Result<()>;
}

/// One slot as RAUC reports it.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Slot {
    /// RAUC's name (`rootfs.0`).
    pub name: String,
    /// The bootloader's name (`A`, `B`).
    pub bootname: String,
    pub device: String,
    /// `booted`, `active` or `inactive`.
    pub state: String,
    /// `good` or `bad`, as marked.
    pub boot_status: String,
    /// The bundle version last installed to it (none for the factory image).
    pub bundle_version: Option<String>,
    pub installed_timestamp: Option<String>,
}

/// The system's slots: which one runs and which one boots next.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct SystemStatus {
    pub compatible: String,
    /// The bootname of the running slot.
    pub booted: String,
    /// The slot the bootloader tries first.
    pub primary: Option<String>,
    pub slots: Vec<Slot>,
}

/// Where an installation is: RAUC's percentage and step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub percent: u8,
    pub message: String,
}

/// A connection to RAUC.
pub struct Rauc {
    proxy: InstallerProxy<'static>,
}

fn bus(e: zbus::Error) -> UpdateError {
    UpdateError::Bus(e.to_string())
}

fn text(map: &HashMap<String, OwnedValue>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
        .filter(|s| !s.is_empty())
}

impl Rauc {
    pub async fn connect() -> Result<Self, UpdateError> {
        let conn = zbus::Connection::system().await.map_err(bus)?;
        let proxy = InstallerProxy::new(&conn).await.map_err(bus)?;
        Ok(Self { proxy })
    }

    pub async fn status(&self) -> Result<SystemStatus, UpdateError> {
        let slots = self.proxy.get_slot_status().await.map_err(bus)?;
        let booted = self.proxy.boot_slot().await.map_err(bus)?;
        let primary = self.proxy.get_primary().await.ok();
        let mut out = SystemStatus {
            compatible: self.proxy.compatible().await.map_err(bus)?,
            booted,
            primary: None,
            slots: Vec::new(),
        };
        for (name, m) in slots {
            // Only the bootable slots are the system's; RAUC lists every slot class.
            let Some(bootname) = text(&m, "bootname") else {
                continue;
            };
            if primary.as_deref() == Some(name.as_str()) {
                out.primary = Some(bootname.clone());
            }
            out.slots.push(Slot {
                name,
                bootname,
                device: text(&m, "device").unwrap_or_default(),
                state: text(&m, "state").unwrap_or_default(),
                boot_status: text(&m, "boot-status").unwrap_or_default(),
                bundle_version: text(&m, "bundle.version"),
                installed_timestamp: text(&m, "installed.timestamp"),
            });
        }
        Ok(out)
    }

    /// Installs `bundle` into the other slot and makes it the next to boot; `progress` hears
    /// each step. Returns when RAUC says it completed.
    pub async fn install(
        &self,
        bundle: &Path,
        mut progress: impl FnMut(Progress),
    ) -> Result<(), UpdateError> {
        let mut completed = self.proxy.receive_completed().await.map_err(bus)?;
        let source = bundle.to_string_lossy().into_owned();
        self.proxy
            .install_bundle(&source, HashMap::new())
            .await
            .map_err(|e| UpdateError::Refused(e.to_string()))?;
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        let mut last = None;
        let result = loop {
            tokio::select! {
                done = completed.next() => {
                    let Some(signal) = done else {
                        return Err(UpdateError::Bus("the update service went away".into()));
                    };
                    break signal.args().map(|a| a.result).map_err(bus)?;
                }
                _ = ticker.tick() => {
                    if let Ok((percent, message, _)) = self.proxy.progress().await {
                        let p = Progress { percent: percent.clamp(0, 100) as u8, message };
                        if last.as_ref() != Some(&p) {
                            progress(p.clone());
                            last = Some(p);
                        }
                    }
                }
            }
        };
        if result == 0 {
            return Ok(());
        }
        // LastError is the reason; when RAUC left it empty, its last step says what failed
        // ("Verifying signature failed.").
        let why = self.proxy.last_error().await.unwrap_or_default();
        let step = match self.proxy.progress().await {
            Ok((_, message, _)) if !message.is_empty() => Some(message),
            _ => last.map(|p| p.message),
        };
        Err(UpdateError::Refused(match (why.is_empty(), step) {
            (false, _) => why,
            (true, Some(step)) => step,
            (true, None) => format!("installation failed ({result})"),
        }))
    }

    /// Marks a slot (`booted` or `other`) `good` or `bad`; returns RAUC's message.
    pub async fn mark(&self, good: bool, slot: &str) -> Result<String, UpdateError> {
        let state = if good { "good" } else { "bad" };
        let (_, message) = self.proxy.mark(state, slot).await.map_err(bus)?;
        Ok(message)
    }
}
