// Glass-to-glass latency from a clock burned into the picture (bit k of the frame's
// millisecond timestamp is a 16 px box, white for 1, in the top row): read back from each
// frame the video shows for `ms` milliseconds. Loaded into a page with addScriptTag by the
// browser tests; `measureClock` resolves to the sorted latencies and their quantiles.
window.measureClock = (video, t0, ms) =>
  new Promise((done) => {
    const canvas = document.createElement("canvas");
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const latencies = [];
    const until = Date.now() + ms;
    const frame = () => {
      const now = Date.now();
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      ctx.drawImage(video, 0, 0);
      let shown = 0;
      for (let k = 0; k < 20; k++) {
        const [r, g, b] = ctx.getImageData(k * 16 + 8, 8, 1, 1).data;
        if (r + g + b > 3 * 128) shown += 2 ** k;
      }
      latencies.push(now - (t0 + shown));
      if (now < until) video.requestVideoFrameCallback(frame);
      else {
        latencies.sort((a, b) => a - b);
        const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
        done({ frames: latencies.length, latency_ms: { p50: at(0.5), p90: at(0.9), max: latencies[latencies.length - 1] } });
      }
    };
    video.requestVideoFrameCallback(frame);
  });
