import { useEffect, useRef, useState } from "preact/hooks";
import { Stream, bytes, get } from "../api";
import type { Span, Storage, Timeline } from "../api.gen";
import { ErrorBox, usePoll } from "../ui";

const DAY = 86_400_000;
/// How much one playback request covers from the chosen moment.
const PLAY_MS = 3_600_000;

/// Local midnight of the day holding `ms`.
function dayStart(ms: number): number {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

/// `YYYY-MM-DD` of a local day, as a date input takes it.
function dateValue(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/// `HH:MM:SS` on `day` as milliseconds, or null when it is not a time.
function atTime(day: number, text: string): number | null {
  const m = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(text.trim());
  if (!m) return null;
  const [h, min, s] = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
  if (h > 23 || min > 59 || s > 59) return null;
  const d = new Date(day);
  d.setHours(h, min, s, 0);
  return d.getTime();
}

/// Plays an HLS VOD playlist from `offset` seconds in; reports the wall-clock time playing.
function Player({ src, offset, onTime }: { src: string; offset: number; onTime: (ms: number) => void }) {
  const ref = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    const video = ref.current;
    if (!video) return;
    let destroy = () => {};
    let live = true;
    import("hls.js/light").then(({ default: Hls }) => {
      if (!live) return;
      if (!Hls.isSupported()) {
        video.src = src;
        video.currentTime = offset;
        return;
      }
      const hls = new Hls({ enableWorker: false, startPosition: offset });
      hls.loadSource(src);
      hls.attachMedia(video);
      hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
      const tick = () => {
        const at = hls.playingDate;
        if (at) onTime(at.getTime());
      };
      video.addEventListener("timeupdate", tick);
      destroy = () => {
        video.removeEventListener("timeupdate", tick);
        hls.destroy();
      };
    });
    return () => {
      live = false;
      destroy();
    };
  }, [src, offset]);
  return <video ref={ref} class="preview" controls playsInline muted data-testid="playback" aria-label="Recording playback" />;
}

/// One day of a stream's recordings as a bar; a click plays from that moment.
function DayBar({ day, spans, at, onPick }: { day: number; spans: Span[]; at: number | null; onPick: (ms: number) => void }) {
  const pos = (ms: number) => `${(Math.min(Math.max(ms - day, 0), DAY) / DAY) * 100}%`;
  const click = (e: MouseEvent) => {
    const r = (e.currentTarget as HTMLElement).getBoundingClientRect();
    onPick(day + Math.round(((e.clientX - r.left) / r.width) * DAY));
  };
  return (
    <div class="timeline" onClick={click} data-testid="timeline" title="Click to play from there">
      {spans.map((s) => (
        <span class="recorded" style={{ left: pos(s.from_ms), width: `calc(${pos(s.to_ms)} - ${pos(s.from_ms)})` }} />
      ))}
      {at !== null && at >= day && at < day + DAY && <span class="playhead" style={{ left: pos(at) }} />}
      <div class="hours">
        {[0, 6, 12, 18].map((h) => (
          <small style={{ left: `${(h / 24) * 100}%` }}>{String(h).padStart(2, "0")}:00</small>
        ))}
      </div>
    </div>
  );
}

