import { useState } from "preact/hooks";
import { ApiError, Rendition, Stream, api, get } from "../api";
import { ErrorBox, Field, StateBadge, usePoll } from "../ui";

type Kind = "test" | "rtmp" | "rtsp" | "v4l2";
interface Draft {
  id?: string;
  name: string;
  kind: Kind;
  url: string;
  username: string;
  password: string;
  device: string;
  width: number;
  height: number;
  fps: number;
  ladder: Rendition[];
  enabled: boolean;
}

const DEFAULT_LADDER: Rendition[] = [
  { name: "source", width: 0, height: 0, bitrate_kbps: 4000 },
  { name: "480p", width: 0, height: 480, bitrate_kbps: 1200 },
  { name: "360p", width: 0, height: 360, bitrate_kbps: 700 },
];

function blank(): Draft {
  return { name: "", kind: "rtmp", url: "", username: "", password: "", device: "", width: 1280, height: 720, fps: 30, ladder: DEFAULT_LADDER.map((r) => ({ ...r })), enabled: true };
}

function fromStream(s: Stream): Draft {
  const src = s.source;
  return {
    id: s.id,
    name: s.name,
    kind: src.kind,
    url: src.url ?? "",
    username: src.username ?? "",
    password: "",
    device: src.device ?? "",
    width: src.width ?? 1280,
    height: src.height ?? 720,
    fps: src.fps ?? 30,
    ladder: s.ladder.map((r) => ({ name: r.name, width: r.width ?? 0, height: r.height ?? 0, bitrate_kbps: r.bitrate_kbps, fps: r.fps ?? null })),
    enabled: s.enabled,
  };
}

/// The same rules the node applies, so mistakes show while typing.
export function ladderErrors(ladder: Rendition[]): Record<string, string> {
  const errs: Record<string, string> = {};
  if (ladder.length === 0) errs["ladder"] = "at least one rendition";
  if (ladder.length > 8) errs["ladder"] = "at most 8 renditions";
  ladder.forEach((r, i) => {
    const f = (k: string) => `ladder[${i}].${k}`;
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(r.name)) errs[f("name")] = "1 to 32 of A-Z, a-z, 0-9, '-', '_'";
    else if (ladder.slice(0, i).some((o) => o.name === r.name)) errs[f("name")] = `'${r.name}' is used twice`;
    for (const k of ["width", "height"] as const) {
      const v = r[k];
      if (v && (v < 16 || v > 4320)) errs[f(k)] = "16 to 4320, or 0 for the source size";
      else if (v && v % 2) errs[f(k)] = "must be even (H.264 4:2:0)";
    }
    if (r.width && !r.height) errs[f("height")] = "needed when a width is given";
    if (!Number.isInteger(r.bitrate_kbps) || r.bitrate_kbps < 1 || r.bitrate_kbps > 100000) errs[f("bitrate_kbps")] = "1 to 100000";
  });
  if (ladder.filter((r) => !r.width && !r.height).length > 1) errs["ladder"] = "only one rendition may keep the source size";
  return errs;
}

function toSpec(d: Draft) {
  const source: any = { kind: d.kind };
  if (d.kind === "rtsp") {
    source.url = d.url;
    if (d.username) source.username = d.username;
    if (d.password) source.password = d.password;
  }
  if (d.kind === "v4l2") Object.assign(source, { device: d.device, width: d.width, height: d.height, fps: d.fps });
  if (d.kind === "test") Object.assign(source, { width: d.width, height: d.height, fps: d.fps });
  const ladder = d.ladder.map((r) => {
    const o: any = { name: r.name, bitrate_kbps: r.bitrate_kbps };
    if (r.height) o.height = r.height;
    if (r.width) o.width = r.width;
    if (r.fps) o.fps = r.fps;
    return o;
  });
  return { name: d.name, source, ladder, enabled: d.enabled };
}

