import { useState } from "preact/hooks";
import { ApiError, Rendition, Stream, api, bytes, get } from "../api";
import type { AiView, Microphone, OffloadStatus, RecordingStatus, RestreamStatus, SourceSpec, Zone } from "../api.gen";
import { DEFAULT_LADDER, LIMITS } from "../spec.gen";
import type { OnvifCamera as Camera, OnvifDevice as Device, OnvifInterface as Interface } from "../api.gen";
import { ErrorBox, Field, StateBadge, usePoll } from "../ui";

type Kind = SourceSpec["kind"];
/// Every kind's fields, each optional: the editor reads whichever the stream's kind has.
type Fields<K extends Kind> = Partial<Omit<Extract<SourceSpec, { kind: K }>, "kind">>;
type AnySource = { kind: Kind } & Fields<"test"> & Fields<"v4l2"> & Fields<"rtsp"> & Fields<"uri"> & Omit<Fields<"srt">, "url">;
interface Draft {
  id?: string;
  name: string;
  kind: Kind;
  url: string;
  username: string;
  password: string;
  transport: "tcp" | "udp";
  latency_ms: number;
  device: string;
  width: number;
  height: number;
  fps: number;
  pattern: string;
  /// A test pattern's 1 kHz tone.
  tone: boolean;
  /// A camera's microphone (ALSA); empty: none.
  audio_device: string;
  uri: string;
  srt_mode: "listener" | "caller";
  srt_port: number;
  /// Both secrets: empty keeps the stored ones.
  passphrase: string;
  stream_id: string;
  /// Empty: the encoder the node probed.
  encoder: string;
  ladder: Rendition[];
  enabled: boolean;
  /// Transcoded by an orchestrator on the Livepeer network.
  offload: boolean;
  /// RTMP(S) destinations; an empty key keeps the stored one.
  restream: RestreamDraft[];
  /// Recorded continuously, and which rendition (empty: the largest).
  recording: "off" | "continuous" | "events";
  recording_rendition: string;
  /// On events: seconds kept before and after, and the labels that count (comma-separated).
  pre_roll: number;
  post_roll: number;
  recording_labels: string;
  /// Object detection: the model (empty: none), pictures a second, labels (comma-separated;
  /// empty: all), min score (empty: the model's), min duration, zones.
  ai_model: string;
  ai_fps: number;
  ai_labels: string;
  ai_min_score: string;
  ai_min_duration_ms: number;
  zones: Zone[];
  /// Privacy mode: faces covered in every output.
  blur_faces: boolean;
  /// The stream as stored, so that an edit changes only what the editor shows.
  original?: Stream;
}

interface RestreamDraft {
  name: string;
  server: string;
  key: string;
  has_key: boolean;
  rendition: string;
  enabled: boolean;
}

function blank(): Draft {
  return {
    name: "", kind: "rtmp", url: "", username: "", password: "", transport: "tcp", latency_ms: 200, device: "",
    width: 1280, height: 720, fps: 30, pattern: "smpte", tone: false, audio_device: "", uri: "", encoder: "",
    srt_mode: "listener", srt_port: 9000, passphrase: "", stream_id: "",
    ladder: DEFAULT_LADDER.map((r) => ({ ...r, width: r.width ?? 0, height: r.height ?? 0 })), enabled: true,
    offload: false,
    restream: [],
    recording: "off",
    recording_rendition: "",
    pre_roll: 5,
    post_roll: 10,
    recording_labels: "",
    ai_model: "",
    ai_fps: 5,
    ai_labels: "",
    ai_min_score: "",
    ai_min_duration_ms: 1000,
    zones: [],
    blur_faces: false,
  };
}

