import { useState } from "preact/hooks";
import { api, get, upload } from "../api";
import { ErrorBox, usePoll } from "../ui";
import type { UpdateJob, UpdateView } from "../api.gen";

const ACTIVE = ["accepted", "downloading", "installing", "rebooting"];

function jobLine(j: UpdateJob): string {
  const pct = j.progress != null ? ` ${j.progress}%` : "";
  const what = j.message ? ` — ${j.message}` : "";
  const why = j.reason ? ` — ${j.reason}` : "";
  return `${j.state}${pct}${what}${why}`;
}

/// Both root slots, the last update's outcome, and updates from a bundle file or URL.
export function SystemUpdate() {
  const view = usePoll(() => get<UpdateView>("/api/system/update"), 3000);
  const [url, setUrl] = useState("");
  const [sha, setSha] = useState("");
  const [file, setFile] = useState<File | null>(null);
  const [error, setError] = useState<unknown>(null);
  const v = view.value;
  const busy = v ? ACTIVE.includes(v.job.state) : true;
  const sha256 = sha.trim() || undefined;
  const start = async (run: () => Promise<unknown>) => {
    setError(null);
    try {
      await run();
      view.reload();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <div data-testid="system-update">
      <h2>System update</h2>
      <ErrorBox error={view.error} />
      <ErrorBox error={error} />
      {v && !v.system && <p>Updates are not available here: {v.unavailable ?? "no update service"}.</p>}
      {v?.system && (
        <table>
          <thead>
            <tr><th>Slot</th><th>State</th><th>Marked</th><th>Version</th><th>Installed</th></tr>
          </thead>
          <tbody>
            {v.system.slots.map((s) => (
              <tr key={s.name}>
                <td>
                  {s.bootname}
                  {s.bootname === v.system?.booted ? " (running)" : ""}
                  {s.bootname === v.system?.primary ? " (boots next)" : ""}
                </td>
                <td>{s.state}</td>
                <td>{s.boot_status || "—"}</td>
                <td>{s.bundle_version ?? "factory image"}</td>
                <td>{s.installed_timestamp ?? "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {v && v.job.state !== "idle" && <p data-testid="update-job">Last update: {jobLine(v.job)}</p>}
      {v?.system && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            if (file) start(() => upload(`/api/system/update/bundle${sha256 ? `?sha256=${sha256}` : ""}`, file));
            else if (url) start(() => api("POST", "/api/system/update", { url, sha256 }));
          }}
        >
          <label>
            Bundle file (.raucb) <input type="file" accept=".raucb" onChange={(e) => setFile((e.target as HTMLInputElement).files?.[0] ?? null)} />
          </label>
          <label>
            or its URL <input type="url" value={url} placeholder="https://…/update.raucb" onInput={(e) => setUrl((e.target as HTMLInputElement).value)} />
          </label>
          <label>
            SHA-256 (optional) <input value={sha} onInput={(e) => setSha((e.target as HTMLInputElement).value)} />
          </label>
          <button type="submit" disabled={busy || (!file && !url)}>
            Install and reboot
          </button>
        </form>
      )}
    </div>
  );
}