function Editor({ draft, onClose }: { draft: Draft; onClose: (saved: boolean) => void }) {
  const [d, setD] = useState<Draft>(draft);
  const [err, setErr] = useState<ApiError | null>(null);
  const cameras = usePoll(() => get<{ path: string; name: string }[]>("/api/cameras"), 60000);
  const errs = ladderErrors(d.ladder);
  const set = (k: keyof Draft, num = false) => (e: Event) => {
    const v = (e.target as HTMLInputElement).value;
    setD({ ...d, [k]: num ? Number(v) : v });
  };
  const setR = (i: number, k: keyof Rendition, num = false) => (e: Event) => {
    const v = (e.target as HTMLInputElement).value;
    const ladder = d.ladder.map((r, j) => (j === i ? { ...r, [k]: num ? (v === "" ? 0 : Number(v)) : v } : r));
    setD({ ...d, ladder });
  };
  const server = (field: string) => (err?.field === field ? err.message : null);
  const save = async (e: Event) => {
    e.preventDefault();
    if (Object.keys(errs).length) return;
    try {
      if (d.id) await api("PUT", `/api/streams/${d.id}`, toSpec(d));
      else await api("POST", "/api/streams", toSpec(d));
      onClose(true);
    } catch (e) {
      setErr(e as ApiError);
    }
  };
  return (
    <form class="card editor" onSubmit={save} aria-label={d.id ? "Edit stream" : "Add stream"}>
      <h2>{d.id ? `Edit ${draft.name}` : "Add a stream"}</h2>
      <Field label="Name" error={server("name")}>
        <input name="name" required maxLength={100} value={d.name} onInput={set("name")} />
      </Field>
      <Field label="Source">
        <select name="kind" value={d.kind} onChange={set("kind")} disabled={!!d.id && d.kind === "rtmp"}>
          <option value="rtmp">RTMP push (OBS, encoders)</option>
          <option value="rtsp">RTSP camera</option>
          <option value="v4l2">USB / CSI camera</option>
          <option value="test">Test pattern</option>
        </select>
      </Field>
      {d.kind === "rtsp" && (
        <>
          <Field label="RTSP URL" error={server("source.url")}>
            <input name="url" required placeholder="rtsp://camera/stream" value={d.url} onInput={set("url")} />
          </Field>
          <Field label="User">
            <input name="rtsp-user" value={d.username} onInput={set("username")} autocomplete="off" />
          </Field>
          <Field label="Password" hint={d.id ? "leave empty to keep the stored one" : undefined}>
            <input name="rtsp-password" type="password" value={d.password} onInput={set("password")} autocomplete="new-password" />
          </Field>
        </>
      )}
      {d.kind === "v4l2" && (
        <Field label="Camera" error={server("source.device")}>
          <select name="device" value={d.device} onChange={set("device")} required>
            <option value="">Choose…</option>
            {(cameras.value ?? []).map((c) => (
              <option value={c.path}>
                {c.name} ({c.path})
              </option>
            ))}
          </select>
        </Field>
      )}
      {(d.kind === "v4l2" || d.kind === "test") && (
        <div class="row">
          <Field label="Width" error={server("source.width")}>
            <input type="number" value={d.width} onInput={set("width", true)} />
          </Field>
          <Field label="Height" error={server("source.height")}>
            <input type="number" value={d.height} onInput={set("height", true)} />
          </Field>
          <Field label="FPS" error={server("source.fps")}>
            <input type="number" value={d.fps} onInput={set("fps", true)} />
          </Field>
        </div>
      )}
      <fieldset class="ladder">
        <legend>Ladder {errs["ladder"] && <small class="error">{errs["ladder"]}</small>}</legend>
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Width</th>
              <th>Height</th>
              <th>kbit/s</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {d.ladder.map((r, i) => {
              const e = (k: string) => errs[`ladder[${i}].${k}`] ?? server(`ladder[${i}].${k}`);
              return (
                <tr>
                  {(["name", "width", "height", "bitrate_kbps"] as const).map((k) => (
                    <td>
                      <input
                        aria-label={`rendition ${i + 1} ${k}`}
                        class={e(k) ? "bad" : ""}
                        type={k === "name" ? "text" : "number"}
                        value={k === "name" ? r.name : r[k] || ""}
                        placeholder={k === "name" ? "" : k === "bitrate_kbps" ? "" : "source"}
                        onInput={setR(i, k, k !== "name")}
                        aria-invalid={!!e(k)}
                        title={e(k) ?? undefined}
                      />
                      {e(k) && <small class="error">{e(k)}</small>}
                    </td>
                  ))}
                  <td>
                    <button type="button" class="link" aria-label={`remove rendition ${r.name}`} onClick={() => setD({ ...d, ladder: d.ladder.filter((_, j) => j !== i) })}>
                      ✕
                    </button>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        <button type="button" class="secondary" onClick={() => setD({ ...d, ladder: [...d.ladder, { name: `r${d.ladder.length + 1}`, width: 0, height: 240, bitrate_kbps: 400 }] })}>
          Add rendition
        </button>
      </fieldset>
      <label class="check">
        <input type="checkbox" checked={d.enabled} onChange={(e) => setD({ ...d, enabled: (e.target as HTMLInputElement).checked })} /> Running
      </label>
      <ErrorBox error={err && !err.field ? err : null} />
      <div class="actions">
        <button type="submit" disabled={Object.keys(errs).length > 0}>
          Save
        </button>
        <button type="button" class="secondary" onClick={() => onClose(false)}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function copy(text: string) {
  navigator.clipboard?.writeText(text).catch(() => {});
}

export function Streams({ admin }: { admin: boolean }) {
  const streams = usePoll(() => get<Stream[]>("/api/streams"), 3000);
  const [editing, setEditing] = useState<Draft | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const act = async (method: string, path: string) => {
    try {
      await api(method, path);
      streams.setValue(await get<Stream[]>("/api/streams"));
    } catch (e) {
      setErr(e);
    }
  };
  const closed = async (saved: boolean) => {
    setEditing(null);
    if (saved) streams.setValue(await get<Stream[]>("/api/streams"));
  };
  return (
    <section>
      <h1>Streams</h1>
      <ErrorBox error={err ?? streams.error} />
      {admin && !editing && (
        <button onClick={() => setEditing(blank())} data-testid="add-stream">
          Add stream
        </button>
      )}
      {editing && <Editor draft={editing} onClose={closed} />}
      <ul class="list">
        {(streams.value ?? []).map((s) => (
          <li class="card" data-testid={`row-${s.id}`}>
            <div class="row spread">
              <h2>{s.name}</h2>
              <StateBadge state={s.status.state} />
            </div>
            <p class="muted">
              {s.source.kind.toUpperCase()}
              {s.source.url ? ` · ${s.source.url}` : ""} · {s.ladder.map((r) => r.name).join(", ")}
            </p>
            {s.status.last_error && <p class="error">{s.status.last_error}</p>}
            {s.rtmp_url && (
              <div class="push">
                <span>OBS server</span>
                <code data-testid="rtmp-server">{s.rtmp_url.replace(/\/[^/]+$/, "")}</code>
                <button class="link" onClick={() => copy(s.rtmp_url!.replace(/\/[^/]+$/, ""))}>
                  copy
                </button>
                <span>Stream key</span>
                <code data-testid="rtmp-key">{s.source.stream_key}</code>
                <button class="link" onClick={() => copy(s.source.stream_key)}>
                  copy
                </button>
              </div>
            )}
            {admin && (
              <div class="actions">
                {s.enabled ? (
                  <button class="secondary" onClick={() => act("POST", `/api/streams/${s.id}/stop`)}>
                    Stop
                  </button>
                ) : (
                  <button class="secondary" onClick={() => act("POST", `/api/streams/${s.id}/start`)}>
                    Start
                  </button>
                )}
                <button class="secondary" onClick={() => setEditing(fromStream(s))}>
                  Edit
                </button>
                <button
                  class="danger"
                  onClick={() => {
                    if (confirm(`Remove ${s.name}?`)) act("DELETE", `/api/streams/${s.id}`);
                  }}
                >
                  Remove
                </button>
              </div>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}
