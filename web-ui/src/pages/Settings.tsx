import { useState } from "preact/hooks";
import { ApiError, api, get } from "../api";
import { ErrorBox, Field, usePoll } from "../ui";
import type { MqttView as Mqtt, TokenRecord as Token, UserView as User } from "../api.gen";


export function Settings({ admin }: { admin: boolean }) {
  return (
    <section>
      <h1>Settings</h1>
      <MqttCard />
      <OwnPassword />
      {admin && <Users />}
      {admin && <Tokens />}
      {admin && <Logs />}
    </section>
  );
}

function MqttCard() {
  const m = usePoll(() => get<Mqtt>("/api/mqtt"), 5000).value;
  if (!m) return null;
  return (
    <div class="card">
      <h2>MQTT broker</h2>
      {m.enabled ? (
        <dl class="facts">
          <dt>Broker</dt>
          <dd>
            <code>{m.url}</code> ({m.protocol === "auto" ? "MQTT 5, else 3.1.1" : m.protocol})
          </dd>
          <dt>Connection</dt>
          <dd>{m.connected ? "connected" : "not connected (retrying)"}</dd>
          <dt>Topics</dt>
          <dd>
            <code>{m.topics}</code>
          </dd>
          <dt>Telemetry</dt>
          <dd>every {m.telemetry_seconds} s</dd>
          <dt>Home Assistant</dt>
          <dd>{m.homeassistant ? "discovery on" : "off"}</dd>
        </dl>
      ) : (
        <p class="muted">
          Off. Set <code>mqtt.url</code> (and <code>mqtt.username</code>, <code>mqtt.password_file</code>, <code>mqtt.ca_file</code> for TLS) in the configuration file to join a fleet.
        </p>
      )}
    </div>
  );
}

function OwnPassword() {
  const [current, setCurrent] = useState("");
  const [pw, setPw] = useState("");
  const [revoke, setRevoke] = useState(false);
  const [msg, setMsg] = useState<string | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const save = async (e: Event) => {
    e.preventDefault();
    try {
      await api("PUT", "/api/auth/password", { current_password: current, password: pw, revoke_tokens: revoke });
      setCurrent("");
      setPw("");
      setMsg(revoke ? "Password changed; your API tokens are revoked." : "Password changed.");
      setErr(null);
    } catch (e) {
      setErr(e);
    }
  };
  return (
    <form class="card" onSubmit={save}>
      <h2>Your password</h2>
      <Field label="Current password">
        <input type="password" autocomplete="current-password" value={current} onInput={(e) => setCurrent((e.target as HTMLInputElement).value)} />
      </Field>
      <Field label="New password" error={pw && pw.length < 8 ? "at least 8 characters" : null}>
        <input type="password" autocomplete="new-password" value={pw} onInput={(e) => setPw((e.target as HTMLInputElement).value)} />
      </Field>
      <label>
        <input type="checkbox" checked={revoke} onChange={(e) => setRevoke((e.target as HTMLInputElement).checked)} /> Also revoke my API tokens
      </label>
      <ErrorBox error={err} />
      {msg && <p role="status">{msg}</p>}
      <button type="submit" disabled={pw.length < 8 || !current}>
        Change
      </button>
    </form>
  );
}