function fromStream(s: Stream): Draft {
  const src = s.source as AnySource;
  return {
    id: s.id,
    name: s.name,
    kind: src.kind,
    url: src.url ?? "",
    username: src.username ?? "",
    password: "",
    transport: src.transport ?? "tcp",
    latency_ms: src.latency_ms ?? 200,
    device: src.device ?? "",
    width: src.width ?? 1280,
    height: src.height ?? 720,
    fps: src.fps ?? 30,
    pattern: src.pattern ?? "smpte",
    tone: src.tone ?? false,
    audio_device: src.audio_device ?? "",
    uri: src.uri ?? "",
    srt_mode: src.mode ?? "listener",
    srt_port: src.port ?? 9000,
    passphrase: "",
    stream_id: "",
    encoder: s.encoder ?? "",
    ladder: s.ladder.map((r) => ({ ...r, width: r.width ?? 0, height: r.height ?? 0 })),
    enabled: s.enabled,
    offload: s.offload ?? false,
    restream: (s.restream ?? []).map((t) => ({
      name: t.name, server: t.server, key: "", has_key: t.has_key, rendition: t.rendition ?? "", enabled: t.enabled,
    })),
    recording: s.recording?.mode ?? "off",
    recording_rendition: s.recording?.rendition ?? "",
    pre_roll: s.recording?.pre_roll_seconds ?? 5,
    post_roll: s.recording?.post_roll_seconds ?? 10,
    recording_labels: (s.recording?.labels ?? []).join(", "),
    ai_model: s.ai?.model ?? "",
    ai_fps: s.ai?.fps ?? 5,
    ai_labels: (s.ai?.labels ?? []).join(", "),
    ai_min_score: s.ai?.min_score == null ? "" : String(s.ai.min_score),
    ai_min_duration_ms: s.ai?.min_duration_ms ?? 1000,
    zones: s.ai?.zones ?? [],
    blur_faces: s.privacy?.blur_faces ?? false,
    original: s,
  };
}

/// The same rules the node applies, so mistakes show while typing.
export function ladderErrors(ladder: Rendition[]): Record<string, string> {
  const errs: Record<string, string> = {};
  if (ladder.length === 0) errs["ladder"] = "at least one rendition";
  if (ladder.length > LIMITS.renditions.max) errs["ladder"] = `at most ${LIMITS.renditions.max} renditions`;
  ladder.forEach((r, i) => {
    const f = (k: string) => `ladder[${i}].${k}`;
    if (!new RegExp(LIMITS.name).test(r.name)) errs[f("name")] = "1 to 32 of A-Z, a-z, 0-9, '-', '_'";
    else if (ladder.slice(0, i).some((o) => o.name === r.name)) errs[f("name")] = `'${r.name}' is used twice`;
    for (const k of ["width", "height"] as const) {
      const v = r[k];
      const { min, max } = LIMITS[k];
      if (v && (v < min || v > max)) errs[f(k)] = `${min} to ${max}, or 0 for the source size`;
      else if (v && v % 2) errs[f(k)] = "must be even (H.264 4:2:0)";
    }
    if (r.width && !r.height) errs[f("height")] = "needed when a width is given";
    const kbps = LIMITS.bitrate_kbps;
    if (!Number.isInteger(r.bitrate_kbps) || r.bitrate_kbps < kbps.min || r.bitrate_kbps > kbps.max)
      errs[f("bitrate_kbps")] = `${kbps.min} to ${kbps.max}`;
  });
  if (ladder.filter((r) => !r.width && !r.height).length > 1) errs["ladder"] = "only one rendition may keep the source size";
  return errs;
}

/// The body of a create or a PUT. An edit starts from the stored stream, so fields the
/// editor does not show survive; secrets are left out, which keeps the stored ones.
export function toSpec(d: Draft) {
  const kept: Record<string, unknown> =
    d.original && d.original.source.kind === d.kind ? { ...d.original.source } : {};
  delete kept.has_password;
  delete kept.has_stream_key;
  const source: any = { ...kept, kind: d.kind };
  if (d.kind === "rtsp") {
    Object.assign(source, { url: d.url, transport: d.transport, latency_ms: d.latency_ms });
    if (d.username) source.username = d.username;
    else delete source.username;
    if (d.password) source.password = d.password;
  }
  if (d.kind === "v4l2") {
    Object.assign(source, { device: d.device, width: d.width, height: d.height, fps: d.fps });
    if (d.audio_device) source.audio_device = d.audio_device;
    else delete source.audio_device;
  }
  if (d.kind === "test") Object.assign(source, { width: d.width, height: d.height, fps: d.fps, pattern: d.pattern, tone: d.tone });
  if (d.kind === "uri") source.uri = d.uri;
  if (d.kind === "srt") {
    source.mode = d.srt_mode;
    if (d.srt_mode === "listener") {
      source.port = d.srt_port;
      delete source.url;
    } else {
      source.url = d.url;
      delete source.port;
    }
    if (d.passphrase) source.passphrase = d.passphrase;
    if (d.stream_id) source.stream_id = d.stream_id;
  }
  const ladder = d.ladder.map((r) => {
    const o: any = { ...r };
    for (const k of ["width", "height", "fps", "gop_frames"] as const) if (!o[k]) delete o[k];
    if (!o.profile) delete o.profile;
    return o;
  });
  const restream = d.restream.map((t) => {
    const o: any = { name: t.name, server: t.server, enabled: t.enabled };
    if (t.key) o.key = t.key;
    if (t.rendition) o.rendition = t.rendition;
    return o;
  });
  const recording: any = {
    mode: d.recording,
    pre_roll_seconds: d.pre_roll,
    post_roll_seconds: d.post_roll,
    labels: d.recording_labels.split(",").map((l) => l.trim()).filter((l) => l),
  };
  if (d.recording_rendition) recording.rendition = d.recording_rendition;
  const ai: any = {
    model: d.ai_model || null,
    fps: d.ai_fps,
    labels: d.ai_labels.split(",").map((l) => l.trim()).filter((l) => l),
    min_duration_ms: d.ai_min_duration_ms,
    zones: d.zones,
  };
  if (d.ai_min_score.trim()) ai.min_score = Number(d.ai_min_score);
  const privacy = { blur_faces: d.blur_faces };
  const spec: any = { name: d.name, source, ladder, enabled: d.enabled, offload: d.offload, restream, recording, ai, privacy };
  if (d.encoder) spec.encoder = d.encoder;
  return spec;
}

