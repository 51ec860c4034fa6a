import { useState } from "preact/hooks";
import { ApiError, Session, post } from "../api";
import { ErrorBox, Field } from "../ui";

/// First boot: the one-time code from the console, the admin password, the device's name and role.
export function Setup({ onDone }: { onDone: (s: Session) => void }) {
  const [f, setF] = useState({ code: "", password: "", confirm: "", device_name: "", role: "off" });
  const [err, setErr] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof typeof f) => (e: Event) => setF({ ...f, [k]: (e.target as HTMLInputElement).value });
  const mismatch = f.confirm !== "" && f.confirm !== f.password;
  const short = f.password !== "" && f.password.length < 8;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (mismatch || short) return;
    setBusy(true);
    try {
      const { confirm: _c, ...body } = f;
      onDone(await post<Session>("/api/setup", body));
    } catch (e) {
      setErr(e as ApiError);
    } finally {
      setBusy(false);
    }
  };
  const fieldErr = (k: string) => (err?.field === k ? err.message : null);
  return (
    <main class="center">
      <form class="card narrow" onSubmit={submit} aria-labelledby="setup-title">
        <h1 id="setup-title">Set up this Livepeer Edge box</h1>
        <p class="muted">The setup code is printed on the device's console and in its log.</p>
        <Field label="Setup code" error={err?.code === "bad_credentials" ? err.message : null}>
          <input name="code" required autocomplete="one-time-code" value={f.code} onInput={set("code")} placeholder="XXXXX-XXXXX" />
        </Field>
        <Field label="Admin password" error={short ? "at least 8 characters" : fieldErr("password")}>
          <input name="password" type="password" required autocomplete="new-password" value={f.password} onInput={set("password")} />
        </Field>
        <Field label="Repeat the password" error={mismatch ? "the passwords differ" : null}>
          <input name="confirm" type="password" required autocomplete="new-password" value={f.confirm} onInput={set("confirm")} />
        </Field>
        <Field label="Device name" error={fieldErr("device_name")} hint="Shown in the UI and to the fleet">
          <input name="device_name" required maxLength={64} value={f.device_name} onInput={set("device_name")} />
        </Field>
        <Field label="Role on the Livepeer network" error={fieldErr("role")}>
          <select name="role" value={f.role} onChange={set("role")}>
            <option value="off">Off (local streaming only)</option>
            <option value="gateway">Gateway (pays for transcoding)</option>
            <option value="orchestrator">Orchestrator (earns by transcoding)</option>
            <option value="both">Both</option>
            <option value="signer">Signer (holds the deposit, signs for a fleet of gateways)</option>
          </select>
        </Field>
        <ErrorBox error={err && !err.field && err.code !== "bad_credentials" ? err : null} />
        <button type="submit" disabled={busy}>
          {busy ? "Setting up…" : "Finish setup"}
        </button>
      </form>
    </main>
  );
}
