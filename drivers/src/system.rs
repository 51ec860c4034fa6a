//! Device health: CPU, memory, the data disk, temperatures, network addresses and the GPU.
//!
//! The GPU is read through NVML where the NVIDIA driver library is present (desktop and server
//! GPUs), through Jetson's sysfs otherwise (integrated GPUs have no NVML), and reported as not
//! present when neither answers. Every reading degrades to absent; nothing here fails.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sysinfo::{Components, Disks, Networks, System};

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DeviceStats {
    /// Busy share of all cores since the previous sample, 0–100.
    pub cpu_percent: f32,
    pub cpu_cores: usize,
    pub load_average: [f64; 3],
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    /// The filesystem holding the node's data directory.
    pub disk: Option<DiskStats>,
    pub temperatures: Vec<Temperature>,
    pub gpu: GpuStats,
    pub network: Vec<Interface>,
    /// Seconds since the system booted.
    pub system_uptime_s: u64,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DiskStats {
    pub mount_point: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Temperature {
    pub label: String,
    pub celsius: f32,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Interface {
    pub name: String,
    pub addresses: Vec<String>,
    pub received_bytes: u64,
    pub transmitted_bytes: u64,
}

/// The network interfaces with IPv4 addresses, loopback excepted, by name — read from the
/// kernel in one call (`getifaddrs`), so an address is never paired with another interface's
/// name while interfaces come and go.
pub fn ipv4_interfaces() -> Vec<(String, Vec<std::net::Ipv4Addr>)> {
    let mut by_name: std::collections::BTreeMap<String, Vec<std::net::Ipv4Addr>> =
        std::collections::BTreeMap::new();
    for i in if_addrs::get_if_addrs().unwrap_or_default() {
        if let std::net::IpAddr::V4(a) = i.ip()
            && !a.is_loopback()
        {
            by_name.entry(i.name).or_default().push(a);
        }
    }
    by_name.into_iter().collect()
}

/// Where GPU readings come from.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GpuSource {
    Nvml,
    JetsonSysfs,
    NotPresent,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct GpuStats {
    pub source: GpuSource,
    pub name: Option<String>,
    pub utilization_percent: Option<f32>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub temperature_celsius: Option<f32>,
}

impl GpuStats {
    fn absent() -> Self {
        Self {
            source: GpuSource::NotPresent,
            name: None,
            utilization_percent: None,
            memory_used_bytes: None,
            memory_total_bytes: None,
            temperature_celsius: None,
        }
    }
}

/// The GPU reader chosen once, at start.
enum GpuProbe {
    Nvml(Box<nvml_wrapper::Nvml>),
    Jetson(JetsonGpu),
    None,
}

/// A Jetson integrated GPU as sysfs shows it.
pub struct JetsonGpu {
    /// The `load` file: per-mille busy.
    load: PathBuf,
    /// The thermal zone whose `type` is `GPU-therm`, if any.
    thermal: Option<PathBuf>,
    name: Option<String>,
}

impl JetsonGpu {
    /// Looks for a Jetson GPU under `root` (`/` on a device; a directory in tests).
    pub fn find(root: &Path) -> Option<Self> {
        const LOADS: &[&str] = &[
            "sys/devices/gpu.0/load",
            "sys/devices/platform/gpu.0/load",
            "sys/devices/platform/17000000.ga10b/load",
            "sys/devices/platform/bus@0/17000000.gpu/load",
            "sys/devices/platform/17000000.gv11b/load",
        ];
        let load = LOADS.iter().map(|p| root.join(p)).find(|p| p.is_file())?;
        let thermal = std::fs::read_dir(root.join("sys/class/thermal"))
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|zone| {
                std::fs::read_to_string(zone.join("type"))
                    .map(|t| t.trim().eq_ignore_ascii_case("GPU-therm"))
                    .unwrap_or(false)
            });
        let name = std::fs::read_to_string(root.join("proc/device-tree/model"))
            .ok()
            .map(|m| m.trim_end_matches('\0').trim().to_string())
            .filter(|m| !m.is_empty());
        Some(Self {
            load,
            thermal,
            name,
        })
    }

    pub fn read(&self) -> GpuStats {
        let per_mille = std::fs::read_to_string(&self.load)
            .ok()
            .and_then(|v| v.trim().parse::<f32>().ok());
        let temperature = self.thermal.as_ref().and_then(|z| {
            std::fs::read_to_string(z.join("temp"))
                .ok()
                .and_then(|v| v.trim().parse::<f32>().ok())
                .map(|milli| milli / 1000.0)
        });
        GpuStats {
            source: GpuSource::JetsonSysfs,
            name: self.name.clone(),
            utilization_percent: per_mille.map(|v| v / 10.0),
            // Jetson's GPU shares system memory; its use is in the memory figures.
            memory_used_bytes: None,
            memory_total_bytes: None,
            temperature_celsius: temperature,
        }
    }
}

impl GpuProbe {
    fn detect() -> Self {
        if let Ok(nvml) = nvml_wrapper::Nvml::init()
            && nvml.device_count().map(|n| n > 0).unwrap_or(false)
        {
            return Self::Nvml(Box::new(nvml));
        }
        match JetsonGpu::find(Path::new("/")) {
            Some(j) => Self::Jetson(j),
            None => Self::None,
        }
    }

    fn read(&self) -> GpuStats {
        match self {
            Self::Nvml(nvml) => {
                use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
                let Ok(dev) = nvml.device_by_index(0) else {
                    return GpuStats::absent();
                };
                let mem = dev.memory_info().ok();
                GpuStats {
                    source: GpuSource::Nvml,
                    name: dev.name().ok(),
                    utilization_percent: dev.utilization_rates().ok().map(|u| u.gpu as f32),
                    memory_used_bytes: mem.as_ref().map(|m| m.used),
                    memory_total_bytes: mem.as_ref().map(|m| m.total),
                    temperature_celsius: dev
                        .temperature(TemperatureSensor::Gpu)
                        .ok()
                        .map(|t| t as f32),
                }
            }
            Self::Jetson(j) => j.read(),
            Self::None => GpuStats::absent(),
        }
    }
}

/// Samples device health; keep one and call [`DeviceMonitor::sample`] periodically (CPU use
/// is measured between samples).
pub struct DeviceMonitor {
    system: System,
    disks: Disks,
    components: Components,
    networks: Networks,
    gpu: GpuProbe,
    data_dir: PathBuf,
    i2c_sensors: Vec<crate::lm75::SensorSpec>,
}

impl DeviceMonitor {
    /// `i2c_sensors`: LM75-style sensors read beside the kernel's own (each read afresh, so
    /// one that appears later is shown; one that does not answer is left out).
    pub fn new(data_dir: &Path, i2c_sensors: Vec<crate::lm75::SensorSpec>) -> Self {
        let mut system = System::new();
        system.refresh_cpu_usage();
        system.refresh_memory();
        Self {
            system,
            disks: Disks::new_with_refreshed_list(),
            components: Components::new_with_refreshed_list(),
            networks: Networks::new_with_refreshed_list(),
            gpu: GpuProbe::detect(),
            data_dir: data_dir.canonicalize().unwrap_or_else(|_| data_dir.into()),
            i2c_sensors,
        }
    }

    pub fn sample(&mut self) -> DeviceStats {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.components.refresh(true);
        self.networks.refresh(true);
        let load = System::load_average();
        let disk = self
            .disks
            .list()
            .iter()
            .filter(|d| self.data_dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())
            .map(|d| DiskStats {
                mount_point: d.mount_point().display().to_string(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
            });
        let mut temperatures: Vec<Temperature> = self
            .components
            .list()
            .iter()
            .filter_map(|c| {
                c.temperature()
                    .filter(|t| t.is_finite())
                    .map(|celsius| Temperature {
                        label: c.label().to_string(),
                        celsius,
                    })
            })
            .collect();
        let class = Path::new(crate::lm75::CLASS_DIR);
        temperatures.extend(self.i2c_sensors.iter().filter_map(|spec| {
            crate::lm75::read_celsius(class, spec)
                .ok()
                .map(|celsius| Temperature {
                    label: format!("lm75 {spec}"),
                    celsius,
                })
        }));
        let mut network: Vec<Interface> = self
            .networks
            .list()
            .iter()
            .map(|(name, data)| Interface {
                name: name.clone(),
                addresses: data
                    .ip_networks()
                    .iter()
                    .map(|n| format!("{}/{}", n.addr, n.prefix))
                    .collect(),
                received_bytes: data.total_received(),
                transmitted_bytes: data.total_transmitted(),
            })
            .collect();
        network.sort_by(|a, b| a.name.cmp(&b.name));
        DeviceStats {
            cpu_percent: self.system.global_cpu_usage(),
            cpu_cores: self.system.cpus().len(),
            load_average: [load.one, load.five, load.fifteen],
            memory_total_bytes: self.system.total_memory(),
            memory_used_bytes: self.system.used_memory(),
            disk,
            temperatures,
            gpu: self.gpu.read(),
            network,
            system_uptime_s: System::uptime(),
            hostname: System::host_name(),
            os: System::long_os_version(),
            kernel: System::kernel_version(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_machine() {
        let dir = std::env::temp_dir();
        let mut m = DeviceMonitor::new(&dir, Vec::new());
        let s = m.sample();
        assert!(s.cpu_cores >= 1);
        assert!(s.memory_total_bytes > 0 && s.memory_used_bytes <= s.memory_total_bytes);
        let disk = s.disk.expect("the temp dir is on some filesystem");
        assert!(disk.total_bytes > 0 && disk.available_bytes <= disk.total_bytes);
        assert!((0.0..=100.0).contains(&s.cpu_percent));
        assert!(s.network.iter().any(|i| i.name == "lo"));
    }

    #[test]
    fn reads_a_jetson_gpu_from_sysfs() {
        let root = std::env::temp_dir().join(format!("lpe-jetson-{}", std::process::id()));
        let gpu = root.join("sys/devices/platform/17000000.ga10b");
        let zone = root.join("sys/class/thermal/thermal_zone1");
        std::fs::create_dir_all(&gpu).expect("mkdir");
        std::fs::create_dir_all(&zone).expect("mkdir");
        std::fs::create_dir_all(root.join("sys/class/thermal/thermal_zone0")).expect("mkdir");
        std::fs::create_dir_all(root.join("proc/device-tree")).expect("mkdir");
        std::fs::write(gpu.join("load"), "437\n").expect("write");
        std::fs::write(
            root.join("sys/class/thermal/thermal_zone0/type"),
            "CPU-therm\n",
        )
        .expect("write");
        std::fs::write(zone.join("type"), "GPU-therm\n").expect("write");
        std::fs::write(zone.join("temp"), "48500\n").expect("write");
        std::fs::write(
            root.join("proc/device-tree/model"),
            "NVIDIA Jetson Orin NX Engineering Reference Developer Kit\0",
        )
        .expect("write");
        let j = JetsonGpu::find(&root).expect("found");
        let s = j.read();
        std::fs::remove_dir_all(&root).ok();
        assert_eq!(s.source, GpuSource::JetsonSysfs);
        assert_eq!(s.utilization_percent, Some(43.7));
        assert_eq!(s.temperature_celsius, Some(48.5));
        assert_eq!(
            s.name.as_deref(),
            Some("NVIDIA Jetson Orin NX Engineering Reference Developer Kit")
        );
        assert!(JetsonGpu::find(Path::new("/nonexistent")).is_none());
    }

    #[test]
    fn no_gpu_here_is_reported_as_not_present() {
        // This machine has neither the NVIDIA driver nor a Jetson GPU.
        let probe = GpuProbe::detect();
        assert_eq!(probe.read().source, GpuSource::NotPresent);
    }
}
