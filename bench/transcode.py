#!/usr/bin/env python3
"""Transcode benchmark: the node against one ffmpeg process, side by side, same clip and ladder.

A 60 s 1080p30 H.264 clip is transcoded to 720p/480p/360p with x264 (same preset, tune,
bitrates and GOP) two ways:
  (a) through the node: a `uri` stream reading the clip, decode once, tee, scale, encode x3, HLS;
  (b) through one ffmpeg process: decode once, split, scale, encode x3, HLS (the engine
      go-livepeer uses).
Prints CPU seconds, wall seconds and peak RSS of each, the node/ffmpeg ratios, and the node's
idle RSS, start-up time to a healthy /api/health and stripped release binary size.

BENCH_SMOKE=1 runs the whole procedure on a 2 s clip once, with the binary in BENCH_BINARY,
so the test suite keeps the benchmark working; its figures mean nothing.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.cookies import SimpleCookie

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
BINARY = os.environ.get("BENCH_BINARY", os.path.join(ROOT, "target", "release", "livepeer-edge"))
PRESET = os.environ.get("BENCH_PRESET", "veryfast")
TUNE = "zerolatency"
SECONDS = 2 if SMOKE else int(os.environ.get("BENCH_SECONDS", "60"))
LADDER = [("720p", 1280, 720, 3000), ("480p", 854, 480, 1200), ("360p", 640, 360, 700)]
GOP = 60
RUNS = 1 if SMOKE else int(os.environ.get("BENCH_RUNS", "2"))
PASSWORD = "benchmark password"
TICK = os.sysconf("SC_CLK_TCK")


def clip():
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"clip-1080p30-{SECONDS}s.mp4")
    if not os.path.exists(path):
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
             "-t", str(SECONDS), "-c:v", "libx264", "-preset", "veryfast", "-g", "60",
             "-b:v", "8000k", "-pix_fmt", "yuv420p", path],
            check=True)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, path, body=None, method=None, auth=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json", **(auth or {})}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def sign_in(port, log_path):
    """First-boot setup with the code the node logged; the session's headers."""
    deadline = time.monotonic() + 30
    while True:
        with open(log_path, errors="replace") as f:
            m = re.search(r"setup code ([A-Z0-9]{5}-[A-Z0-9]{5})", f.read())
        if m:
            break
        if time.monotonic() > deadline:
            raise SystemExit("the node logged no setup code")
        time.sleep(0.05)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/setup", method="POST",
        data=json.dumps({"code": m.group(1), "password": PASSWORD,
                         "device_name": "bench", "role": "off"}).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        csrf = json.loads(r.read())["csrf_token"]
        jar = SimpleCookie(r.headers["set-cookie"])
    cookie = "; ".join(f"{k}={v.value}" for k, v in jar.items())
    return {"cookie": cookie, "x-csrf-token": csrf}


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_mem(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def run_node(path):
    data = tempfile.mkdtemp(prefix="lpe-bench-")
    port = free_port()
    env = dict(os.environ, LPE_MEDIA_DEMO_STREAM="false", LPE_MEDIA_X264_PRESET=PRESET,
               LPE_MEDIA_X264_TUNE=TUNE, LPE_LOG_LEVEL="warn")
    log_path = os.path.join(data, "bench-node.log")
    log = open(log_path, "w")
    t0 = time.monotonic()
    node = subprocess.Popen(
        [BINARY, "run", "--data-dir", data, "--http-listen", f"127.0.0.1:{port}",
         "--rtmp-listen", f"127.0.0.1:{free_port()}"], env=env,
        stdout=subprocess.DEVNULL, stderr=log)
    try:
        while True:
            try:
                http(port, "/api/health")
                break
            except OSError:
                if time.monotonic() - t0 > 30:
                    raise SystemExit("node did not start")
                time.sleep(0.01)
        startup = time.monotonic() - t0
        auth = sign_in(port, log_path)
        time.sleep(3)
        idle_rss = proc_mem(node.pid, "VmRSS")
        cpu0 = proc_cpu(node.pid)
        w0 = time.monotonic()
        stream = http(port, "/api/streams", {
            "name": "bench", "source": {"kind": "uri", "uri": path},
            "ladder": [{"name": n, "height": h, "width": w, "bitrate_kbps": k, "gop_frames": GOP,
                        "profile": "high"} for (n, w, h, k) in LADDER]}, "POST", auth)
        sid = stream["id"]
        running_rss = 0.0
        while True:
            events = http(port, f"/api/events?stream_id={sid}&limit=20", auth=auth)
            if any(e["kind"] == "stream_down" for e in events):
                break
            running_rss = max(running_rss, proc_mem(node.pid, "VmRSS"))
            if time.monotonic() - w0 > 20 * SECONDS:
                raise SystemExit("node transcode did not finish")
            time.sleep(0.05)
        wall = time.monotonic() - w0
        cpu = proc_cpu(node.pid) - cpu0
        peak = proc_mem(node.pid, "VmHWM")
        http(port, f"/api/streams/{sid}/stop", method="POST", auth=auth)
        return {"cpu": cpu, "wall": wall, "peak_rss": peak, "idle_rss": idle_rss,
                "ladder_rss": running_rss, "startup": startup}
    finally:
        node.terminate()
        node.wait(timeout=30)
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def run_ffmpeg(path):
    out = tempfile.mkdtemp(prefix="lpe-bench-ff-")
    split = "".join(f"[s{i}]" for i in range(len(LADDER)))
    graph = f"[0:v]split={len(LADDER)}{split};" + ";".join(
        f"[s{i}]scale={w}:{h}[o{i}]" for i, (_, w, h, _) in enumerate(LADDER))
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", path,
           "-filter_complex", graph]
    for i, (name, _, _, kbps) in enumerate(LADDER):
        os.makedirs(os.path.join(out, name))
        cmd += ["-map", f"[o{i}]", "-c:v", "libx264", "-preset", PRESET, "-tune", TUNE,
                "-b:v", f"{kbps}k", "-g", str(GOP), "-keyint_min", str(GOP),
                "-sc_threshold", "0", "-profile:v", "high",
                "-f", "hls", "-hls_time", "2", "-hls_list_size", "8",
                "-hls_flags", "delete_segments",
                os.path.join(out, name, "index.m3u8")]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd)
    # wait4 gives this child's own usage (RUSAGE_CHILDREN would mix in the node's peak).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"ffmpeg failed with {proc.returncode}")
    shutil.rmtree(out, ignore_errors=True)
    return {"cpu": usage.ru_utime + usage.ru_stime, "wall": wall,
            "peak_rss": usage.ru_maxrss / 1024.0}


