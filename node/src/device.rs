//! Device health over time: samples [`lpe_drivers::system::DeviceMonitor`] every few seconds
//! and keeps the last hour for the UI's charts, the latest sample for telemetry and metrics.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lpe_drivers::system::{DeviceMonitor, DeviceStats};
use serde::Serialize;
use tokio::sync::watch;

use lpe_core::events::now_ms;

/// How often the device is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// An hour of samples.
const KEPT: usize = 720;

/// One point of the device charts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DevicePoint {
    pub ts_ms: u64,
    pub cpu_percent: f32,
    pub memory_used_percent: f32,
    pub disk_used_percent: Option<f32>,
    pub gpu_percent: Option<f32>,
    /// The hottest sensor.
    pub max_temperature_celsius: Option<f32>,
}

impl DevicePoint {
    fn of(ts_ms: u64, s: &DeviceStats) -> Self {
        let pct = |used: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                (used as f64 * 100.0 / total as f64) as f32
            }
        };
        Self {
            ts_ms,
            cpu_percent: s.cpu_percent,
            memory_used_percent: pct(s.memory_used_bytes, s.memory_total_bytes),
            disk_used_percent: s.disk.as_ref().map(|d| {
                pct(
                    d.total_bytes.saturating_sub(d.available_bytes),
                    d.total_bytes,
                )
            }),
            gpu_percent: s.gpu.utilization_percent,
            max_temperature_celsius: s
                .temperatures
                .iter()
                .map(|t| t.celsius)
                .chain(s.gpu.temperature_celsius)
                .reduce(f32::max),
        }
    }
}

#[derive(Default)]
pub struct DeviceHistory {
    latest: Mutex<Option<DeviceStats>>,
    points: Mutex<VecDeque<DevicePoint>>,
}

impl DeviceHistory {
    pub fn latest(&self) -> Option<DeviceStats> {
        self.latest.lock().ok().and_then(|l| l.clone())
    }

    pub fn points(&self) -> Vec<DevicePoint> {
        self.points
            .lock()
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn record(&self, ts_ms: u64, stats: DeviceStats) {
        if let Ok(mut p) = self.points.lock() {
            if p.len() == KEPT {
                p.pop_front();
            }
            p.push_back(DevicePoint::of(ts_ms, &stats));
        }
        if let Ok(mut l) = self.latest.lock() {
            *l = Some(stats);
        }
    }

    /// Samples until shutdown. The monitor's reads (procfs, sysfs, NVML) run on the blocking
    /// pool.
    pub async fn run(
        self: Arc<Self>,
        data_dir: std::path::PathBuf,
        i2c_sensors: Vec<lpe_drivers::lm75::SensorSpec>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Ok(mut monitor) =
            tokio::task::spawn_blocking(move || DeviceMonitor::new(&data_dir, i2c_sensors)).await
        else {
            return;
        };
        loop {
            let Ok((m, stats)) = tokio::task::spawn_blocking(move || {
                let s = monitor.sample();
                (monitor, s)
            })
            .await
            else {
                return;
            };
            monitor = m;
            self.record(now_ms(), stats);
            tokio::select! {
                _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