function Users() {
  const users = usePoll(() => get<User[]>("/api/users"), 30000);
  const [f, setF] = useState({ name: "", password: "", role: "viewer" });
  const [err, setErr] = useState<ApiError | null>(null);
  const reload = async () => users.setValue(await get<User[]>("/api/users"));
  const add = async (e: Event) => {
    e.preventDefault();
    try {
      await api("POST", "/api/users", f);
      setF({ name: "", password: "", role: "viewer" });
      setErr(null);
      reload();
    } catch (e) {
      setErr(e as ApiError);
    }
  };
  const remove = async (name: string) => {
    try {
      await api("DELETE", `/api/users/${encodeURIComponent(name)}`);
      reload();
    } catch (e) {
      setErr(e as ApiError);
    }
  };
  return (
    <div class="card">
      <h2>Users</h2>
      <ul class="plain">
        {(users.value ?? []).map((u) => (
          <li>
            {u.name} <span class="muted">({u.role})</span>{" "}
            <button class="link" onClick={() => remove(u.name)} aria-label={`remove ${u.name}`}>
              remove
            </button>
          </li>
        ))}
      </ul>
      <form onSubmit={add} class="row">
        <Field label="Name" error={err?.field === "name" ? err.message : null}>
          <input value={f.name} onInput={(e) => setF({ ...f, name: (e.target as HTMLInputElement).value })} required />
        </Field>
        <Field label="Password" error={err?.field === "password" ? err.message : null}>
          <input type="password" autocomplete="new-password" value={f.password} onInput={(e) => setF({ ...f, password: (e.target as HTMLInputElement).value })} required />
        </Field>
        <Field label="Role">
          <select value={f.role} onChange={(e) => setF({ ...f, role: (e.target as HTMLSelectElement).value })}>
            <option value="viewer">viewer</option>
            <option value="admin">admin</option>
          </select>
        </Field>
        <button type="submit">Add user</button>
      </form>
      <ErrorBox error={err && !err.field ? err : null} />
    </div>
  );
}

function Tokens() {
  const tokens = usePoll(() => get<Token[]>("/api/tokens"), 30000);
  const [name, setName] = useState("");
  const [role, setRole] = useState("viewer");
  const [fresh, setFresh] = useState<string | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const reload = async () => tokens.setValue(await get<Token[]>("/api/tokens"));
  const create = async (e: Event) => {
    e.preventDefault();
    try {
      const t = await api<{ token: string }>("POST", "/api/tokens", { name, role });
      setFresh(t.token);
      setName("");
      reload();
    } catch (e) {
      setErr(e);
    }
  };
  return (
    <div class="card">
      <h2>API tokens</h2>
      {fresh && (
        <p class="notice" role="status">
          New token (shown once): <code data-testid="new-token">{fresh}</code>
        </p>
      )}
      <ul class="plain">
        {(tokens.value ?? []).map((t) => (
          <li>
            {t.name} <span class="muted">({t.role}, for {t.owner}, last used {t.last_used_ms ? new Date(t.last_used_ms).toLocaleString() : "never"})</span>{" "}
            <button
              class="link"
              onClick={async () => {
                await api("DELETE", `/api/tokens/${t.id}`);
                reload();
              }}
            >
              revoke
            </button>
          </li>
        ))}
      </ul>
      <form onSubmit={create} class="row">
        <Field label="Name">
          <input value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} required />
        </Field>
        <Field label="Role">
          <select value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value)}>
            <option value="viewer">viewer</option>
            <option value="admin">admin</option>
            <option value="metrics">metrics (only /metrics)</option>
          </select>
        </Field>
        <button type="submit">Create token</button>
      </form>
      <ErrorBox error={err} />
    </div>
  );
}

function Logs() {
  const logs = usePoll(() => get<{ level: string; lines: string[] }>("/api/logs?lines=300"), 3000);
  const [err, setErr] = useState<unknown>(null);
  const setLevel = async (level: string) => {
    try {
      await api("PUT", "/api/logs", { level });
    } catch (e) {
      setErr(e);
    }
  };
  return (
    <div class="card">
      <h2>Log</h2>
      <Field label="Level">
        <select value={logs.value?.level} onChange={(e) => setLevel((e.target as HTMLSelectElement).value)}>
          {["error", "warn", "info", "debug", "trace"].map((l) => (
            <option value={l}>{l}</option>
          ))}
        </select>
      </Field>
      <ErrorBox error={err} />
      <pre class="log" data-testid="log" tabIndex={0}>
        {(logs.value?.lines ?? []).join("\n")}
      </pre>
    </div>
  );
}
