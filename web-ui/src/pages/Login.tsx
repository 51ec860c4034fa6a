import { useState } from "preact/hooks";
import { ApiError, Session, post } from "../api";
import { ErrorBox, Field } from "../ui";

export function Login({ onDone }: { onDone: (s: Session) => void }) {
  const [username, setUser] = useState("admin");
  const [password, setPassword] = useState("");
  const [err, setErr] = useState<ApiError | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      onDone(await post<Session>("/api/auth/login", { username, password }));
    } catch (e) {
      setErr(e as ApiError);
    }
  };
  return (
    <main class="center">
      <form class="card narrow" onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">Sign in</h1>
        <Field label="User">
          <input name="username" autocomplete="username" required value={username} onInput={(e) => setUser((e.target as HTMLInputElement).value)} />
        </Field>
        <Field label="Password">
          <input name="password" type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} />
        </Field>
        <ErrorBox error={err} />
        <button type="submit">Sign in</button>
      </form>
    </main>
  );
}
