// WebRTC preview in headless Chromium: a WHEP session against the node, the video plays,
// and the glass-to-glass latency is measured from a clock burned into the pushed picture
// (bit k of the frame's millisecond timestamp is a 16 px box, white for 1, in the top row),
// read back from decoded frames.
//
// Environment: BASE_URL, AUTHORIZATION (`Bearer …`), STREAM (id), T0 (wall-clock ms of
// the push's first frame). Prints one JSON line: {"frames", "latency_ms": {p50, p90, max},
// "audio": {packets, bytes, codec}}.
import { chromium } from "playwright-core";

const { BASE_URL: base, AUTHORIZATION: auth, STREAM: stream, T0 } = process.env;
if (!base || !auth || !stream || !T0) throw new Error("BASE_URL, AUTHORIZATION, STREAM and T0 are required");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--disable-features=WebRtcHideLocalIpsWithMdns"],
});
try {
  const page = await browser.newPage();
  // A page of the node's own origin (the API answers JSON at /api/health).
  await page.goto(`${base}/api/health`);
  await page.addScriptTag({ path: new URL("./clock.js", import.meta.url).pathname });
  const result = await page.evaluate(async ([auth, stream, t0]) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const video = document.createElement("video");
    video.muted = true;
    video.autoplay = true;
    document.body.append(video);
    const tracks = new MediaStream();
    video.srcObject = tracks;
    pc.ontrack = (e) => {
      if (e.track.muted) e.track.onunmute = () => tracks.addTrack(e.track);
      else tracks.addTrack(e.track);
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((ok) => {
      if (pc.iceGatheringState === "complete") return ok();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok();
      setTimeout(ok, 3000);
    });
    const r = await fetch(`/api/streams/${stream}/whep`, {
      method: "POST",
      headers: { authorization: auth, "content-type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
    if (r.status !== 201) return { error: `WHEP answered ${r.status}: ${await r.text()}` };
    const location = r.headers.get("location");
    const answer = await r.text();
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    // Frames for 8 s once it plays.
    const started = Date.now();
    while (video.currentTime === 0) {
      if (Date.now() - started > 20000) {
        const inbound = [];
        (await pc.getStats()).forEach((r) => r.type === "inbound-rtp" && inbound.push({ kind: r.kind, packets: r.packetsReceived, frames: r.framesDecoded }));
        return { error: `no picture (connection ${pc.connectionState}, ICE ${pc.iceConnectionState})`, inbound, tracks: tracks.getTracks().map((t) => `${t.kind}:${t.muted}`), answer };
      }
      await new Promise((ok) => setTimeout(ok, 100));
    }
    const clock = await window.measureClock(video, t0, 8000);
    // The stream's sound came too (its Opus encode).
    // (Headless Chromium plays no audio out, so levels are not measured here: the packets'
    // size tells a tone from silence, which Opus sends in a few bytes.)
    let audio = { packets: 0, bytes: 0, codec: "" };
    const stats = await pc.getStats();
    stats.forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "audio")
        audio = { packets: r.packetsReceived, bytes: r.bytesReceived, codec: stats.get(r.codecId)?.mimeType ?? "" };
    });
    await fetch(location, { method: "DELETE", headers: { authorization: auth } });
    pc.close();
    return { audio, ...clock };
  }, [auth, stream, Number(T0)]);
  console.log(JSON.stringify(result));
  if (result.error) process.exitCode = 1;
} finally {
  await browser.close();
}
