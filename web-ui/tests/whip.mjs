// WHIP publish from headless Chromium: the browser's fake camera and microphone (a test
// pattern and a beep) sent to the node over WebRTC for $SECONDS, then the session deleted.
//
// Environment: BASE_URL, KEY (the stream key), SECONDS. Prints one JSON line:
// {"connected", "video_codec", "location"} or {"error"}.
import { chromium } from "playwright-core";

const { BASE_URL: base, KEY: key } = process.env;
const seconds = Number(process.env.SECONDS ?? 10);
if (!base || !key) throw new Error("BASE_URL and KEY are required");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
});
try {
  const page = await browser.newPage();
  await page.goto(`${base}/api/health`);
  const result = await page.evaluate(async ([key, seconds]) => {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    const pc = new RTCPeerConnection();
    for (const track of media.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [media] });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((ok) => {
      if (pc.iceGatheringState === "complete") return ok();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok();
      setTimeout(ok, 3000);
    });
    const r = await fetch("/api/whip", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
    if (r.status !== 201) return { error: `WHIP answered ${r.status}: ${await r.text()}` };
    const location = r.headers.get("location");
    const answer = await r.text();
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    const t0 = Date.now();
    while (pc.connectionState !== "connected") {
      if (Date.now() - t0 > 15000) return { error: `not connected: ${pc.connectionState}`, answer };
      await new Promise((ok) => setTimeout(ok, 100));
    }
    const codec = /a=rtpmap:\d+ (\w+)\/90000/.exec(answer.split("m=video")[1] ?? "")?.[1] ?? "?";
    await new Promise((ok) => setTimeout(ok, seconds * 1000));
    const del = await fetch(location, { method: "DELETE" });
    pc.close();
    return { connected: true, video_codec: codec, location, deleted: del.status };
  }, [key, seconds]);
  console.log(JSON.stringify(result));
  if (result.error) process.exitCode = 1;
} finally {
  await browser.close();
}
