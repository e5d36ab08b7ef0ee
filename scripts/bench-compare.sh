#!/usr/bin/env bash
# cgi-session over memcached against tower-sessions over Redis: one axum app
# (benches/http-compare, its own cargo workspace), the same routes, each library, one run on
# this machine. memcached and redis-server are started here on free loopback ports, and
# everything started is stopped on exit.
#
# Usage: scripts/bench-compare.sh [duration_secs=10] [connections=64] [threads=1] [sessions=1000] [rounds=1]
# Needs: memcached, redis-server, wrk, curl, python3 (apt-get install -y memcached redis-server
# wrk curl). The app's CPU time and context switches per request come from /proc (no perf
# needed: hardware counters are often missing on VMs).
#
# Routes, for each backend:
#   /plain   no session (the baseline)
#   /read    reads one value from the session (nothing written)
#   /write   increments a counter in the session (a read and a write)
# Session requests carry one of <sessions> cookies made up front (GET /create), picked at
# random per request. Both sessions idle out after 30 minutes; cookies are unsigned.
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:-10}"
connections="${2:-64}"
threads="${3:-1}"
sessions="${4:-1000}"
rounds="${5:-1}"
backends=(cgi-session-memcached tower-sessions-redis)
routes=(plain read write)

for tool in memcached redis-server wrk curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is missing: apt-get install -y $tool" >&2; exit 1; }
done

echo "==> building benches/http-compare (release)"
manifest=benches/http-compare/Cargo.toml
cargo build --release -q --locked --manifest-path "$manifest"
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$manifest" \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
app="$target_dir/release/http-compare"

# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh

# Whether a server on 127.0.0.1:$1 answers `$2` with a line starting with `$3`.
answers() {
  python3 - "$@" <<'PY'
import socket, sys
port, request, expect = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
    s.sendall(request.encode() + b"\r\n")
    sys.exit(0 if s.recv(64).decode(errors="replace").startswith(expect) else 1)
PY
}

mc_port="$(free_port)"
mc_user=()
[ "$(id -u)" -eq 0 ] && mc_user=(-u nobody) # memcached refuses to run as root without -u
memcached -l 127.0.0.1 -p "$mc_port" -U 0 -m 256 -t 1 "${mc_user[@]}" &
pids+=($!)
wait_for 10 answers "$mc_port" version VERSION

redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --io-threads 1 --daemonize no --loglevel warning >"$work/redis.log" 2>&1 &
pids+=($!)
wait_for 10 answers "$redis_port" PING +PONG
echo "==> memcached at 127.0.0.1:$mc_port (1 thread), redis-server at 127.0.0.1:$redis_port"

declare -A app_pids bases

# Starts the app on a backend (both stay up for the whole run, each idle while the other is
# measured).
start_app() {
  local backend="$1" server="$2"
  "$app" --backend "$backend" --server "$server" >"$work/$backend.out" 2>"$work/$backend.err" &
  app_pids[$backend]=$!
  pids+=("$!")
  wait_for 30 grep -q 'http://' "$work/$backend.out" || { cat "$work/$backend.err" >&2; exit 1; }
  bases[$backend]="$(grep -o 'http://[^ /]*' "$work/$backend.out" | head -1)"
}

make_cookies() {
  cookies_lua "$1" "$sessions" curl -sf -o /dev/null -D - "$base/create"
}

# Process CPU time (user+system, in clock ticks) and context switches of a pid.
proc_counters() {
  python3 - "$1" <<'PY'
import sys
pid = sys.argv[1]
f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
cpu = int(f[11]) + int(f[12])
import os
cs = 0
for task in os.listdir(f"/proc/{pid}/task"):  # every thread of the process
    try:
        for line in open(f"/proc/{pid}/task/{task}/status"):
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                cs += int(line.split()[1])
    except FileNotFoundError:
        pass
print(cpu, cs)
PY
}

ticks="$(getconf CLK_TCK)"
printf '%s\n' backend route rps p50 p99 non2xx cpu_us_per_req cs_per_req | paste -sd' ' >"$work/summary"

