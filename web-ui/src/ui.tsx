// Small shared pieces: form fields with inline errors, live polling, the preview player and
// the SVG line chart (no chart library: a polyline is enough and weighs nothing).
import { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, leave, whep } from "./api";
import type { ObjectNow } from "./api.gen";

// One EventSource for the whole page, shared by every poller; reconnects on its own.
const listeners = new Set<() => void>();
let source: EventSource | null = null;
let pending: ReturnType<typeof setTimeout> | null = null;
function onNodeEvent(fn: () => void): () => void {
  listeners.add(fn);
  if (!source && typeof EventSource !== "undefined") {
    source = new EventSource("/api/events/stream");
    const fire = () => {
      // Coalesce bursts (a stream coming up emits several events).
      if (pending) return;
      pending = setTimeout(() => {
        pending = null;
        listeners.forEach((l) => l());
      }, 300);
    };
    source.onmessage = fire;
    for (const kind of ["stream_up", "stream_down", "stream_created", "stream_updated", "stream_deleted", "stream_error", "encoder_fallback", "ticket_won", "ticket_redeemed", "ticket_failed", "settings_changed", "funding_changed", "object_started", "object_ended", "ai_failed", "privacy_blanked", "privacy_restored"]) {
      source.addEventListener(kind, fire);
    }
  }
  return () => {
    listeners.delete(fn);
    if (listeners.size === 0 && source) {
      source.close();
      source = null;
    }
  };
}

export function Field(props: {
  label: string;
  error?: string | null;
  children: ComponentChildren;
  hint?: string;
}) {
  return (
    <label class={props.error ? "field invalid" : "field"}>
      <span>{props.label}</span>
      {props.children}
      {props.hint && !props.error && <small class="muted">{props.hint}</small>}
      {props.error && (
        <small class="error" role="alert">
          {props.error}
        </small>
      )}
    </label>
  );
}

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const msg = error instanceof ApiError ? error.message : String(error);
  return (
    <p class="error-box" role="alert">
      {msg}
    </p>
  );
}

/// Calls `load` now, every `ms`, and whenever the node reports an event (server-sent events
/// from /api/events/stream), keeping the last value.
export function usePoll<T>(load: () => Promise<T>, ms: number, deps: unknown[] = []) {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const reloader = useRef<() => void>(() => {});
  useEffect(() => {
    let live = true;
    const tick = async () => {
      try {
        const v = await load();
        if (live) {
          setValue(v);
          setError(null);
        }
      } catch (e) {
        if (live) setError(e);
      }
    };
    tick();
    reloader.current = tick;
    const t = setInterval(tick, ms);
    const unsubscribe = onNodeEvent(tick);
    return () => {
      live = false;
      clearInterval(t);
      unsubscribe();
    };
  }, deps);
  return { value, error, setValue, reload: () => reloader.current() };
}

/// Live HLS preview: native HLS where the browser has it, hls.js (loaded on demand) elsewhere.
/// A low-latency playlist is played at its own hold-back (about three parts behind).
export function Preview({ src, label }: { src: string; label: string }) {
  const ref = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    const video = ref.current;
    if (!video) return;
    let destroy = () => {};
    let live = true;
    // hls.js over Media Source Extensions wherever they exist; native HLS (iOS Safari) else.
    const native = () => {
      video.src = src;
      video.play().catch(() => {});
    };
    if (typeof MediaSource === "undefined") native();
    else
      import("hls.js/light").then(({ default: Hls }) => {
        if (!live) return;
        if (!Hls.isSupported()) return native();
        const hls = new Hls({ enableWorker: false, liveSyncDurationCount: 2 });
        hls.loadSource(src);
        hls.attachMedia(video);
        hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
        hls.on(Hls.Events.ERROR, (_e, data) => {
          if (data.fatal) setTimeout(() => hls.loadSource(src), 2000);
        });
        destroy = () => hls.destroy();
      });
    return () => {
      live = false;
      destroy();
    };
  }, [src]);
  // Muted so that it may start by itself; the controls unmute it.
  return <video ref={ref} class="preview" muted controls playsInline autoplay aria-label={`Preview of ${label}`} />;
}

