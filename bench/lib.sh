# Shared by the benchmarks that run the node: ports, CPU ticks, a node with first-boot setup
# done and an admin token. Source it after setting BIN and WORK and declaring `pids=()`.

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU time of a process so far, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# start_node NAME: a node on $WORK/NAME; sets HTTP, RTMP and PID (in this shell, so that the
# caller's cleanup stops it).
start_node() {
  HTTP=$(port); RTMP=$(port)
  LPE_MEDIA_DEMO_STREAM=false LPE_LOG_LEVEL=warn \
    "$BIN/livepeer-edge" run --data-dir "$WORK/$1" --http-listen "127.0.0.1:$HTTP" \
    --rtmp-listen "127.0.0.1:$RTMP" 2>"$WORK/$1.log" &
  PID=$!
  pids+=("$PID")
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$HTTP/api/health" >/dev/null && break; sleep 0.1; done
}

# setup_token HTTP NAME: first-boot setup of node NAME, then an admin API token (printed).
setup_token() {
  local code csrf
  code=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/$2.log" | grep -o 'setup code [A-Z0-9-]*' | awk '{print $3}' | tail -1)
  csrf=$(curl -fs -c "$WORK/$2.cookies" -H 'content-type: application/json' \
    -d "{\"code\":\"$code\",\"password\":\"bench bench bench\",\"device_name\":\"bench\",\"role\":\"off\"}" \
    "http://127.0.0.1:$1/api/setup" | python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
  curl -fs -b "$WORK/$2.cookies" -H "x-csrf-token: $csrf" -H 'content-type: application/json' \
    -d '{"name":"bench","role":"admin"}' "http://127.0.0.1:$1/api/tokens" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

# create_stream HTTP TOKEN JSON: creates a stream; prints "ID KEY".
create_stream() {
  curl -fs -H "authorization: Bearer $2" -H 'content-type: application/json' -d "$3" \
    "http://127.0.0.1:$1/api/streams" \
    | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["id"], s.get("stream_key", ""))'
}