export function Recordings() {
  const streams = usePoll(() => get<Stream[]>("/api/streams"), 10000);
  const storage = usePoll(() => get<Storage>("/api/recordings/storage"), 10000);
  const wanted = new URLSearchParams(location.hash.split("?")[1] ?? "").get("stream");
  const [stream, setStream] = useState<string>(wanted ?? "");
  const [day, setDay] = useState(dayStart(Date.now()));
  const [play, setPlay] = useState<{ from: number; offset: number } | null>(null);
  const [at, setAt] = useState<number | null>(null);
  const [clip, setClip] = useState({ from: "", to: "" });
  const ids = [...new Set([...(streams.value ?? []).map((s) => s.id), ...(storage.value?.streams ?? [])])];
  const chosen = stream || ids[0] || "";
  const name = (id: string) => streams.value?.find((s) => s.id === id)?.name ?? `${id} (removed)`;
  const timeline = usePoll(
    () => (chosen ? get<Timeline>(`/api/recordings?stream_id=${chosen}&from=${day}&to=${day + DAY}`) : Promise.resolve(null)),
    15000,
    [chosen, day],
  );
  const segments = timeline.value?.segments ?? [];
  const pick = (ms: number) => {
    // From the file holding that moment, the next one recorded after it, or the last one
    // (a pixel of the bar is minutes long).
    const seg = segments.find((s) => s.start_ms + s.duration_ms > ms) ?? segments[segments.length - 1];
    if (!seg) return;
    const from = Math.max(seg.start_ms, Math.min(ms, seg.start_ms + seg.duration_ms));
    setPlay({ from: seg.start_ms, offset: (from - seg.start_ms) / 1000 });
    setAt(from);
    setClip({ from: clock(from), to: clock(from + 30_000) });
  };
  const clipFrom = atTime(day, clip.from);
  const clipTo = atTime(day, clip.to);
  const clipOk = clipFrom !== null && clipTo !== null && clipTo > clipFrom && clipTo - clipFrom <= 2 * 3_600_000;
  const st = storage.value;
  return (
    <section>
      <h1>Recordings</h1>
      <ErrorBox error={streams.error ?? storage.error ?? timeline.error} />
      {st && (
        <p class={st.disk_full ? "warning" : "muted"} data-testid="storage">
          {bytes(st.bytes)} recorded
          {st.disk_total_bytes ? ` · ${bytes(st.disk_available_bytes)} free of ${bytes(st.disk_total_bytes)}` : ""} · kept{" "}
          {st.retention.max_age_days ? `${st.retention.max_age_days} days, ` : ""}at most {st.retention.max_disk_percent} % of the disk
          {st.disk_full ? " · the disk is full: recording is paused" : ""}
        </p>
      )}
      {ids.length === 0 ? (
        <p class="muted">Nothing is recorded yet. Turn recording on in a stream's settings.</p>
      ) : (
        <>
          <div class="row">
            <label>
              Stream{" "}
              <select value={chosen} onChange={(e) => { setStream((e.target as HTMLSelectElement).value); setPlay(null); }} data-testid="rec-stream">
                {ids.map((id) => (
                  <option value={id}>{name(id)}</option>
                ))}
              </select>
            </label>
            <label>
              Day{" "}
              <input
                type="date"
                value={dateValue(day)}
                onChange={(e) => {
                  const v = (e.target as HTMLInputElement).valueAsDate;
                  if (v) setDay(dayStart(v.getTime() + v.getTimezoneOffset() * 60_000));
                  setPlay(null);
                }}
              />
            </label>
            <button class="secondary" onClick={() => setDay(day - DAY)}>
              ‹ day before
            </button>
            <button class="secondary" onClick={() => setDay(day + DAY)}>
              day after ›
            </button>
          </div>
          <DayBar day={day} spans={timeline.value?.spans ?? []} at={at} onPick={pick} />
          <p class="muted" data-testid="spans">
            {(timeline.value?.spans ?? []).length === 0
              ? "Nothing recorded this day."
              : (timeline.value?.spans ?? []).map((s) => `${clock(s.from_ms)}–${clock(s.to_ms)}`).join(" · ")}
            {timeline.value ? ` · ${bytes(timeline.value.bytes)}` : ""}
          </p>
          {play && (
            <>
              <Player
                src={`/api/recordings/${chosen}/playlist.m3u8?from=${play.from}&to=${play.from + PLAY_MS}`}
                offset={play.offset}
                onTime={setAt}
              />
              <p class="muted" data-testid="playing-at">
                {at !== null ? `Playing ${new Date(at).toLocaleString()}` : ""}
              </p>
            </>
          )}
          <fieldset>
            <legend>Export a clip (MP4, up to 2 hours)</legend>
            <div class="row">
              <label>
                From <input value={clip.from} placeholder="HH:MM:SS" onInput={(e) => setClip({ ...clip, from: (e.target as HTMLInputElement).value })} />
              </label>
              <label>
                To <input value={clip.to} placeholder="HH:MM:SS" onInput={(e) => setClip({ ...clip, to: (e.target as HTMLInputElement).value })} />
              </label>
              {clipOk ? (
                <a class="button" href={`/api/recordings/${chosen}/export.mp4?from=${clipFrom}&to=${clipTo}`} download data-testid="export">
                  Download clip
                </a>
              ) : (
                <span class="muted">Pick a moment on the bar, or type the times.</span>
              )}
            </div>
          </fieldset>
        </>
      )}
    </section>
  );
}
