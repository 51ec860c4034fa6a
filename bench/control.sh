#!/usr/bin/env bash
# The control plane's figures, in one run:
#  - MQTT command round trip (publish → final result) p50/p99 over N commands, beside a
#    mosquitto_sub | mosquitto_pub echo on the same broker (goal: p99 <= 2x the echo);
#  - idle RSS of the node with the web UI served and MQTT connected (goal: <= 40 MB);
#  - the web UI's initial load, gzipped (goal: <= 300 KB).
# BENCH_SMOKE=1 checks the procedure in seconds on the debug build (the test suite runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [ "${BENCH_SMOKE:-}" = 1 ]; then
  cargo build --workspace --all-targets
  BIN=target/debug; N=20; SETTLE=1
  echo "smoke run: the procedure works; these figures mean nothing"
else
  cargo build --release -p livepeer-edge --bin livepeer-edge --example mqtt_rtt
  BIN=target/release; N="${BENCH_COMMANDS:-1000}"; SETTLE=10
fi
WORK="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pkill -f "mosquitto_(sub|pub) --nodelay -p $BROKER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

BROKER=$(port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n' "$BROKER" > "$WORK/mosquitto.conf"
mosquitto -c "$WORK/mosquitto.conf" >/dev/null 2>&1 & pids+=($!)
sleep 0.5
# The baseline echo: one subscriber piping into one line-mode publisher.
# Every party disables Nagle's algorithm, as the node does.
(stdbuf -oL mosquitto_sub --nodelay -p "$BROKER" -t bench/echo/in | mosquitto_pub --nodelay -p "$BROKER" -t bench/echo/out -l) & pids+=($!)

HTTP=$(port); RTMP=$(port)
LPE_MQTT_URL="mqtt://127.0.0.1:$BROKER" LPE_MQTT_DEVICE_ID=bench LPE_MEDIA_DEMO_STREAM=false \
  LPE_LOG_LEVEL=warn LPE_HTTP_UI_DIR="$PWD/web-ui/dist" \
  "$BIN/livepeer-edge" run --data-dir "$WORK/data" --http-listen "127.0.0.1:$HTTP" \
  --rtmp-listen "127.0.0.1:$RTMP" 2>"$WORK/node.log" & NODE=$!; pids+=($NODE)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$HTTP/api/health" >/dev/null && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$HTTP/" >/dev/null   # the UI is served
for _ in $(seq 100); do mosquitto_sub -p "$BROKER" -t livepeer-edge/bench/status -C 1 -W 1 2>/dev/null | grep -q online && break; done

echo "== MQTT command round trip ($N commands, node and echo alternating)"
"$BIN/examples/mqtt_rtt" "$BROKER" livepeer-edge/bench "$N"

echo "== idle RSS (UI served, MQTT connected, no streams)"
sleep "$SETTLE"
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$NODE/status")
awk -v k="$rss_kb" 'BEGIN { printf "node RSS: %.1f MB (goal <= 40 MB)\n", k / 1024 }'

echo "== web UI initial load (gzip -9)"
python3 - web-ui/dist <<'PY'
import gzip, pathlib, re, sys
dist = pathlib.Path(sys.argv[1])
html = (dist / "index.html").read_text()
files = ["index.html"] + re.findall(r'(?:src|href)="/(assets/[^"]+)"', html)
total = 0
for f in files:
    n = len(gzip.compress((dist / f).read_bytes(), 9))
    total += n
    print(f"  {f}: {n / 1024:.1f} KB")
lazy = [p for p in (dist / "assets").iterdir() if p.name.startswith("hls")]
print(f"initial load: {total / 1024:.1f} KB gzipped (goal <= 300 KB)")
for p in lazy:
    print(f"  loaded with the first preview: {p.name} {len(gzip.compress(p.read_bytes(), 9)) / 1024:.1f} KB")
PY