for backend in "${backends[@]}"; do
  case "$backend" in
    cgi-session-memcached) server="127.0.0.1:$mc_port" ;;
    tower-sessions-redis) server="127.0.0.1:$redis_port" ;;
  esac
  start_app "$backend" "$server"
  base="${bases[$backend]}"
  echo "==> $backend at $base: creating $sessions sessions"
  make_cookies "$work/$backend.lua"
  # Warm-up (not recorded).
  wrk -t"$threads" -c"$connections" -d2s -s "$work/$backend.lua" "$base/read" >/dev/null
done

# Routes interleaved (each route on one backend, then on the other), so that a change in the
# machine's load during the run falls on both alike; `rounds` times.
for round in $(seq "$rounds"); do
  for route in "${routes[@]}"; do
    for backend in "${backends[@]}"; do
      base="${bases[$backend]}"
      app_pid="${app_pids[$backend]}"
      script=()
      [ "$route" = plain ] || script=(-s "$work/$backend.lua")
      echo "==> round $round, $backend $route: wrk -t$threads -c$connections -d${duration}s --latency ${script[*]} $base/$route"
      read -r cpu0 cs0 < <(proc_counters "$app_pid")
      wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "${script[@]}" "$base/$route" \
        >"$work/$backend-$route.txt"
      read -r cpu1 cs1 < <(proc_counters "$app_pid")
      python3 - "$work/$backend-$route.txt" "$backend" "$route" "$((cpu1 - cpu0))" "$((cs1 - cs0))" \
        "$ticks" >>"$work/summary" <<'PY'
import re, sys
path, backend, route, cpu, cs, ticks = sys.argv[1:]
text = open(path).read()
def ms(label):
    m = re.search(r"^\s*%s\s+([0-9.]+)(us|ms|s)\b" % re.escape(label), text, re.M)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
reqs = int(re.search(r"^\s*(\d+) requests in", text, re.M).group(1))
rps = float(re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M).group(1))
m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
bad = int(m.group(1)) if m else 0
cpu_us = int(cpu) / int(ticks) * 1e6 / max(reqs, 1)
print(backend, route, f"{rps:.0f}", f"{ms('50%'):.3f}", f"{ms('99%'):.3f}", bad,
      f"{cpu_us:.1f}", f"{int(cs) / max(reqs, 1):.3f}")
PY
      grep -E 'Requests/sec|Non-2xx|Socket errors' "$work/$backend-$route.txt" || true
    done
  done
done

echo
echo "One run, $(nproc) cores, wrk -t$threads -c$connections -d${duration}s; latencies in ms;"
echo "cpu_us/req and cs/req: the app process's CPU time (user+system) and context switches per request."
python3 - "$work/summary" "$rounds" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
rounds = int(sys.argv[2])
keys = []
by = {}
for r in rows:
    k = (r[0], r[1])
    if k not in by:
        keys.append(k)
        by[k] = []
    by[k].append([float(x) for x in r[2:]])
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in by.items()}
if rounds > 1:
    print(f"medians of {rounds} rounds")
print(f"{'backend':24} {'route':6} {'req/s':>9} {'p50':>8} {'p99':>8} {'non-2xx':>8} "
      f"{'cpu_us/req':>10} {'cs/req':>7} {'vs /plain':>9}")
for backend in dict.fromkeys(k[0] for k in keys):
    for k in [k for k in keys if k[0] == backend]:
        rps, p50, p99, bad, cpu, cs = med[k]
        plain = med[(backend, "plain")][0]
        print(f"{k[0]:24} {k[1]:6} {rps:9.0f} {p50:8.3f} {p99:8.3f} {bad:8.0f} "
              f"{cpu:10.1f} {cs:7.3f} {rps / plain:9.3f}")
print()
print("cgi-session-memcached / tower-sessions-redis: requests/s, and CPU per request")
for route in ("plain", "read", "write"):
    a, b = med.get(("cgi-session-memcached", route)), med.get(("tower-sessions-redis", route))
    if a and b:
        print(f"  /{route:6} {a[0] / b[0]:.3f}   {a[4] / b[4]:.3f}")
PY
