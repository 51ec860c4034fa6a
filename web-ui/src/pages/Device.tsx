import { bytes, duration, get } from "../api";
import { Chart, ErrorBox, usePoll } from "../ui";
import type { DevicePoint as Point, DeviceView } from "../api.gen";
import { SystemUpdate } from "./SystemUpdate";
import { FactoryReset } from "./FactoryReset";

const SHOWING: Record<string, string> = {
  reset_armed: "factory reset armed — press the button to confirm",
  identifying: "identifying the box",
  updating: "updating",
  booting: "starting",
  fault: "fault",
  needs_setup: "waiting for first-boot setup",
  running: "running",
};


export function DevicePage() {
  const dev = usePoll(() => get<DeviceView>("/api/device"), 5000);
  const hist = usePoll(() => get<Point[]>("/api/device/history"), 5000);
  const d = dev.value;
  const s = d?.stats;
  const pts = hist.value ?? [];
  return (
    <section>
      <h1>Device</h1>
      <ErrorBox error={dev.error} />
      {d && (
        <dl class="facts">
          <dt>Name</dt>
          <dd>{d.identity.name}</dd>
          <dt>Role</dt>
          <dd>{d.identity.role}</dd>
          <dt>Version</dt>
          <dd>{d.version}</dd>
          <dt>Node uptime</dt>
          <dd>{duration(d.node_uptime_s)}</dd>
          <dt>Encoder</dt>
          <dd>
            {d.encoder} {d.hardware_encoder ? "(hardware)" : "(software — no hardware encoder found)"}
          </dd>
          <dt>Status LED</dt>
          <dd data-testid="status-led">{d.hardware.status_led ? `${d.hardware.status_led}: ${SHOWING[d.hardware.showing] ?? d.hardware.showing}` : "none found"}</dd>
          <dt>Button</dt>
          <dd>{d.hardware.button ?? "none found"}</dd>
          {s && (
            <>
              <dt>Host</dt>
              <dd>
                {s.hostname ?? "—"} · {s.os ?? ""} · kernel {s.kernel ?? "—"} · up {duration(s.system_uptime_s)}
              </dd>
              <dt>CPU</dt>
              <dd>
                {s.cpu_percent.toFixed(1)}% of {s.cpu_cores} cores · load {s.load_average.map((l) => l.toFixed(2)).join(" ")}
              </dd>
              <dt>Memory</dt>
              <dd>
                {bytes(s.memory_used_bytes)} of {bytes(s.memory_total_bytes)}
              </dd>
              <dt>Disk</dt>
              <dd>{s.disk ? `${bytes(s.disk.available_bytes)} free of ${bytes(s.disk.total_bytes)} (${s.disk.mount_point})` : "—"}</dd>
              <dt>Temperatures</dt>
              <dd>{s.temperatures.length ? s.temperatures.map((t) => `${t.label} ${t.celsius.toFixed(0)}°C`).join(" · ") : "no sensors"}</dd>
              <dt>GPU</dt>
              <dd data-testid="gpu">
                {s.gpu.source === "not_present"
                  ? "not present"
                  : `${s.gpu.name ?? "GPU"} (${s.gpu.source === "nvml" ? "NVML" : "Jetson"}) ${s.gpu.utilization_percent?.toFixed(0) ?? "—"}%${s.gpu.temperature_celsius != null ? ` · ${s.gpu.temperature_celsius.toFixed(0)}°C` : ""}`}
              </dd>
              <dt>Network</dt>
              <dd>
                {s.network
                  .filter((n) => n.addresses.length && n.name !== "lo")
                  .map((n) => `${n.name}: ${n.addresses.join(", ")}`)
                  .join(" · ") || "—"}
              </dd>
            </>
          )}
        </dl>
      )}
      <h2>Last hour</h2>
      <div class="charts">
        <Chart title="CPU and GPU" series={[{ label: "CPU", values: pts.map((p) => p.cpu_percent ?? null), color: "#2a7de1" }, { label: "GPU", values: pts.map((p) => p.gpu_percent ?? null), color: "#9b51e0" }]} />
        <Chart title="Memory and disk used" series={[{ label: "memory", values: pts.map((p) => p.memory_used_percent ?? null), color: "#27ae60" }, { label: "disk", values: pts.map((p) => p.disk_used_percent ?? null), color: "#e67e22" }]} />
        <Chart title="Hottest sensor" unit="°C" max={110} series={[{ label: "temperature", values: pts.map((p) => p.max_temperature_celsius ?? null), color: "#e74c3c" }]} />
      </div>
      <SystemUpdate />
      <FactoryReset />
    </section>
  );
}