/// What a stream's object detector sees, drawn over its preview: boxes from the node's
/// per-picture feed (`/api/streams/{id}/objects`), placed on the picture inside the 16:9
/// player (`aspect`: the source's width / height). Objects already reported as events are
/// drawn solid, those still being confirmed dashed.
export function ObjectOverlay({ stream, aspect }: { stream: string; aspect: number }) {
  const [objects, setObjects] = useState<ObjectNow[]>([]);
  useEffect(() => {
    if (typeof EventSource === "undefined") return;
    const es = new EventSource(`/api/streams/${stream}/objects`);
    es.addEventListener("objects", (e) => {
      try {
        setObjects(JSON.parse((e as MessageEvent).data).objects ?? []);
      } catch {}
    });
    return () => es.close();
  }, [stream]);
  const player = 16 / 9;
  const a = aspect > 0 ? aspect : player;
  const [w, h] = a > player ? [100, (player / a) * 100] : [(a / player) * 100, 100];
  const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
  return (
    <div class="overlay" data-testid="overlay" style={{ left: `${(100 - w) / 2}%`, top: `${(100 - h) / 2}%`, width: `${w}%`, height: `${h}%` }}>
      {objects.map((o) => (
        <div
          class={o.id ? "box started" : "box"}
          data-testid="overlay-box"
          style={{ left: pct(o.bbox[0]), top: pct(o.bbox[1]), width: pct(o.bbox[2] - o.bbox[0]), height: pct(o.bbox[3] - o.bbox[1]) }}
        >
          <span>
            {o.label} {Math.round(o.score * 100)}%
          </span>
        </div>
      ))}
    </div>
  );
}

/// Sub-second preview over WebRTC (WHEP): the node sends an encoded rendition as it is made.
export function WebRtcPreview({ stream, label }: { stream: string; label: string }) {
  const ref = useRef<HTMLVideoElement>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const video = ref.current;
    if (!video) return;
    const pc = new RTCPeerConnection();
    let location = "";
    let live = true;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const tracks = new MediaStream();
    video.srcObject = tracks;
    // A track joins the player once media arrives on it: an audio track that never gets
    // any (a stream without sound) would otherwise hold the picture back.
    pc.ontrack = (e) => {
      const add = () => {
        tracks.addTrack(e.track);
        video.play().catch(() => {});
      };
      if (e.track.muted) e.track.onunmute = add;
      else add();
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") setError("the WebRTC connection failed");
    };
    (async () => {
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await new Promise<void>((ok) => {
          if (pc.iceGatheringState === "complete") return ok();
          pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok();
          setTimeout(ok, 2000);
        });
        const r = await whep(stream, pc.localDescription!.sdp);
        location = r.location;
        if (!live) return leave(location);
        await pc.setRemoteDescription({ type: "answer", sdp: r.answer });
      } catch (e) {
        setError(e instanceof Error ? e.message : String(e));
      }
    })();
    return () => {
      live = false;
      if (location) leave(location);
      pc.close();
    };
  }, [stream]);
  return (
    <>
      {/* Muted so that it may start by itself; the controls unmute it. */}
      <video ref={ref} class="preview" muted controls playsInline autoplay data-testid="webrtc-preview" aria-label={`Live preview of ${label} over WebRTC`} />
      {error && <p class="error">{error}</p>}
    </>
  );
}

export interface Series {
  label: string;
  values: (number | null)[];
  color: string;
}

/// A line chart of values 0..max over the points' time span.
export function Chart({ title, series, max = 100, unit = "%" }: { title: string; series: Series[]; max?: number; unit?: string }) {
  const W = 600;
  const H = 120;
  const n = Math.max(2, ...series.map((s) => s.values.length));
  const line = (vals: (number | null)[]) =>
    vals
      .map((v, i) => (v == null ? null : `${((i / (n - 1)) * W).toFixed(1)},${(H - (Math.min(v, max) / max) * H).toFixed(1)}`))
      .filter(Boolean)
      .join(" ");
  return (
    <figure class="chart" data-testid="chart">
      <figcaption>
        {title}
        {series.map((s) => {
          const last = [...s.values].reverse().find((v) => v != null);
          return (
            <span class="legend" style={{ color: s.color }}>
              {" "}
              ● {s.label} {last == null ? "—" : `${last.toFixed(1)}${unit}`}
            </span>
          );
        })}
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={title}>
        <line x1="0" y1={H / 2} x2={W} y2={H / 2} class="grid" />
        {series.map((s) => (
          <polyline points={line(s.values)} fill="none" stroke={s.color} stroke-width="2" vector-effect="non-scaling-stroke" />
        ))}
      </svg>
    </figure>
  );
}

export function StateBadge({ state }: { state: string }) {
  return <span class={`badge ${state}`}>{state}</span>;
}
