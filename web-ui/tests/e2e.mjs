// Walks the operator's first hour in headless Chromium: first-boot setup → sign out → sign in
// (by keyboard) → add an RTMP stream (the ladder editor flags a bad size as it is typed) →
// edit a stream of every kind in the editor and check nothing else changed → a publisher with
// a wrong key raises a dated alert, acknowledged from the dashboard →
// push to the shown URL with ffmpeg → the preview plays (and again after the publisher drops
// and returns) → device charts render → phone-sized
// layout → sign out. Every request must go to the box itself. Screenshots go to $ARTIFACTS.
//
// Environment: BASE_URL (the node), SETUP_CODE, ARTIFACTS (a directory).
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";

const base = process.env.BASE_URL;
const code = process.env.SETUP_CODE;
const out = process.env.ARTIFACTS ?? "test-artifacts";
if (!base || !code) throw new Error("BASE_URL and SETUP_CODE are required");
mkdirSync(out, { recursive: true });
const PASSWORD = "stage-door-42";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
});
let ffmpeg = null;
let step = 0;
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const shot = async (name) => page.screenshot({ path: `${out}/${String(++step).padStart(2, "0")}-${name}.png`, fullPage: true });
const foreign = [];
page.on("request", (r) => {
  const u = r.url();
  if (!u.startsWith(base) && !u.startsWith("data:") && !u.startsWith("blob:")) foreign.push(u);
});
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));

