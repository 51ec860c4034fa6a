// Low-latency HLS in headless Chromium: hls.js in low-latency mode plays the node's
// /llhls playlist, and the glass-to-glass latency is measured from a clock burned into the
// pushed picture (bit k of the frame's millisecond timestamp is a 16 px box, white for 1, in
// the top row), read back from decoded frames.
//
// Environment: BASE_URL, STREAM (id), T0 (wall-clock ms of the push's first frame).
// Prints one JSON line: {"frames", "latency_ms": {p50, p90, max}, "parts", "audio_codec",
// "hls_latency_s"}.
import { chromium } from "playwright-core";
import { createRequire } from "node:module";

const { BASE_URL: base, STREAM: stream, T0 } = process.env;
if (!base || !stream || !T0) throw new Error("BASE_URL, STREAM and T0 are required");
const hlsjs = createRequire(import.meta.url).resolve("hls.js/dist/hls.light.min.js");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
});
try {
  const page = await browser.newPage();
  // A page of the node's own origin (the API answers JSON at /api/health).
  await page.goto(`${base}/api/health`);
  await page.addScriptTag({ path: new URL("./clock.js", import.meta.url).pathname });
  await page.addScriptTag({ path: hlsjs });
  const result = await page.evaluate(async ([stream, t0]) => {
    const video = document.createElement("video");
    video.muted = true;
    video.autoplay = true;
    document.body.append(video);
    // Catching up to the playlist's PART-HOLD-BACK after a stall, as Apple's players do.
    const hls = new Hls({ lowLatencyMode: true, enableWorker: false, maxLiveSyncPlaybackRate: 1.5 });
    let parts = 0;
    let audioCodec = "";
    const errors = [];
    hls.on(Hls.Events.FRAG_LOADED, (_e, d) => d.part && parts++);
    // Audio muxed with the video comes as one "audiovideo" track ("avc1…,mp4a…").
    hls.on(Hls.Events.BUFFER_CODECS, (_e, d) => {
      const codecs = [d.audio?.codec, d.audiovideo?.codec].filter(Boolean).join(",");
      audioCodec = codecs.split(",").find((c) => c.startsWith("mp4a")) ?? audioCodec;
    });
    hls.on(Hls.Events.ERROR, (_e, d) => errors.length < 20 && errors.push(`${d.type}/${d.details}${d.fatal ? " (fatal)" : ""}`));
    hls.loadSource(`/llhls/${stream}/index.m3u8`);
    hls.attachMedia(video);
    const started = Date.now();
    while (video.currentTime === 0) {
      if (Date.now() - started > 30000) return { error: "no picture within 30 s", errors };
      await new Promise((ok) => setTimeout(ok, 100));
    }
    // Let it settle on its target latency, then read frames for 8 s.
    await new Promise((ok) => setTimeout(ok, 4000));
    const clock = await window.measureClock(video, t0, 8000);
    const hlsLatency = hls.latency;
    hls.destroy();
    return {
      ...clock,
      parts,
      audio_codec: audioCodec,
      hls_latency_s: hlsLatency,
      errors,
    };
  }, [stream, Number(T0)]);
  console.log(JSON.stringify(result));
  if (result.error) process.exitCode = 1;
} finally {
  await browser.close();
}