def mean_of(runs):
    return {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}


def main():
    if not os.path.exists(BINARY):
        raise SystemExit(f"build the release binary first: {BINARY}")
    path = clip()
    # Alternate the two so that machine noise hits both alike; report the means.
    ffs, nodes = [], []
    for _ in range(RUNS):
        ffs.append(run_ffmpeg(path))
        nodes.append(run_node(path))
    ff, node = mean_of(ffs), mean_of(nodes)
    size = os.path.getsize(BINARY) / 1e6
    if SMOKE:
        print("smoke run: the procedure works; these figures mean nothing")
    print(f"runs: {RUNS} of each, alternating; means shown")
    print(f"clip: {SECONDS} s 1080p30 H.264 → {', '.join(n for n, *_ in LADDER)}; "
          f"x264 preset={PRESET} tune={TUNE} GOP={GOP}")
    print(f"{'':24}{'node':>12}{'ffmpeg':>12}{'node/ffmpeg':>14}")
    for key, label, unit in [("cpu", "CPU", "s"), ("wall", "wall", "s"), ("peak_rss", "peak RSS", "MB")]:
        print(f"{label + ' (' + unit + ')':24}{node[key]:>12.1f}{ff[key]:>12.1f}{node[key] / ff[key]:>14.2f}")
    print(f"node idle RSS:            {node['idle_rss']:.1f} MB (goal ≤ 30)")
    print(f"node RSS, 1080p ladder:   {node['ladder_rss']:.1f} MB")
    print(f"release binary (stripped): {size:.1f} MB (goal ≤ 20)")
    print(f"start → healthy:          {node['startup'] * 1000:.0f} ms")
    print(f"CPU goal node ≤ 0.95× ffmpeg: {'met' if node['cpu'] <= 0.95 * ff['cpu'] else 'not met'}")


if __name__ == "__main__":
    sys.exit(main())
