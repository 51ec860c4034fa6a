import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, Session, get, post, setCsrf } from "./api";
import { Setup } from "./pages/Setup";
import { Login } from "./pages/Login";
import { Dashboard } from "./pages/Dashboard";
import { Streams } from "./pages/Streams";
import { DevicePage } from "./pages/Device";
import { Payments } from "./pages/Payments";
import { Recordings } from "./pages/Recordings";
import { Detections } from "./pages/Detections";
import { Settings } from "./pages/Settings";
import "./style.css";

const PAGES = [
  ["dashboard", "Dashboard"],
  ["streams", "Streams"],
  ["recordings", "Recordings"],
  ["detections", "Detections"],
  ["device", "Device"],
  ["payments", "Payments"],
  ["settings", "Settings"],
] as const;
type Page = (typeof PAGES)[number][0];

function usePage(): Page {
  const read = () => {
    const p = location.hash.replace(/^#\/?/, "").split("?")[0] as Page;
    return PAGES.some(([k]) => k === p) ? p : "dashboard";
  };
  const [page, setPage] = useState<Page>(read());
  useEffect(() => {
    const on = () => setPage(read());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return page;
}

function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [phase, setPhase] = useState<"loading" | "setup" | "login" | "in">("loading");
  const [menuOpen, setMenuOpen] = useState(false);
  const page = usePage();

  const signedIn = (s: Session) => {
    setCsrf(s.csrf_token ?? null);
    setSession(s);
    setPhase("in");
  };

  useEffect(() => {
    (async () => {
      try {
        const st = await get<{ required: boolean }>("/api/setup");
        if (st.required) return setPhase("setup");
        signedIn(await get<Session>("/api/auth/me"));
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) setPhase("login");
        else setPhase("login");
      }
    })();
  }, []);

  const logout = async () => {
    try {
      await post("/api/auth/logout");
    } finally {
      setCsrf(null);
      setSession(null);
      setPhase("login");
    }
  };

  if (phase === "loading") return <main class="center">Loading…</main>;
  if (phase === "setup") return <Setup onDone={signedIn} />;
  if (phase === "login" || !session) return <Login onDone={signedIn} />;
  const admin = session.role === "admin";
  return (
    <div class="shell">
      <header class="top">
        <button class="menu" aria-label="Menu" aria-expanded={menuOpen} onClick={() => setMenuOpen(!menuOpen)}>
          ☰
        </button>
        <strong class="brand">{session.device.name}</strong>
        <span class="muted who">
          {session.user} ({session.role})
        </span>
        <button class="link" onClick={logout} data-testid="logout">
          Sign out
        </button>
      </header>
      <nav class={menuOpen ? "side open" : "side"} aria-label="Pages">
        {PAGES.map(([k, label]) => (
          <a href={`#/${k}`} aria-current={page === k ? "page" : undefined} onClick={() => setMenuOpen(false)}>
            {label}
          </a>
        ))}
      </nav>
      <main class="content">
        {page === "dashboard" && <Dashboard admin={admin} />}
        {page === "streams" && <Streams admin={admin} />}
        {page === "recordings" && <Recordings />}
        {page === "detections" && <Detections admin={admin} />}
        {page === "device" && <DevicePage />}
        {page === "payments" && <Payments />}
        {page === "settings" && <Settings admin={admin} />}
      </main>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