try {
  // First-boot setup.
  await page.goto(base);
  await page.getByRole("heading", { name: /Set up this Livepeer Edge box/ }).waitFor();
  await shot("setup");
  await page.fill("input[name=code]", code);
  await page.fill("input[name=password]", PASSWORD);
  await page.fill("input[name=confirm]", PASSWORD + "x");
  await page.getByText("the passwords differ").waitFor();
  await page.fill("input[name=confirm]", PASSWORD);
  await page.fill("input[name=device_name]", "Main hall");
  await page.selectOption("select[name=role]", "off");
  await page.click("button[type=submit]");
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  await page.getByText("Main hall").first().waitFor();
  await shot("dashboard-after-setup");

  // Sign out, then sign in with the keyboard only.
  await page.click("[data-testid=logout]");
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.focus("input[name=username]");
  await page.keyboard.press("Control+A");
  await page.keyboard.type("admin");
  await page.keyboard.press("Tab");
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();

  // Add an RTMP stream; the ladder editor validates as one types.
  await page.click("a[href='#/streams']");
  await page.click("[data-testid=add-stream]");
  await page.fill("input[name=name]", "Stage");
  const height2 = page.getByLabel("rendition 2 height");
  await height2.fill("481");
  await page.getByText("must be even (H.264 4:2:0)").waitFor();
  if (!(await page.locator("form button[type=submit]").isDisabled())) throw new Error("save is enabled with an invalid ladder");
  await shot("ladder-error");
  await height2.fill("480");
  await page.selectOption("select[name=recording_mode]", "continuous");
  await page.click("form button[type=submit]");
  const server = (await page.locator("[data-testid=rtmp-server]").first().textContent()).trim();
  const key = (await page.locator("[data-testid=rtmp-key]").first().textContent()).trim();
  if (!server.startsWith("rtmp://") || key.length < 8) throw new Error(`bad push URL: ${server} ${key}`);
  await shot("stream-added");

  // Every kind of stream, edited in the UI, keeps every field the edit did not touch.
  const call = (method, path, body) =>
    page.evaluate(async ([method, path, body]) => {
      const me = await (await fetch("/api/auth/me")).json();
      const r = await fetch(path, {
        method,
        headers: { "content-type": "application/json", "x-csrf-token": me.csrf_token },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: r.status, body: await r.json().catch(() => null) };
    }, [method, path, body]);
  const inventory = (await call("GET", "/api/encoders")).body;
  const encoder = inventory.encoders.find((e) => e.works).element;
  const kinds = [
    { name: "Kind test", enabled: false, offload: true, encoder, source: { kind: "test", width: 640, height: 360, fps: 25, pattern: "ball" },
      ladder: [{ name: "a", height: 240, bitrate_kbps: 300, profile: "main", gop_frames: 50, fps: 25 }] },
    { name: "Kind rtsp", enabled: false, source: { kind: "rtsp", url: "rtsp://127.0.0.1:9/cam", username: "u", password: "p4ss", transport: "udp", latency_ms: 500 },
      ladder: [{ name: "b", bitrate_kbps: 800, profile: "baseline" }] },
    { name: "Kind uri", enabled: false, source: { kind: "uri", uri: "/srv/clips/loop.mp4" },
      ladder: [{ name: "c", height: 360, bitrate_kbps: 600, gop_frames: 30 }] },
    { name: "Kind rtmp", enabled: false, source: { kind: "rtmp" },
      ladder: [{ name: "d", height: 480, bitrate_kbps: 900, profile: "main", gop_frames: 60 }] },
  ];
  const kept = (s) => JSON.stringify({ source: s.source, ladder: s.ladder, encoder: s.encoder, enabled: s.enabled, offload: s.offload });
  await page.reload();
  for (const spec of kinds) {
    const created = await call("POST", "/api/streams", spec);
    if (created.status !== 201) throw new Error(`create ${spec.name}: ${JSON.stringify(created.body)}`);
    const before = (await call("GET", `/api/streams/${created.body.id}`)).body;
    const row = page.locator(`[data-testid=row-${created.body.id}]`);
    await row.getByRole("button", { name: "Edit" }).click();
    await page.fill("input[name=name]", `${spec.name} edited`);
    await page.click("form button[type=submit]");
    await page.locator("form.editor").waitFor({ state: "detached" });
    const after = (await call("GET", `/api/streams/${created.body.id}`)).body;
    if (after.name !== `${spec.name} edited`) throw new Error(`${spec.name}: the name was not saved`);
    if (kept(after) !== kept(before)) throw new Error(`${spec.name} changed on edit:\n${kept(before)}\n${kept(after)}`);
  }
  await shot("every-kind-edited");

  // A publisher with a wrong key is refused: a dated alert on the dashboard until the operator
  // acknowledges it, which the node keeps (with who did it).
  await new Promise((resolve) => {
    spawn(
      "ffmpeg",
      ["-hide_banner", "-loglevel", "quiet", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-t", "3",
       "-c:v", "libx264", "-preset", "ultrafast", "-f", "flv", `${server}/wrong-${key}`],
      { stdio: "ignore" },
    ).on("exit", resolve);
  });
  await page.click("a[href='#/dashboard']");
  const refusal = page.locator("[data-testid=alerts] li", { hasText: "rtmp refused" }).first();
  await refusal.waitFor({ timeout: 15000 });
  const when = await refusal.locator("time").getAttribute("datetime");
  if (!when || Math.abs(Date.parse(when) - Date.now()) > 120000) throw new Error(`the alert's date: ${when}`);
  await shot("alert");
  await refusal.getByRole("button", { name: "Acknowledge" }).click();
  await refusal.waitFor({ state: "detached", timeout: 10000 });
  const acked = (await call("GET", "/api/events?alerts=all&limit=50")).body.find((e) => e.kind === "rtmp_refused");
  if (acked?.acknowledged_by !== "admin") throw new Error(`not acknowledged: ${JSON.stringify(acked)}`);

  // Push with ffmpeg to exactly what the UI shows.
  const push = () => spawn(
    "ffmpeg",
    ["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", "90",
     "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p", "-f", "flv", `${server}/${key}`],
    { stdio: "ignore" },
  );
  ffmpeg = push();

  // The preview plays: the video's currentTime advances.
  await page.click("a[href='#/dashboard']");
  const video = page.locator("video.preview").first();
  await video.waitFor({ timeout: 60000 });
  const t0 = Date.now();
  let start = 0;
  for (;;) {
    start = await video.evaluate((v) => v.currentTime);
    if (start > 0) break;
    if (Date.now() - t0 > 60000) throw new Error("the preview never started");
    await page.waitForTimeout(500);
  }
  await page.waitForTimeout(3000);
  const later = await video.evaluate((v) => v.currentTime);
  if (!(later > start + 1)) throw new Error(`the preview does not advance: ${start} → ${later}`);
  await shot("preview-playing");

  // The sub-second preview: the same stream over WebRTC plays too.
  await page.locator("[data-testid=low-latency]").first().check();
  await page.waitForFunction(() => (document.querySelector("video[data-testid=webrtc-preview]")?.currentTime ?? 0) > 1, null, { timeout: 30000 });
  await shot("webrtc-preview");
  await page.locator("[data-testid=low-latency]").first().uncheck();

  // The encoder drops off: the card says waiting (not an error) at once; it comes back and
  // the preview plays again.
  ffmpeg.kill("SIGKILL");
  const dropped = Date.now();
  await page.locator(".card.stream .badge.waiting").first().waitFor({ timeout: 5000 });
  const noticed = Date.now() - dropped;
  ffmpeg = push();
  const returned = Date.now();
  await page.waitForFunction(() => (document.querySelector("video.preview")?.currentTime ?? 0) > 0.5, null, { timeout: 30000 });
  console.log(`dropped publisher shown waiting after ${noticed} ms; preview playing ${Date.now() - returned} ms after it came back`);
  await shot("preview-after-reconnect");

  // The stream is recorded: its card says so, and the recordings page plays it back from
  // the day's timeline.
  await page.click("a[href='#/streams']");
  await page.waitForFunction(() => /recording · [1-9]\d* files/.test(document.querySelector("[data-testid=recording]")?.textContent ?? ""), null, { timeout: 40000 });
  await page.click("[data-testid=recording] a");
  await page.getByRole("heading", { name: "Recordings" }).waitFor();
  await page.locator(".timeline .recorded").first().waitFor({ timeout: 20000 });
  await page.locator(".timeline .recorded").first().click();
  const playback = page.locator("video[data-testid=playback]");
  await playback.waitFor();
  await page.waitForFunction(() => (document.querySelector("video[data-testid=playback]")?.currentTime ?? 0) > 1, null, { timeout: 30000 });
  await page.waitForFunction(() => (document.querySelector("[data-testid=playing-at]")?.textContent ?? "").startsWith("Playing"));
  const href = await page.locator("[data-testid=export]").getAttribute("href");
  if (!/export\.mp4\?from=\d+&to=\d+/.test(href ?? "")) throw new Error(`export link: ${href}`);
  await shot("recordings");

  // Device charts render, and the GPU is honestly reported.
  await page.click("a[href='#/device']");
  await page.locator("[data-testid=chart]").first().waitFor();
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=chart] polyline").length >= 3);
  await page.waitForFunction(() => (document.querySelector("[data-testid=gpu]")?.textContent ?? "").length > 0, null, { timeout: 15000 });
  const gpu = await page.locator("[data-testid=gpu]").textContent();
  if (!/not present|NVML|Jetson/.test(gpu)) throw new Error(`GPU line: ${gpu}`);
  await shot("device");

  // Payments say "not configured" off-chain; settings show the log.
  await page.click("a[href='#/payments']");
  await page.locator("[data-testid=payments-off]").waitFor();
  await page.click("a[href='#/settings']");
  await page.locator("[data-testid=log]").waitFor();
  await page.waitForFunction(() => (document.querySelector("[data-testid=log]")?.textContent ?? "").includes("listening"));
  await shot("settings");

  // A phone-sized screen: the menu collapses behind a button.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.click("button.menu");
  await page.click("a[href='#/dashboard']");
  await page.locator("video.preview").first().waitFor();
  await shot("phone-dashboard");

  await page.click("[data-testid=logout]");
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await shot("signed-out");

  if (foreign.length) throw new Error(`requests to other hosts: ${foreign.join(", ")}`);
  if (consoleErrors.length) throw new Error(`page errors: ${consoleErrors.join("; ")}`);
  console.log(`ok: ${step} screenshots in ${out}`);
} catch (e) {
  await shot("failure").catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  ffmpeg?.kill("SIGKILL");
  await browser.close();
}
