// Detections: the objects streams' detectors followed, with their best pictures, filtered by
// stream, label and time; and the models the node can run (the runtime, shipped and uploaded
// models, uploads and removal for admins).
import { useState } from "preact/hooks";
import { ApiError, Stream, api, get, upload as sendFile } from "../api";
import type { AiView, DetectionView, Model } from "../api.gen";
import { ErrorBox, Field, usePoll } from "../ui";

const SINCE = [
  ["", "any time"],
  ["3600000", "last hour"],
  ["86400000", "last day"],
  ["604800000", "last week"],
] as const;

export function Detections({ admin }: { admin: boolean }) {
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const [stream, setStream] = useState(params.get("stream") ?? "");
  const [label, setLabel] = useState("");
  const [since, setSince] = useState("");
  const streams = usePoll(() => get<Stream[]>("/api/streams"), 10000);
  const list = usePoll(
    () => {
      const q = new URLSearchParams({ limit: "200" });
      if (stream) q.set("stream_id", stream);
      if (label.trim()) q.set("label", label.trim());
      if (since) q.set("since", String(Date.now() - Number(since)));
      return get<DetectionView[]>(`/api/detections?${q}`);
    },
    5000,
    [stream, label, since],
  );
  const names = new Map((streams.value ?? []).map((s) => [s.id, s.name]));
  return (
    <section>
      <h1>Detections</h1>
      <Models admin={admin} />
      <h2>Objects seen</h2>
      <form class="row filters" onSubmit={(e) => e.preventDefault()}>
        <Field label="Stream">
          <select value={stream} data-testid="filter-stream" onChange={(e) => setStream((e.target as HTMLSelectElement).value)}>
            <option value="">all</option>
            {(streams.value ?? []).map((s) => (
              <option value={s.id}>{s.name}</option>
            ))}
          </select>
        </Field>
        <Field label="Label">
          <input value={label} placeholder="person" data-testid="filter-label" onInput={(e) => setLabel((e.target as HTMLInputElement).value)} />
        </Field>
        <Field label="When">
          <select value={since} onChange={(e) => setSince((e.target as HTMLSelectElement).value)}>
            {SINCE.map(([v, t]) => (
              <option value={v}>{t}</option>
            ))}
          </select>
        </Field>
      </form>
      <ErrorBox error={list.error} />
      <div class="grid detections">
        {(list.value ?? []).map((d) => (
          <article class="card detection" data-testid="detection">
            {d.snapshot_url ? (
              <img src={d.snapshot_url} alt={`${d.label} on ${names.get(d.stream_id) ?? d.stream_id}`} loading="lazy" />
            ) : (
              <div class="preview empty">no picture kept</div>
            )}
            <p>
              <b>{d.label}</b> {(d.score * 100).toFixed(0)} % · {names.get(d.stream_id) ?? d.stream_id}
              {d.zones.length > 0 && <> · in {d.zones.join(", ")}</>}
            </p>
            <p class="muted">
              {new Date(d.started_ms).toLocaleString()}
              {d.ended_ms ? ` – ${new Date(d.ended_ms).toLocaleTimeString()}` : " · still there"}
            </p>
          </article>
        ))}
        {list.value?.length === 0 && <p class="muted">Nothing seen{stream || label || since ? " that matches" : " yet"}.</p>}
      </div>
    </section>
  );
}

