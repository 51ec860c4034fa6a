// N WebRTC (WHEP) viewers of one stream in one headless Chromium, for the WebRTC benchmark:
// connects them all, prints "ready <frames decoded>" once each has decoded a frame, then
// holds them for $HOLD seconds and prints "frames <total decoded>".
//
// Environment: BASE_URL, AUTHORIZATION (`Bearer …`), STREAM, VIEWERS, HOLD (seconds).
import { chromium } from "playwright-core";

const { BASE_URL: base, AUTHORIZATION: auth, STREAM: stream } = process.env;
const viewers = Number(process.env.VIEWERS ?? 10);
const seconds = Number(process.env.HOLD ?? 20);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
});
try {
  const page = await browser.newPage();
  await page.goto(`${base}/api/health`);
  await page.evaluate(async ([auth, stream, n]) => {
    window.pcs = [];
    for (let i = 0; i < n; i++) {
      const pc = new RTCPeerConnection();
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.addTransceiver("audio", { direction: "recvonly" });
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((ok) => {
        if (pc.iceGatheringState === "complete") return ok();
        pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok();
        setTimeout(ok, 2000);
      });
      const r = await fetch(`/api/streams/${stream}/whep`, {
        method: "POST",
        headers: { authorization: auth, "content-type": "application/sdp" },
        body: pc.localDescription.sdp,
      });
      if (r.status !== 201) throw new Error(`viewer ${i}: ${r.status} ${await r.text()}`);
      await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
      window.pcs.push(pc);
    }
  }, [auth, stream, viewers]);
  const decoded = () =>
    page.evaluate(async () => {
      const per = [];
      for (const pc of window.pcs) {
        let frames = 0;
        (await pc.getStats()).forEach((r) => r.type === "inbound-rtp" && r.kind === "video" && (frames = r.framesDecoded ?? 0));
        per.push(frames);
      }
      return per;
    });
  const t0 = Date.now();
  for (;;) {
    const per = await decoded();
    if (per.every((f) => f > 0)) {
      console.log(`ready ${per.reduce((a, b) => a + b, 0)}`);
      break;
    }
    if (Date.now() - t0 > 30000) throw new Error(`viewers without a picture: ${per}`);
    await new Promise((ok) => setTimeout(ok, 200));
  }
  await new Promise((ok) => setTimeout(ok, seconds * 1000));
  console.log(`frames ${(await decoded()).reduce((a, b) => a + b, 0)}`);
} finally {
  await browser.close();
}