function Editor({ draft, onClose }: { draft: Draft; onClose: (saved: boolean, created?: Stream) => void }) {
  const [d, setD] = useState<Draft>(draft);
  const [err, setErr] = useState<ApiError | null>(null);
  const cameras = usePoll(() => get<{ path: string; name: string }[]>("/api/cameras"), 60000);
  const microphones = usePoll(() => get<Microphone[]>("/api/microphones"), 60000);
  const encoders = usePoll(() => get<{ preferred: string; encoders: { element: string; hardware: boolean; works: boolean }[] }>("/api/encoders"), 60000);
  const ai = usePoll(() => get<AiView>("/api/ai"), 60000);
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
      if (d.id) {
        await api("PUT", `/api/streams/${d.id}`, toSpec(d));
        onClose(true);
      } else {
        onClose(true, await api<Stream>("POST", "/api/streams", toSpec(d)));
      }
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
          <option value="srt">SRT (encoder or server)</option>
          <option value="v4l2">USB / CSI camera</option>
          <option value="uri">File or URL</option>
          <option value="test">Test pattern</option>
        </select>
      </Field>
      {d.kind === "uri" && (
        <Field label="File or URL" error={server("source.uri")}>
          <input name="uri" required placeholder="/srv/video/loop.mp4 or https://…" value={d.uri} onInput={set("uri")} />
        </Field>
      )}
      {d.kind === "test" && (
        <div class="row">
          <Field label="Pattern" error={server("source.pattern")}>
            <select name="pattern" value={d.pattern} onChange={set("pattern")}>
              {["smpte", "ball", "snow", "black"].map((p) => (
                <option value={p}>{p}</option>
              ))}
            </select>
          </Field>
          <label class="check">
            <input type="checkbox" name="tone" checked={d.tone} onChange={(e) => setD({ ...d, tone: (e.target as HTMLInputElement).checked })} /> 1 kHz tone
          </label>
        </div>
      )}
      {d.kind === "rtsp" && (
        <>
          {!d.id && (
            <OnvifFinder
              user={d.username}
              password={d.password}
              onPick={(url, name) => setD({ ...d, url, name: d.name || name })}
            />
          )}
          <Field label="RTSP URL" error={server("source.url")}>
            <input name="url" required placeholder="rtsp://camera/stream" value={d.url} onInput={set("url")} />
          </Field>
          <Field label="User">
            <input name="rtsp-user" value={d.username} onInput={set("username")} autocomplete="off" />
          </Field>
          <Field label="Password" hint={d.id ? "leave empty to keep the stored one" : undefined}>
            <input name="rtsp-password" type="password" value={d.password} onInput={set("password")} autocomplete="new-password" />
          </Field>
          <div class="row">
            <Field label="Transport" error={server("source.transport")}>
              <select name="transport" value={d.transport} onChange={set("transport")}>
                <option value="tcp">TCP</option>
                <option value="udp">UDP</option>
              </select>
            </Field>
            <Field label="Latency (ms)" error={server("source.latency_ms")}>
              <input name="latency" type="number" value={d.latency_ms} onInput={set("latency_ms", true)} />
            </Field>
          </div>
        </>
      )}
      {d.kind === "srt" && (
        <>
          <Field label="Mode">
            <select name="srt-mode" value={d.srt_mode} onChange={set("srt_mode")}>
              <option value="listener">Listen: the encoder calls this box</option>
              <option value="caller">Call an SRT server</option>
            </select>
          </Field>
          {d.srt_mode === "listener" ? (
            <Field label="UDP port" error={server("source.port")}>
              <input name="srt-port" type="number" min={1024} max={65535} value={d.srt_port} onInput={set("srt_port", true)} />
            </Field>
          ) : (
            <Field label="Server" error={server("source.url")}>
              <input name="srt-url" required placeholder="srt://host:port" value={d.url} onInput={set("url")} />
            </Field>
          )}
          <Field label="Passphrase" error={server("source.passphrase")} hint={d.id ? "leave empty to keep the stored one" : "10 to 79 characters; empty: unencrypted"}>
            <input name="srt-passphrase" type="password" value={d.passphrase} onInput={set("passphrase")} autocomplete="new-password" />
          </Field>
          <Field label="Stream id" error={server("source.stream_id")} hint={d.srt_mode === "listener" ? "callers must present it (the stream's key)" : undefined}>
            <input name="srt-stream-id" type="password" value={d.stream_id} onInput={set("stream_id")} autocomplete="off" />
          </Field>
        </>
      )}
      {d.kind === "v4l2" && (
        <div class="row">
          <Field label="Camera" error={server("source.device")}>
            <select
              name="device"
              value={d.device}
              onChange={(e) => {
                const device = (e.target as HTMLSelectElement).value;
                // A camera's own microphone comes with it.
                const own = (microphones.value ?? []).find((m) => m.camera === device);
                setD({ ...d, device, audio_device: own ? own.device : d.audio_device });
              }}
              required
            >
              <option value="">Choose…</option>
              {(cameras.value ?? []).map((c) => (
                <option value={c.path}>
                  {c.name} ({c.path})
                </option>
              ))}
            </select>
          </Field>
          <Field label="Microphone" error={server("source.audio_device")}>
            <select name="audio-device" value={d.audio_device} onChange={set("audio_device")}>
              <option value="">none</option>
              {(microphones.value ?? []).map((m) => (
                <option value={m.device}>
                  {m.name}
                  {m.camera ? ` (${m.camera === d.device ? "this camera's" : `of ${m.camera}`})` : ""}
                </option>
              ))}
            </select>
          </Field>
        </div>
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
      <Field label="Encoder" error={server("encoder")}>
        <select name="encoder" value={d.encoder} onChange={set("encoder")}>
          <option value="">Automatic ({encoders.value?.preferred ?? "probed"})</option>
          {(encoders.value?.encoders ?? [])
            .filter((e) => e.works || e.element === d.encoder)
            .map((e) => (
              <option value={e.element}>
                {e.element}
                {e.hardware ? " (hardware)" : ""}
              </option>
            ))}
        </select>
      </Field>
      <fieldset class="ladder">
        <legend>Ladder {errs["ladder"] && <small class="error">{errs["ladder"]}</small>}</legend>
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Width</th>
              <th>Height</th>
              <th>kbit/s</th>
              <th>Profile</th>
              <th>GOP</th>
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
                    <select aria-label={`rendition ${i + 1} profile`} value={r.profile ?? "high"} onChange={setR(i, "profile")}>
                      {["baseline", "main", "high"].map((p) => (
                        <option value={p}>{p}</option>
                      ))}
                    </select>
                  </td>
                  <td>
                    <input
                      aria-label={`rendition ${i + 1} gop_frames`}
                      type="number"
                      value={r.gop_frames || ""}
                      placeholder="per segment"
                      onInput={setR(i, "gop_frames", true)}
                      title={e("gop_frames") ?? undefined}
                    />
                    {e("gop_frames") && <small class="error">{e("gop_frames")}</small>}
                  </td>
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
        <input
          type="checkbox"
          name="offload"
          checked={d.offload}
          onChange={(e) => setD({ ...d, offload: (e.target as HTMLInputElement).checked })}
        />{" "}
        Transcode on the Livepeer network (paid with tickets; encoded here whenever no orchestrator is available)
      </label>
      <fieldset>
        <legend>Restream to (YouTube, Facebook, a CDN)</legend>
        {d.restream.map((t, i) => {
          const setT = (k: keyof RestreamDraft, v: string | boolean) =>
            setD({ ...d, restream: d.restream.map((o, j) => (j === i ? { ...o, [k]: v } : o)) });
          const f = (k: string) => server(`restream[${i}].${k}`);
          return (
            <div class="row" data-testid={`restream-${i}`}>
              <Field label="Name" error={f("name")}>
                <input required maxLength={50} value={t.name} onInput={(e) => setT("name", (e.target as HTMLInputElement).value)} />
              </Field>
              <Field label="Server" error={f("server")}>
                <input required placeholder="rtmp://a.rtmp.youtube.com/live2" value={t.server} onInput={(e) => setT("server", (e.target as HTMLInputElement).value)} />
              </Field>
              <Field label="Stream key" error={f("key")}>
                <input type="password" autocomplete="off" placeholder={t.has_key ? "unchanged" : ""} value={t.key} onInput={(e) => setT("key", (e.target as HTMLInputElement).value)} />
              </Field>
              <Field label="Rendition" error={f("rendition")}>
                <select value={t.rendition} onChange={(e) => setT("rendition", (e.target as HTMLSelectElement).value)}>
                  <option value="">largest</option>
                  {d.ladder.map((r) => (
                    <option value={r.name}>{r.name}</option>
                  ))}
                </select>
              </Field>
              <label class="check">
                <input type="checkbox" checked={t.enabled} onChange={(e) => setT("enabled", (e.target as HTMLInputElement).checked)} /> On
              </label>
              <button type="button" class="link" onClick={() => setD({ ...d, restream: d.restream.filter((_, j) => j !== i) })}>
                remove
              </button>
            </div>
          );
        })}
        {d.restream.length < 8 && (
          <button
            type="button"
            class="secondary"
            onClick={() => setD({ ...d, restream: [...d.restream, { name: "", server: "", key: "", has_key: false, rendition: "", enabled: true }] })}
          >
            Add destination
          </button>
        )}
      </fieldset>
      <fieldset>
        <legend>Recording</legend>
        <div class="row">
          <Field label="Record" error={server("recording.mode")} hint="kept as the node's retention settings say">
            <select name="recording_mode" value={d.recording} onChange={set("recording")}>
              <option value="off">off</option>
              <option value="continuous">continuously</option>
              <option value="events">when an object is seen (needs a detector below)</option>
            </select>
          </Field>
          <Field label="Rendition" error={server("recording.rendition")}>
            <select value={d.recording_rendition} onChange={(e) => setD({ ...d, recording_rendition: (e.target as HTMLSelectElement).value })}>
              <option value="">largest</option>
              {d.ladder.map((r) => (
                <option value={r.name}>{r.name}</option>
              ))}
            </select>
          </Field>
        </div>
        {d.recording === "events" && (
          <div class="row">
            <Field label="Seconds before" error={server("recording.pre_roll_seconds")}>
              <input type="number" name="pre_roll" min={0} max={30} value={d.pre_roll} onInput={set("pre_roll", true)} />
            </Field>
            <Field label="Seconds after" error={server("recording.post_roll_seconds")}>
              <input type="number" name="post_roll" min={0} max={300} value={d.post_roll} onInput={set("post_roll", true)} />
            </Field>
            <Field label="Objects that count" error={server("recording.labels")} hint="comma-separated; empty: any">
              <input name="recording_labels" placeholder="person" value={d.recording_labels} onInput={set("recording_labels")} />
            </Field>
          </div>
        )}
      </fieldset>
      <fieldset>
        <legend>Detection and privacy</legend>
        <label class="check">
          <input
            type="checkbox"
            name="blur_faces"
            checked={d.blur_faces}
            disabled={d.offload}
            onChange={(e) => setD({ ...d, blur_faces: (e.target as HTMLInputElement).checked })}
          />{" "}
          Privacy mode: cover faces in every rendition, recording, restream and snapshot (the picture is blanked while faces
          cannot be looked for)
        </label>
        {server("privacy.blur_faces") && <p class="error">{server("privacy.blur_faces")}</p>}
        <div class="row">
          <Field label="Detect objects with" error={server("ai.model")}>
            <select name="ai_model" value={d.ai_model} onChange={set("ai_model")}>
              <option value="">nothing</option>
              {(ai.value?.models ?? []).map((m) => (
                <option value={m.id}>
                  {m.descriptor.name} ({m.descriptor.kind})
                </option>
              ))}
            </select>
          </Field>
          <Field label="Pictures a second" error={server("ai.fps")}>
            <input type="number" name="ai_fps" min={1} max={30} value={d.ai_fps} onInput={set("ai_fps", true)} />
          </Field>
          <Field label="Labels" error={server("ai.labels")} hint="comma-separated; empty: all">
            <input name="ai_labels" placeholder="person, car" value={d.ai_labels} onInput={set("ai_labels")} />
          </Field>
          <Field label="Min score" error={server("ai.min_score")} hint="empty: the model's">
            <input name="ai_min_score" inputMode="decimal" value={d.ai_min_score} onInput={set("ai_min_score")} />
          </Field>
          <Field label="Seen for at least (ms)" error={server("ai.min_duration_ms")}>
            <input type="number" name="ai_min_duration_ms" min={0} max={600000} value={d.ai_min_duration_ms} onInput={set("ai_min_duration_ms", true)} />
          </Field>
        </div>
        {ai.value && !ai.value.object_detector && (
          <p class="muted">
            Only faces can be detected until an object model (YOLOX, Apache-2.0, for example) is uploaded on the{" "}
            <a href="#/detections">Detections</a> page.
          </p>
        )}
        {d.ai_model && <ZoneEditor stream={d.id} zones={d.zones} error={err?.field?.startsWith("ai.zones") ? err.message : null} onChange={(zones) => setD({ ...d, zones })} />}
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

/// Zones drawn on the stream's snapshot: each click adds a corner, "Close" names and keeps
/// the polygon. Corners are kept normalised (0 to 1), as the node stores them.
function ZoneEditor({ stream, zones, error, onChange }: { stream?: string; zones: Zone[]; error: string | null; onChange: (z: Zone[]) => void }) {
  const [points, setPoints] = useState<[number, number][]>([]);
  const [name, setName] = useState("");
  const [stamp] = useState(Date.now());
  const click = (e: MouseEvent) => {
    const r = (e.currentTarget as HTMLElement).getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
    const y = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
    if (points.length < 32) setPoints([...points, [Number(x.toFixed(4)), Number(y.toFixed(4))]]);
  };
  const close = () => {
    const n = name.trim() || `zone ${zones.length + 1}`;
    onChange([...zones, { name: n, points }]);
    setPoints([]);
    setName("");
  };
  const poly = (p: [number, number][]) => p.map(([x, y]) => `${x * 100},${y * 100}`).join(" ");
  return (
    <div data-testid="zones">
      <p class="muted">
        Zones: objects count only where the middle of their box's bottom edge is inside one. Click corners on the picture, then
        close the zone. No zones: everywhere.
      </p>
      {stream ? (
        <div class="zones" onClick={click} data-testid="zone-canvas">
          <img src={`/api/streams/${stream}/snapshot.jpg?t=${stamp}`} alt="The stream's picture" />
          <svg viewBox="0 0 100 100" preserveAspectRatio="none">
            {zones.map((z) => (
              <polygon points={poly(z.points as [number, number][])} fill="rgba(255,212,0,.25)" stroke="#ffd400" stroke-width="0.5" />
            ))}
            {points.length > 0 && <polyline points={poly(points)} fill="none" stroke="#e8710a" stroke-width="0.6" />}
          </svg>
        </div>
      ) : (
        <p class="muted">Save the stream and start it to draw zones on its picture.</p>
      )}
      {points.length > 0 && (
        <div class="row">
          <Field label="Zone name">
            <input value={name} maxLength={50} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
          </Field>
          <div class="actions">
            <button type="button" disabled={points.length < 3} onClick={close}>
              Close zone ({points.length} corners)
            </button>
            <button type="button" class="secondary" onClick={() => setPoints([])}>
              Discard
            </button>
          </div>
        </div>
      )}
      <ul>
        {zones.map((z, i) => (
          <li data-testid={`zone-${i}`}>
            {z.name} ({z.points.length} corners){" "}
            <button type="button" class="link" onClick={() => onChange(zones.filter((_, j) => j !== i))}>
              Remove
            </button>
          </li>
        ))}
      </ul>
      {error && <p class="error">{error}</p>}
    </div>
  );
}

/// Where an offloaded stream's renditions come from.
/// IP cameras on a LAN the operator picks (ONVIF): search, then read a camera's profiles
/// with the user and password typed once below, which the stream then keeps.
function OnvifFinder({ user, password, onPick }: { user: string; password: string; onPick: (url: string, name: string) => void }) {
  const [ifaces, setIfaces] = useState<Interface[] | null>(null);
  const [iface, setIface] = useState("");
  const [devices, setDevices] = useState<Device[] | null>(null);
  const [camera, setCamera] = useState<Camera | null>(null);
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<ApiError | null>(null);
  const run = async <T,>(f: () => Promise<T>): Promise<T | undefined> => {
    setBusy(true);
    setErr(null);
    try {
      return await f();
    } catch (e) {
      setErr(e as ApiError);
    } finally {
      setBusy(false);
    }
  };
  const open = async () => {
    const list = await run(() => get<Interface[]>("/api/onvif/interfaces"));
    if (list) {
      setIfaces(list);
      setIface(list[0]?.name ?? "");
    }
  };
  const search = async () => {
    setCamera(null);
    const r = await run(() => api<{ devices: Device[] }>("POST", "/api/onvif/discover", { interface: iface, timeout_ms: 3000 }));
    if (r) setDevices(r.devices);
  };
  const read = async (d: Device) => {
    const c = await run(() => api<Camera>("POST", "/api/onvif/camera", { xaddr: d.xaddrs[0], username: user, password }));
    if (c) setCamera(c);
  };
  if (!ifaces)
    return (
      <p>
        <button type="button" class="secondary" data-testid="onvif-open" onClick={open} disabled={busy}>
          Find IP cameras (ONVIF)
        </button>
      </p>
    );
  return (
    <fieldset class="onvif" data-testid="onvif">
      <legend>IP cameras (ONVIF)</legend>
      <div class="row">
        <Field label="Network" hint="the search is sent on this interface only">
          <select name="onvif-interface" value={iface} onChange={(e) => setIface((e.target as HTMLSelectElement).value)}>
            {ifaces.map((i) => (
              <option value={i.name}>
                {i.name} ({i.ipv4.join(", ")})
              </option>
            ))}
          </select>
        </Field>
        <button type="button" data-testid="onvif-search" onClick={search} disabled={busy || !iface}>
          {busy ? "Searching…" : "Search"}
        </button>
      </div>
      {err && <ErrorBox error={err} />}
      {devices && devices.length === 0 && <p class="muted">No camera answered on {iface}.</p>}
      {devices && devices.length > 0 && (
        <ul class="onvif-devices">
          {devices.map((d) => (
            <li>
              <strong>{d.name ?? d.endpoint}</strong> {d.hardware && <span class="muted">{d.hardware}</span>} <span class="muted">{d.address}</span>{" "}
              <button type="button" class="secondary" onClick={() => read(d)} disabled={busy} title="with the user and password below">
                Read streams
              </button>
            </li>
          ))}
        </ul>
      )}
      {camera && (
        <ul class="onvif-profiles" data-testid="onvif-profiles">
          {camera.profiles.map((p) => (
            <li>
              {p.name}: {p.encoding ?? "?"} {p.width && p.height ? `${p.width}×${p.height}` : ""} {p.fps ? `${p.fps} fps` : ""}{" "}
              {p.rtsp_url ? (
                <button type="button" onClick={() => onPick(p.rtsp_url ?? "", [camera.info.model, p.name].filter(Boolean).join(" "))}>
                  Use
                </button>
              ) : (
                <span class="muted">no RTSP URL</span>
              )}
            </li>
          ))}
        </ul>
      )}
      <p class="muted">Type the camera's user and password below first: they are used to read its streams and kept with the stream.</p>
    </fieldset>
  );
}

function Offload({ o }: { o: OffloadStatus }) {
  const where =
    o.mode === "network" ? `from ${o.orchestrator}` : o.mode === "local" ? "encoded here" : "waiting for the first segment";
  return (
    <p class={o.mode === "local" ? "warning" : "muted"} data-testid="offload">
      Livepeer network: {where} · {o.segments_network} segments from the network, {o.segments_local} encoded here
      {o.segments_dropped > 0 ? `, ${o.segments_dropped} dropped` : ""} · last in {o.last_segment_ms} ms
      {o.mode === "local" && o.last_fallback ? ` (${o.last_fallback})` : ""}
    </p>
  );
}

function copy(text: string) {
  navigator.clipboard?.writeText(text).catch(() => {});
}

export function Streams({ admin }: { admin: boolean }) {
  const streams = usePoll(() => get<Stream[]>("/api/streams"), 3000);
  const [editing, setEditing] = useState<Draft | null>(null);
  const [err, setErr] = useState<unknown>(null);
  // A stream key as the node showed it, once: after a creation or a rotation.
  const [shownKey, setShownKey] = useState<{ id: string; key: string } | null>(null);
  const rotate = async (s: Stream) => {
    if (!confirm(`Give '${s.name}' a new stream key? Encoders using the old key are refused from their next connection.`)) return;
    try {
      const r = await api<Stream>("POST", `/api/streams/${s.id}/stream-key`);
      if (r.stream_key) setShownKey({ id: s.id, key: r.stream_key });
      streams.setValue(await get<Stream[]>("/api/streams"));
    } catch (e) {
      setErr(e);
    }
  };
  const act = async (method: string, path: string) => {
    try {
      await api(method, path);
      streams.setValue(await get<Stream[]>("/api/streams"));
    } catch (e) {
      setErr(e);
    }
  };
  const closed = async (saved: boolean, created?: Stream) => {
    setEditing(null);
    if (created?.stream_key) setShownKey({ id: created.id, key: created.stream_key });
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
              {s.source.kind === "rtsp" ? ` · ${s.source.url}` : ""} · {s.ladder.map((r) => r.name).join(", ")}
            </p>
            {s.status.last_error && <p class="error">{s.status.last_error}</p>}
            {s.status.state === "running" && <Audio a={s.status.audio ?? null} />}
            {s.status.offload && <Offload o={s.status.offload} />}
            {s.status.restream.map((r) => (
              <Restream r={r} />
            ))}
            {s.status.recording && <Recording r={s.status.recording} id={s.id} />}
            {s.rtmp_server && (
              <div class="push">
                <span>OBS server</span>
                <code data-testid="rtmp-server">{s.rtmp_server}</code>
                <button class="link" onClick={() => copy(s.rtmp_server!)}>
                  copy
                </button>
                <span>or WHIP (OBS 30+)</span>
                <code data-testid="whip-url">{`${location.origin}/api/whip`}</code>
                <button class="link" onClick={() => copy(`${location.origin}/api/whip`)}>
                  copy
                </button>
                <span>Stream key{" "}<small class="muted">(WHIP: the Bearer token)</small></span>
                {shownKey?.id === s.id ? (
                  <>
                    <code data-testid="rtmp-key">{shownKey.key}</code>
                    <button class="link" onClick={() => copy(shownKey.key)}>
                      copy
                    </button>
                    <small class="muted">Copy it now: the node does not show it again.</small>
                  </>
                ) : (
                  <>
                    <span class="muted">hidden</span>
                    {admin && (
                      <button class="link" data-testid="rotate-key" onClick={() => rotate(s)}>
                        new key
                      </button>
                    )}
                  </>
                )}
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

/// What the stream's audio is: passed through or encoded to AAC, or why it is missing.
function Audio({ a }: { a: NonNullable<Stream["status"]["audio"]> | null }) {
  if (!a) return <p class="muted" data-testid="audio">No audio in the source.</p>;
  if (a.ignored) return <p class="warning" data-testid="audio">Audio ({a.codec}) not carried: {a.ignored}</p>;
  const what = `${a.codec.toUpperCase()} ${a.rate ? `${a.rate / 1000} kHz` : ""} ${a.channels ? `${a.channels} ch` : ""}`;
  const level = a.level_db == null ? "" : ` · ${a.level_db <= -100 ? "no signal" : `${Math.round(a.level_db)} dBFS`}`;
  return (
    <p class={a.silent ? "warning" : "muted"} data-testid="audio">
      Audio: {what.trim()} · {a.passthrough ? "passed through" : "encoded to AAC"} · {Math.round(a.kbps)} kbit/s in{level}
      {a.silent ? " · silent: is the mixer muted?" : ""}
    </p>
  );
}

/// The recorder: recording, retrying or paused, with what it wrote.
function Recording({ r, id }: { r: RecordingStatus; id: string }) {
  const state =
    r.state === "recording"
      ? "recording"
      : r.state === "retrying"
        ? `failed, retrying in ${r.retry_in_s ?? "?"} s`
        : r.state === "disk_full"
          ? "paused: the disk is full"
          : r.state === "waiting"
            ? "waiting for an object"
          : r.state === "off"
            ? "off"
            : "starting";
  const bad = r.state === "retrying" || r.state === "disk_full" || (r.state === "off" && r.last_error);
  return (
    <p class={bad ? "warning" : "muted"} data-testid="recording">
      ● Recording ({r.rendition || "largest"}): {state} · {r.files} files, {bytes(r.bytes)}
      {r.dropped > 0 ? ` · ${r.dropped} dropped` : ""}
      {r.last_error && r.state !== "recording" ? ` — ${r.last_error}` : ""} ·{" "}
      <a href={`#/recordings?stream=${id}`}>play back</a>
    </p>
  );
}

/// One restream destination: live, connecting or retrying, with its bitrate and last error.
function Restream({ r }: { r: RestreamStatus }) {
  const state =
    r.state === "live"
      ? `live · ${Math.round(r.kbps)} kbit/s`
      : r.state === "retrying"
        ? `retrying in ${r.retry_in_s ?? "?"} s`
        : r.state;
  return (
    <p class={r.state === "retrying" ? "warning" : "muted"} data-testid="restream">
      → {r.name} ({r.rendition || "largest"}): {state}
      {r.errors > 0 ? ` · ${r.errors} errors` : ""}
      {r.dropped > 0 ? ` · ${r.dropped} dropped` : ""}
      {r.last_error && r.state !== "live" ? ` — ${r.last_error}` : ""}
    </p>
  );
}
