import { Stream, get, post } from "../api";
import { useState } from "preact/hooks";
import { ErrorBox, ObjectOverlay, Preview, StateBadge, WebRtcPreview, usePoll } from "../ui";
import type { Health, StoredEvent as Event, TranscoderView } from "../api.gen";

export function Dashboard({ admin }: { admin: boolean }) {
  const streams = usePoll(() => get<Stream[]>("/api/streams"), 2000);
  // Streams previewed over WebRTC instead of HLS.
  const [lowLatency, setLowLatency] = useState<Set<string>>(new Set());
  const health = usePoll(() => get<Health>("/api/health"), 5000);
  // Alerts stay until an operator acknowledges them (for everyone: the node keeps it).
  const alerts = usePoll(() => get<Event[]>("/api/events?alerts=open&limit=20"), 5000);
  const [ackError, setAckError] = useState<unknown>(null);
  const acknowledge = async (ids: number[]) => {
    setAckError(null);
    try {
      for (const id of ids) await post(`/api/events/${id}/acknowledge`);
    } catch (e) {
      setAckError(e);
    }
    alerts.reload();
  };
  // Only a node that transcodes for an orchestrator (net.orchestrator_addr) has the task.
  const transcodes = health.value?.tasks.some((t) => t.name === "transcoder") ?? false;
  const transcoder = usePoll(
    () => (transcodes ? get<TranscoderView>("/api/network/transcoder") : Promise.resolve(null)),
    5000,
    [transcodes],
  );
  const h = health.value;
  return (
    <section>
      <h1>Dashboard</h1>
      <ErrorBox error={streams.error} />
      {h && (
        <p class="summary">
          <span>
            Node <b>{h.status}</b> · v{h.version}
          </span>
          <span>
            {h.streams.running}/{h.streams.total} streams running
          </span>
          <span>
            Encoder <b>{h.encoder}</b> {h.hardware_encoder ? "(hardware)" : "(software)"}
          </span>
        </p>
      )}
      {transcoder.value && <Transcoder t={transcoder.value} />}
      {(alerts.value ?? []).length > 0 && (
        <div class="alerts" role="status" data-testid="alerts">
          <h2>Alerts</h2>
          <ErrorBox error={ackError} />
          <ul>
            {(alerts.value ?? []).map((a) => (
              <li data-testid={`alert-${a.id}`}>
                <time dateTime={new Date(a.ts_ms).toISOString()}>{new Date(a.ts_ms).toLocaleString()}</time>{" "}
                {a.kind.replace(/_/g, " ")}: {a.message}
                {admin && (
                  <button class="link" onClick={() => acknowledge([a.id])}>
                    Acknowledge
                  </button>
                )}
              </li>
            ))}
          </ul>
          {admin && (alerts.value ?? []).length > 1 && (
            <button onClick={() => acknowledge((alerts.value ?? []).map((a) => a.id))}>Acknowledge all</button>
          )}
        </div>
      )}
      <div class="grid">
        {(streams.value ?? []).map((s) => (
          <article class="card stream" data-testid={`stream-${s.id}`}>
            <header>
              <h2>{s.name}</h2>
              <StateBadge state={s.status.state} />
            </header>
            {s.status.state !== "running" ? (
              <div class="preview empty">{s.status.detail ?? s.status.last_error ?? "no picture"}</div>
            ) : (
              <div class="previewed">
                {lowLatency.has(s.id) ? (
                  <WebRtcPreview stream={s.id} label={s.name} />
                ) : (
                  <Preview src={s.llhls_url ?? s.hls_url} label={s.name} />
                )}
                {s.ai.model && (
                  <ObjectOverlay stream={s.id} aspect={s.status.source ? s.status.source.width / Math.max(1, s.status.source.height) : 16 / 9} />
                )}
              </div>
            )}
            {s.analysis?.privacy && (
              <p class={s.analysis.privacy.state === "blanked" ? "warning" : "muted"} data-testid="privacy">
                Privacy mode:{" "}
                {s.analysis.privacy.state === "blanked"
                  ? `picture blanked — ${s.analysis.privacy.reason ?? "faces cannot be looked for"}`
                  : `faces covered (${Math.round(s.analysis.privacy.delay_ms)} ms delay)`}
              </p>
            )}
            {s.analysis?.objects && (
              <p class={s.analysis.objects.state === "failed" ? "warning" : "muted"} data-testid="detector">
                {s.analysis.objects.state === "failed"
                  ? `Detection failed: ${s.analysis.objects.error ?? ""}`
                  : `${Object.entries(s.analysis.objects_now)
                      .map(([l, n]) => `${n} ${l}`)
                      .join(", ") || "nothing seen"} · ${s.analysis.objects.fps.toFixed(1)} fps on ${s.analysis.objects.provider ?? "…"}`}{" "}
                · <a href={`#/detections?stream=${s.id}`}>detections</a>
              </p>
            )}
            {s.status.state === "running" && (
              <label class="check">
                <input
                  type="checkbox"
                  data-testid="low-latency"
                  checked={lowLatency.has(s.id)}
                  onChange={(e) => {
                    const on = (e.target as HTMLInputElement).checked;
                    const next = new Set(lowLatency);
                    if (on) next.add(s.id);
                    else next.delete(s.id);
                    setLowLatency(next);
                  }}
                />{" "}
                Sub-second preview (WebRTC)
              </label>
            )}
            <dl class="stats">
              <dt>fps</dt>
              <dd>{s.status.input_fps.toFixed(1)}</dd>
              <dt>bitrate</dt>
              <dd>{Math.round(s.status.renditions.reduce((a, r) => a + r.kbps, 0))} kbit/s</dd>
              <dt>encoder</dt>
              <dd>
                {s.status.encoder ?? "—"}
                {s.status.encoder_fallback ? " (fallback)" : ""}
              </dd>
            </dl>
          </article>
        ))}
        {streams.value?.length === 0 && <p class="muted">No streams yet. Add one on the Streams page.</p>}
      </div>
    </section>
  );
}

/// This node's work as the remote transcoder of an orchestrator.
function Transcoder({ t }: { t: TranscoderView }) {
  return (
    <p class="summary" data-testid="transcoder">
      <span>
        Transcoding for <code>{t.orchestrator}</code>: <b>{t.attached ? "attached" : "not attached"}</b>
        {t.attached ? ` (${t.in_flight}/${t.capacity} busy)` : ""}
      </span>
      <span>
        {t.segments} segments · {(t.pixels / 1e9).toFixed(2)} Gpixels
      </span>
      <span class={t.errors > 0 ? "warning" : undefined}>
        {t.errors} errors{t.last_error ? ` — last: ${t.last_error}` : ""}
      </span>
    </p>
  );
}