/// The runtime and the models; uploads are checked by the node before they are kept.
function Models({ admin }: { admin: boolean }) {
  const ai = usePoll(() => get<AiView>("/api/ai"), 30000);
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<unknown>(null);
  const [form, setForm] = useState({ name: "", kind: "yolo", width: 640, height: 640, labels: "" });
  const rt = ai.value?.runtime;
  const upload = async (e: Event) => {
    e.preventDefault();
    const input = (e.target as HTMLFormElement).querySelector<HTMLInputElement>("input[type=file]");
    const file = input?.files?.[0];
    if (!file) return setErr(new ApiError(400, "file", "choose an .onnx file"));
    setBusy(true);
    setErr(null);
    try {
      const q = new URLSearchParams({ name: form.name || file.name, kind: form.kind, width: String(form.width), height: String(form.height) });
      if (form.labels.trim()) q.set("labels", form.labels.trim());
      await sendFile(`/api/ai/models?${q}`, file);
      ai.reload();
    } catch (e) {
      setErr(e);
    } finally {
      setBusy(false);
    }
  };
  const remove = async (m: Model) => {
    if (!confirm(`Remove the model ${m.descriptor.name}? Streams that use it stop detecting.`)) return;
    try {
      await api("DELETE", `/api/ai/models/${m.id}`);
      ai.reload();
    } catch (e) {
      setErr(e);
    }
  };
  return (
    <div class="card" data-testid="models">
      <h2>Models</h2>
      <ErrorBox error={ai.error} />
      {rt && (
        <p class={rt.error ? "warning" : "muted"} data-testid="runtime">
          {rt.error
            ? `Inference is unavailable: ${rt.error}`
            : `ONNX Runtime ${rt.version ?? ""} · providers built in: ${rt.providers
                .filter((p) => p.compiled_in)
                .map((p) => p.name)
                .join(", ")} · ${rt.intra_threads} thread(s) per model`}
        </p>
      )}
      {ai.value && !ai.value.object_detector && (
        <p class="warning" data-testid="no-detector">
          No object detector is installed; only faces (CenterFace, shipped) can be detected. Upload a YOLO-family model to detect
          people, vehicles and other objects — YOLOX (Apache-2.0) is one you may ship in a product.
        </p>
      )}
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Kind</th>
            <th>Input</th>
            <th>Labels</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(ai.value?.models ?? []).map((m) => (
            <tr data-testid={`model-${m.id}`}>
              <td>
                {m.descriptor.name} <code class="muted">{m.id}</code>
              </td>
              <td>
                {m.descriptor.kind}
                {m.layout ? ` (${m.layout})` : ""}
              </td>
              <td>
                {m.descriptor.width}×{m.descriptor.height}
              </td>
              <td>{(m.descriptor.labels ?? []).slice(0, 8).join(", ") + ((m.descriptor.labels ?? []).length > 8 ? "…" : "")}</td>
              <td>
                {admin && !m.builtin && (
                  <button type="button" class="link" onClick={() => remove(m)}>
                    Remove
                  </button>
                )}
                {m.builtin && <span class="muted">shipped</span>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {admin && (
        <form class="row" onSubmit={upload} data-testid="upload">
          <Field label="Model file (.onnx)">
            <input type="file" accept=".onnx" />
          </Field>
          <Field label="Name">
            <input value={form.name} onInput={(e) => setForm({ ...form, name: (e.target as HTMLInputElement).value })} />
          </Field>
          <Field label="Kind">
            <select value={form.kind} onChange={(e) => setForm({ ...form, kind: (e.target as HTMLSelectElement).value })}>
              <option value="yolo">YOLO (v5, v8/v11, X)</option>
              <option value="centerface">CenterFace</option>
            </select>
          </Field>
          <Field label="Input width">
            <input type="number" step={32} min={32} value={form.width} onInput={(e) => setForm({ ...form, width: Number((e.target as HTMLInputElement).value) })} />
          </Field>
          <Field label="Input height">
            <input type="number" step={32} min={32} value={form.height} onInput={(e) => setForm({ ...form, height: Number((e.target as HTMLInputElement).value) })} />
          </Field>
          <Field label="Labels, comma-separated" hint="in class order, e.g. person,bicycle,car (COCO)">
            <input value={form.labels} onInput={(e) => setForm({ ...form, labels: (e.target as HTMLInputElement).value })} />
          </Field>
          <div class="actions">
            <button type="submit" disabled={busy}>
              {busy ? "Checking…" : "Upload"}
            </button>
          </div>
        </form>
      )}
      <ErrorBox error={err} />
    </div>
  );
}
