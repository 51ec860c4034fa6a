// The node's HTTP API, same origin only. Cookie sessions send the CSRF token on every
// unsafe request; errors arrive as {"error":{"code","message","field"}}.

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public field: string | null = null,
  ) {
    super(message);
  }
}

let csrf: string | null = null;
export function setCsrf(token: string | null) {
  csrf = token;
}

/// WebRTC preview (WHEP): the browser's offer in, the node's answer out; returns the
/// session's URL (DELETE it to leave).
export async function whep(stream: string, offer: string): Promise<{ answer: string; location: string }> {
  const headers: Record<string, string> = { "content-type": "application/sdp" };
  if (csrf) headers["x-csrf-token"] = csrf;
  const res = await fetch(`/api/streams/${stream}/whep`, { method: "POST", headers, body: offer, credentials: "same-origin" });
  const text = await res.text();
  if (res.status !== 201) {
    let e: any = {};
    try {
      e = JSON.parse(text).error ?? {};
    } catch {}
    throw new ApiError(res.status, e.code ?? "http", e.message ?? `HTTP ${res.status}`);
  }
  return { answer: text, location: res.headers.get("location") ?? "" };
}

export function leave(location: string) {
  const headers: Record<string, string> = {};
  if (csrf) headers["x-csrf-token"] = csrf;
  fetch(location, { method: "DELETE", headers, credentials: "same-origin" }).catch(() => {});
}

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  return request<T>(method, path, body === undefined ? undefined : JSON.stringify(body), "application/json");
}

/// A file as the body (`application/octet-stream`), e.g. a model upload.
export function upload<T = unknown>(path: string, file: Blob): Promise<T> {
  return request<T>("POST", path, file, "application/octet-stream");
}

async function request<T>(method: string, path: string, body: BodyInit | undefined, type: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["content-type"] = type;
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  const res = await fetch(path, { method, headers, body, credentials: "same-origin" });
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) {
    const e = data?.error ?? {};
    throw new ApiError(res.status, e.code ?? "http", e.message ?? `HTTP ${res.status}`, e.field ?? null);
  }
  return data as T;
}

// The API's types, generated from the OpenAPI document at build time (`npm run types`).
export type {
  DeviceIdentity as Device,
  SessionView as Session,
  RenditionSpec as Rendition,
  RenditionStatus,
  StreamOut as Stream,
} from "./api.gen";

export const get = <T,>(p: string) => api<T>("GET", p);
export const post = <T,>(p: string, b?: unknown) => api<T>("POST", p, b);


export function bytes(n: number | null | undefined): string {
  if (n == null) return "—";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export function duration(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

/// Wei (decimal string) as ETH with up to 6 decimals, exactly (no floating point).
export function eth(wei: string | null | undefined): string {
  return units(wei, "ETH");
}

/// LPT base units (10⁻¹⁸ LPT) as LPT.
export function lpt(amount: string | null | undefined): string {
  return units(amount, "LPT");
}

/// An 18-decimal integer amount in its unit, to six decimals (rounded down).
function units(amount: string | null | undefined, unit: string): string {
  if (!amount || !/^\d+$/.test(amount)) return "—";
  const s = amount.padStart(19, "0");
  const whole = s.slice(0, -18).replace(/^0+(?=\d)/, "");
  const frac = s.slice(-18, -12).replace(/0+$/, "");
  return frac ? `${whole}.${frac} ${unit}` : `${whole} ${unit}`;
}
