#!/usr/bin/env bash
# HTTP benchmark: the demo app's session routes under wrk against its no-session route, with
# the memcached store. Everything runs on 127.0.0.1: memcached, the demo (release build) and wrk.
#
# Usage: scripts/bench-http.sh [duration_secs=10] [connections=64] [threads=1] [sessions=1000]
# Needs: memcached, wrk, curl, python3 (apt-get install -y memcached wrk curl).
# DEMO_BIN=path runs that demo binary instead of building one (e.g. to compare two builds).
# CALLGRIND=1 runs the demo under valgrind's callgrind and adds the demo's user-space
# instructions per request to the table: a figure that does not depend on the machine's load
# (requests/s then drop about fifty-fold and mean nothing). Needs valgrind. With
# CALLGRIND_KEEP=dir, each route's profile is kept as dir/<route>.callgrind (for
# callgrind_annotate) instead of being deleted.
#
# Routes measured:
#   /plain        no session at all (the baseline)
#   /api/session  reads the session (one memcached round trip, nothing written)
#   /             the demo's home page: reads and increments a visit counter (two round trips)
# Session requests carry one of <sessions> cookies created up front, picked at random per
# request (as many users would), so that concurrent requests rarely touch the same session.
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:-10}"
connections="${2:-64}"
threads="${3:-1}"
sessions="${4:-1000}"

for tool in memcached wrk curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is missing: apt-get install -y $tool" >&2; exit 1; }
done

if [ -n "${DEMO_BIN:-}" ]; then
  demo="$DEMO_BIN"
else
  echo "==> building the demo (release)"
  cargo build --release -q -p cgi-session-demo
  target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  demo="$target_dir/release/cgi-session-demo"
fi

# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh

mc_port="$(free_port)"
mc_user=()
[ "$(id -u)" -eq 0 ] && mc_user=(-u nobody) # memcached refuses to run as root without -u
memcached -l 127.0.0.1 -p "$mc_port" -U 0 -m 256 "${mc_user[@]}" &
pids+=($!)
wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$mc_port"

wrapper=()
if [ "${CALLGRIND:-0}" = 1 ]; then
  command -v valgrind >/dev/null 2>&1 || { echo "error: valgrind is missing: apt-get install -y valgrind" >&2; exit 1; }
  wrapper=(valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" --dump-instr=no)
fi
"${wrapper[@]}" "$demo" --listen 127.0.0.1:0 --dsn driver:memcache --servers "127.0.0.1:$mc_port" \
  >"$work/demo.out" 2>"$work/demo.err" &
demo_pid=$!
pids+=("$demo_pid")
wait_for 120 grep -q 'http://' "$work/demo.out" || { cat "$work/demo.err" >&2; exit 1; }
base="$(grep -o 'http://[^ ]*' "$work/demo.out" | head -1)"
base="${base%/}"
echo "==> demo at $base, memcached at 127.0.0.1:$mc_port"

echo "==> creating $sessions sessions"
cookies_lua "$work/cookies.lua" "$sessions" curl -s -o /dev/null -D - -X POST -d greet_en=Hi "$base/greet"

# The demo's CPU time so far (user+system), in clock ticks.
demo_cpu() { awk '{ print $14 + $15 }' "/proc/$demo_pid/stat"; }
ticks="$(getconf CLK_TCK)"

run() {
  local name="$1" path="$2"; shift 2
  echo "==> $name: wrk -t$threads -c$connections -d${duration}s $* $base$path"
  local cpu0 cpu1 ir=0
  [ "${CALLGRIND:-0}" = 1 ] && callgrind_control -z "$demo_pid" >/dev/null
  cpu0="$(demo_cpu)"
  wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "$@" "$base$path" | tee "$work/$name.txt"
  cpu1="$(demo_cpu)"
  if [ "${CALLGRIND:-0}" = 1 ]; then
    callgrind_control -d "$name" "$demo_pid" >/dev/null
    local dump
    dump="$(ls -t "$work"/callgrind.*.* | head -1)"
    ir="$(callgrind_annotate "$dump" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) (100.0%).*PROGRAM TOTALS.*/\1/p' | tr -d ,)"
    if [ -n "${CALLGRIND_KEEP:-}" ]; then
      mkdir -p "$CALLGRIND_KEEP" && mv "$dump" "$CALLGRIND_KEEP/$name.callgrind"
    else
      rm -f "$dump"
    fi
  fi
  rps="$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$work/$name.txt")"
  reqs="$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$work/$name.txt")"
  non2xx="$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$work/$name.txt")"
  cpu_us="$(awk -v c=$((cpu1 - cpu0)) -v t="$ticks" -v n="$reqs" 'BEGIN { printf "%.1f", (n > 0 ? c / t * 1e6 / n : 0) }')"
  echo "$name $rps ${non2xx:-0} $cpu_us $(( ${ir:-0} / (reqs > 0 ? reqs : 1) ))" >>"$work/summary"
}

# Warm-up (not recorded), then the three routes.
wrk -t"$threads" -c"$connections" -d2s -s "$work/cookies.lua" "$base/" >/dev/null
run plain /plain
run session-read /api/session -s "$work/cookies.lua"
run session-rmw / -s "$work/cookies.lua"

echo
echo "route                 requests/s   non-2xx   vs /plain   demo CPU us/request   instructions/request"
plain_rps="$(awk '$1=="plain"{print $2}' "$work/summary")"
while read -r name rps bad cpu_us ir; do
  awk -v n="$name" -v r="$rps" -v b="$bad" -v p="$plain_rps" -v c="$cpu_us" -v i="$ir" \
    'BEGIN { printf "%-20s %12.0f %9d %11.3f %21.1f %22s\n", n, r, b, (p > 0 ? r / p : 0), c, (i > 0 ? i : "-") }'
done <"$work/summary"
