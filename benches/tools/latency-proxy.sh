# Sourced by benchmark scripts: `start_latency_proxy ENDPOINT DELAY_MS DIR` starts
# benches/tools/latency-proxy.py on a free loopback port in front of ENDPOINT (http://host:port),
# waits until it listens, and sets LATENCY_ENDPOINT (its address, to use instead of ENDPOINT)
# and LATENCY_PROXY_PID (stop it with `kill "$LATENCY_PROXY_PID"`). DIR holds its output.
start_latency_proxy() {
  local endpoint=$1 delay_ms=$2 dir=$3 port target
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  target=${endpoint#http://}
  python3 "$(dirname "${BASH_SOURCE[0]}")/latency-proxy.py" "$port" "${target%%/*}" "$delay_ms" \
    >"$dir/latency-proxy.out" 2>&1 &
  LATENCY_PROXY_PID=$!
  until grep -q ready "$dir/latency-proxy.out"; do
    kill -0 "$LATENCY_PROXY_PID" 2>/dev/null || { cat "$dir/latency-proxy.out" >&2; return 1; }
    sleep 0.1
  done
  LATENCY_ENDPOINT="http://127.0.0.1:$port"
}
