#!/usr/bin/env bash
# Same-session contention benchmark (issue 12): many requests with ONE session cookie at once,
# each reading the counter `n` and storing `n + 1`, driven through HTTP by wrk.
#
#   scripts/bench-contention.sh            # full run (~15 minutes after the build)
#   DURATION=3 WARMUP=1 REPEAT=1 scripts/bench-contention.sh   # quick smoke run
#
# Settings (environment): DURATION (s per measured run, 10), WARMUP (s, 2), REPEAT (rounds of
# the comparison table, 3; its rows are the median run), N_LIST ("1 2 8 32 50"),
# TWO_PROC_N_LIST ("8 32").
#
# Needs: cargo, wrk, memcached, redis-server (+ redis-cli), curl. Starts memcached and
# redis-server itself on free loopback ports and stops everything it started at exit.
# Everything listens on and talks to 127.0.0.1 only.
#
# Prints markdown tables ready for BENCHMARKS.md:
#   1. comparison at 32 connections: tower-sessions (memory, Redis) vs cgi-session
#      (memory, memcached, memcached + LockMode::EveryRequest);
#   2. cgi-session over memcached, optimistic vs EveryRequest, N in flight = 1..50, one
#      process, then two server processes sharing one memcached;
#   3. memcached operations per request for the runs of table 2.
# "updates lost" = 1 - (counter increase / 2xx answers). The counter is read through GET /read
# before and after each run. Requests still in flight when wrk stops are not counted by wrk
# but may still be applied: a handler that loses nothing then shows "0 % (+k)".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$ROOT/bench/contention"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
REPEAT="${REPEAT:-3}"
N_LIST="${N_LIST:-1 2 8 32 50}"
TWO_PROC_N_LIST="${TWO_PROC_N_LIST:-8 32}"
HOST=127.0.0.1

for tool in cargo wrk memcached redis-server redis-cli curl; do
    command -v "$tool" >/dev/null || {
        echo "bench-contention: $tool is missing (apt-get install -y wrk memcached redis-server curl)" >&2
        exit 1
    }
done

WORK="$(mktemp -d /tmp/bench-contention.XXXXXX)"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench-contention: $(date +%T) $*" >&2; }

# A loopback TCP port nobody listens on, below the kernel's ephemeral range (where the
# client side of the many benchmark connections lives); checked by connecting.
free_port() {
    local port low
    low="$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
    [ "$low" -gt 12000 ] || low=32768
    for _ in $(seq 1 200); do
        port=$((10000 + RANDOM % (low - 10000)))
        if ! (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    log "no free port found"
    exit 1
}

# Waits until something accepts connections on port $1, up to ~10 s; gives up early when
# process $2 (if given) has exited.
wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; then
            return 0
        fi
        if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    log "nothing listens on $HOST:$1"
    return 1
}

# ---------------------------------------------------------------------------------------------
log "building contention-server (release)..."
cargo build --release --quiet --manifest-path "$BENCH_DIR/Cargo.toml"
SERVER_BIN="$BENCH_DIR/target/release/contention-server"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

MC_PORT="$(free_port)"
MC_USER=()
[ "$(id -u)" = 0 ] && MC_USER=(-u nobody)
memcached -l "$HOST" -p "$MC_PORT" -U 0 -m 256 -t 2 -c 1024 "${MC_USER[@]}" \
    >"$WORK/memcached.log" 2>&1 &
MC_PID=$!
PIDS+=("$MC_PID")
wait_port "$MC_PORT"

REDIS_PORT="$(free_port)"
redis-server --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$WORK" --protected-mode yes >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_port "$REDIS_PORT"
log "memcached on $HOST:$MC_PORT, redis-server on $HOST:$REDIS_PORT"

# Starts a contention-server with the given options; sets SERVER_PID and SERVER_PORT.
# Tries another port if the chosen one was taken meanwhile.
start_server() {
    local attempt
    for attempt in 1 2 3; do
        SERVER_PORT="$(free_port)"
        "$SERVER_BIN" --listen "$HOST:$SERVER_PORT" --memcached "$HOST:$MC_PORT" \
            --redis "redis://$HOST:$REDIS_PORT" "$@" >>"$WORK/server-$SERVER_PORT.log" 2>&1 &
        SERVER_PID=$!
        PIDS+=("$SERVER_PID")
        if wait_port "$SERVER_PORT" "$SERVER_PID"; then
            return 0
        fi
        log "server on port $SERVER_PORT did not start (attempt $attempt):"
        cat "$WORK/server-$SERVER_PORT.log" >&2
    done
    exit 1
}

stop_server() {
    local pid rest=()
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    # Forget it, so that the exit trap never signals a recycled pid.
    for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || rest+=("$pid"); done
    PIDS=("${rest[@]}")
}

# First /inc without a cookie: creates the session (n = 1) and prints "name=value" of the
# session cookie (the full id stays in this script; only 8 characters are ever printed).
new_session_cookie() {
    local port="$1" cookie
    cookie="$(curl -fsS -D - -o /dev/null "http://$HOST:$port/inc" |
        tr -d '\r' | awk 'tolower($1) == "set-cookie:" { split($2, a, ";"); print a[1]; exit }')"
    if [ -z "$cookie" ]; then
        log "no session cookie from the server on port $port"
        exit 1
    fi
    echo "$cookie"
}

redact() { local name="${1%%=*}" value="${1#*=}"; echo "$name=${value:0:8}…"; }

# GET /read, retried while the session is busy (503). With LockMode::EveryRequest a request
# that wrk abandons when it stops can leave the session's lock item in memcached with nobody
# to release it: every request then waits for the lock until its lease (30 s) ends. Each
# such wait is appended to $WORK/stuck.log and reported with the tables.
read_counter() {
    local started=$SECONDS body code
    for _ in $(seq 1 8); do
        body="$(curl -sS -m 15 -w '\n%{http_code}' -H "Cookie: $2" "http://$HOST:$1/read")" || true
        code="${body##*$'\n'}"
        if [ "$code" = 200 ]; then
            if [ $((SECONDS - started)) -ge 5 ]; then
                echo "$((SECONDS - started))" >>"$WORK/stuck.log"
                log "session was stuck (lock left held) for $((SECONDS - started)) s after wrk stopped"
            fi
            echo "${body%$'\n'*}"
            return 0
        fi
        log "GET /read answered $code; retrying"
        sleep 1
    done
    log "GET /read kept failing"
    exit 1
}
read_stats() { curl -fsS "http://$HOST:$1/stats"; }

# memcached counters as "name value" lines.
mc_stats() {
    local out
    exec 3<>"/dev/tcp/$HOST/$MC_PORT"
    printf 'stats\r\nquit\r\n' >&3
    out="$(timeout 5 cat <&3 | tr -d '\r')"
    exec 3<&-
    echo "$out" | awk '$1 == "STAT" { print $2, $3 }'
}
mc_stat() { echo "$1" | awk -v k="$2" '$1 == k { print $2 }'; }

# Redis calls of GET and SET so far.
redis_calls() {
    redis-cli -h "$HOST" -p "$REDIS_PORT" info commandstats | tr -d '\r' |
        awk -F'[:=,]' '$1 == "cmdstat_get" || $1 == "cmdstat_set" { s += $3 } END { print s + 0 }'
}

# CPU time (user + system) used so far by the given processes, in clock ticks.
CLK_TCK="$(getconf CLK_TCK)"
cpu_ticks() {
    local pid sum=0
    for pid in "$@"; do
        # Fields after the command name: state is field 3, utime 14 and stime 15.
        sum=$((sum + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$sum"
}
# Voluntary context switches so far (the process went to sleep waiting for I/O: roughly one
# wake-up each) of all threads of the given processes.
ctx_switches() {
    local pid sum=0
    for pid in "$@"; do
        sum=$((sum + $(cat /proc/"$pid"/task/*/status 2>/dev/null |
            awk '$1 == "voluntary_ctxt_switches:" { s += $2 } END { print s + 0 }')))
    done
    echo "$sum"
}
# Microseconds of CPU per request from a tick count.
cpu_us_per_req() {
    awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { if (n > 0) printf "%.0f", t * 1e6 / hz / n; else printf "–" }'
}

json_num() { echo "$1" | tr -d '{}"' | tr ',' '\n' | awk -F: -v k="$2" '$1 == k { print $2 }'; }

# wrk latency "2.69ms" / "812.00us" / "1.20s" -> milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.0f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
        else { printf "?" }
    }'
}

# Runs wrk: port, connections, threads, duration, cookie, output file.
run_wrk() {
    wrk -t "$3" -c "$2" -d "${4}s" --latency --timeout 10s -H "Cookie: $5" \
        "http://$HOST:$1/inc" >"$6" 2>&1
}

wrk_requests() { awk '/requests in/ { print $1 }' "$1"; }
wrk_non2xx() { awk '/Non-2xx or 3xx responses:/ { print $NF; f = 1 } END { if (!f) print 0 }' "$1"; }
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
wrk_pct() { to_ms "$(awk -v p="$2" '$1 == p { print $2 }' "$1")"; }
wrk_errors() {
    awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10; f = 1 } END { if (!f) print 0 }' "$1"
}

ratio() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (b > 0) printf f, a / b; else printf "–" }'; }
lost_pct() {
    # More increments than counted 2xx: requests still in flight when wrk stopped ("+k").
    awk -v inc="$1" -v ok="$2" 'BEGIN {
        if (ok <= 0) printf "–"
        else if (inc > ok) printf "0 %% (+%d)", inc - ok
        else printf "%.1f %%", 100 * (1 - inc / ok)
    }'
}
threads_for() { if [ "$1" -ge 2 ]; then echo 2; else echo 1; fi; }

# One measured run against one or more servers (ports), with N connections in total split
# evenly (one wrk per server). CPU_SERVER_PIDS / CPU_STORE_PID (optional) name the processes
# whose CPU time over the measured run goes to R_CPU_SERVER / R_CPU_STORE (ticks), and their
# voluntary context switches to R_CTX_SERVER / R_CTX_STORE. Sets globals: R_RPS R_REQ R_OK R_NON2XX R_ERR R_P50 R_P99
# R_INC, R_STATS_BEFORE/AFTER (per server; see delta_stat), R_MC_BEFORE/AFTER, R_REDIS_*.
measure() {
    local n="$1" cookie="$2"
    shift 2
    local ports=("$@") per=$((n / ${#ports[@]})) i port before after
    local -a files=() wrks=()
    # Warm-up on the same session.
    i=0
    for port in "${ports[@]}"; do
        run_wrk "$port" "$per" "$(threads_for "$per")" "$WARMUP" "$cookie" "$WORK/warm-$i.txt" &
        wrks+=($!)
        i=$((i + 1))
    done
    wait "${wrks[@]}"
    wrks=()
    before="$(read_counter "${ports[0]}" "$cookie")"
    R_STATS_BEFORE=()
    for port in "${ports[@]}"; do R_STATS_BEFORE+=("$(read_stats "$port")"); done
    R_MC_BEFORE="$(mc_stats)"
    R_REDIS_BEFORE="$(redis_calls)"
    local cpu_server_before cpu_store_before
    cpu_server_before="$(cpu_ticks "${CPU_SERVER_PIDS[@]}")"
    cpu_store_before="$(cpu_ticks ${CPU_STORE_PID:+"$CPU_STORE_PID"})"
    local ctx_server_before ctx_store_before
    ctx_server_before="$(ctx_switches "${CPU_SERVER_PIDS[@]}")"
    ctx_store_before="$(ctx_switches ${CPU_STORE_PID:+"$CPU_STORE_PID"})"
    i=0
    for port in "${ports[@]}"; do
        local threads
        threads="$(threads_for "$per")"
        [ "${#ports[@]}" -gt 1 ] && threads=1
        files+=("$WORK/run-$i.txt")
        run_wrk "$port" "$per" "$threads" "$DURATION" "$cookie" "$WORK/run-$i.txt" &
        wrks+=($!)
        i=$((i + 1))
    done
    wait "${wrks[@]}"
    R_CPU_SERVER=$(($(cpu_ticks "${CPU_SERVER_PIDS[@]}") - cpu_server_before))
    R_CPU_STORE=$(($(cpu_ticks ${CPU_STORE_PID:+"$CPU_STORE_PID"}) - cpu_store_before))
    R_CTX_SERVER=$(($(ctx_switches "${CPU_SERVER_PIDS[@]}") - ctx_server_before))
    R_CTX_STORE=$(($(ctx_switches ${CPU_STORE_PID:+"$CPU_STORE_PID"}) - ctx_store_before))
    R_MC_AFTER="$(mc_stats)"
    R_REDIS_AFTER="$(redis_calls)"
    R_STATS_AFTER=()
    for port in "${ports[@]}"; do R_STATS_AFTER+=("$(read_stats "$port")"); done
    after="$(read_counter "${ports[0]}" "$cookie")"
    R_INC=$((after - before))
    R_RPS=0 R_REQ=0 R_NON2XX=0 R_ERR=0 R_P50=0 R_P99=0
    local f
    for f in "${files[@]}"; do
        if ! grep -q "requests in" "$f"; then
            log "wrk failed:"
            cat "$f" >&2
            exit 1
        fi
        R_RPS="$(awk -v a="$R_RPS" -v b="$(wrk_rps "$f")" 'BEGIN { printf "%.0f", a + b }')"
        R_REQ=$((R_REQ + $(wrk_requests "$f")))
        R_NON2XX=$((R_NON2XX + $(wrk_non2xx "$f")))
        R_ERR=$((R_ERR + $(wrk_errors "$f")))
        # With two wrk processes, the worse (higher) percentile of the two.
        R_P50="$(awk -v a="$R_P50" -v b="$(wrk_pct "$f" 50%)" 'BEGIN { print (b > a ? b : a) }')"
        R_P99="$(awk -v a="$R_P99" -v b="$(wrk_pct "$f" 99%)" 'BEGIN { print (b > a ? b : a) }')"
    done
    R_OK=$((R_REQ - R_NON2XX))
}

# Sum over servers of (after - before) of one StoreStats field.
delta_stat() {
    local key="$1" sum=0 i
    for i in "${!R_STATS_AFTER[@]}"; do
        local a b
        a="$(json_num "${R_STATS_AFTER[$i]}" "$key")"
        b="$(json_num "${R_STATS_BEFORE[$i]}" "$key")"
        sum=$((sum + ${a:-0} - ${b:-0}))
    done
    echo "$sum"
}
delta_mc() { echo $(($(mc_stat "$R_MC_AFTER" "$1") - $(mc_stat "$R_MC_BEFORE" "$1"))); }

# memcached ops per request of the last run: "reads writes cas_badval deletes total".
mc_per_request() {
    local reads writes badval deletes
    reads=$(($(delta_mc cmd_get) + $(delta_mc cmd_touch)))
    writes=$(delta_mc cmd_set)
    badval=$(delta_mc cas_badval)
    deletes=$(($(delta_mc delete_hits) + $(delta_mc delete_misses)))
    printf '%s | %s | %s | %s | %s' \
        "$(ratio "$reads" "$R_REQ")" "$(ratio "$writes" "$R_REQ")" \
        "$(ratio "$badval" "$R_REQ" %.3f)" "$(ratio "$deletes" "$R_REQ")" \
        "$(ratio $((reads + writes + deletes)) "$R_REQ")"
}

# ---------------------------------------------------------------------------------------------
# Table 1: comparison, 32 connections, 2 wrk threads. The five servers run side by side (an
# idle one costs nothing) and the configurations are measured round-robin, REPEAT rounds, so
# that background noise spreads over all of them; each row is the run with the median req/s,
# with the range of all rounds.
TABLE1="$WORK/table1.md"
{
    echo "| store | req/s (median) | req/s range | p50 ms | p99 ms | non-2xx | 2xx | counter increase | updates lost | store ops/req | server CPU µs/req | store CPU µs/req | server sleeps/req | store sleeps/req |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$TABLE1"

CMP_LABELS=(
    "tower-sessions 0.14, MemoryStore"
    "tower-sessions 0.14, Redis (tower-sessions-redis-store 0.16)"
    "cgi-session, MemoryDriver"
    "cgi-session, memcached"
    "cgi-session, memcached, LockMode::EveryRequest"
)
CMP_ARGS=(
    "--store ts-memory"
    "--store ts-redis"
    "--store cgi-memory"
    "--store cgi-memcached --lock off"
    "--store cgi-memcached --lock every-request"
)
CMP_PIDS=()
CMP_PORTS=()
for c in "${!CMP_ARGS[@]}"; do
    # shellcheck disable=SC2086 # the options are words
    start_server ${CMP_ARGS[$c]}
    CMP_PIDS+=("$SERVER_PID")
    CMP_PORTS+=("$SERVER_PORT")
done

# One comparison run of configuration $1 (index); appends its figures to $WORK/cmp-$1.txt.
comparison_run() {
    local c="$1" round="$2" port="${CMP_PORTS[$1]}" cookie ops
    cookie="$(new_session_cookie "$port")"
    log "round $round/$REPEAT, ${CMP_LABELS[$c]}: session $(redact "$cookie"), 32 connections, ${DURATION}s"
    CPU_SERVER_PIDS=("${CMP_PIDS[$c]}")
    case "${CMP_ARGS[$c]}" in
        *ts-redis*) CPU_STORE_PID="$REDIS_PID" ;;
        *cgi-memcached*) CPU_STORE_PID="$MC_PID" ;;
        *) CPU_STORE_PID="" ;;
    esac
    measure 32 "$cookie" "$port"
    case "${CMP_ARGS[$c]}" in
        *ts-redis*) ops="$(ratio $((R_REDIS_AFTER - R_REDIS_BEFORE)) "$R_REQ") (Redis GET+SET)" ;;
        *cgi-memcached*)
            ops="$(mc_per_request)"
            ops="${ops##* | } (memcached)"
            ;;
        *) ops="– (in process)" ;;
    esac
    local store_cpu="–" store_ctx="–"
    if [ -n "$CPU_STORE_PID" ]; then
        store_cpu="$(cpu_us_per_req "$R_CPU_STORE" "$R_REQ")"
        store_ctx="$(ratio "$R_CTX_STORE" "$R_REQ")"
    fi
    [ "$R_ERR" -gt 0 ] && log "${CMP_LABELS[$c]}: $R_ERR socket errors"
    echo "$R_RPS|$R_P50|$R_P99|$R_NON2XX|$R_OK|$R_INC|$(lost_pct "$R_INC" "$R_OK")|$ops|$(cpu_us_per_req "$R_CPU_SERVER" "$R_REQ")|$store_cpu|$(ratio "$R_CTX_SERVER" "$R_REQ")|$store_ctx" >>"$WORK/cmp-$c.txt"
}

for round in $(seq 1 "$REPEAT"); do
    for c in "${!CMP_ARGS[@]}"; do
        comparison_run "$c" "$round"
    done
done
for c in "${!CMP_ARGS[@]}"; do
    sort -t'|' -k1,1n "$WORK/cmp-$c.txt" >"$WORK/cmp-$c.sorted"
    runs="$(wc -l <"$WORK/cmp-$c.sorted")"
    median="$(sed -n "$(((runs + 1) / 2))p" "$WORK/cmp-$c.sorted")"
    range="$(head -1 "$WORK/cmp-$c.sorted" | cut -d'|' -f1)–$(tail -1 "$WORK/cmp-$c.sorted" | cut -d'|' -f1)"
    IFS='|' read -r rps p50 p99 non2xx ok inc lost ops cpu_server cpu_store ctx_server ctx_store <<<"$median"
    echo "| ${CMP_LABELS[$c]} | $rps | $range | $p50 | $p99 | $non2xx | $ok | $inc | $lost | $ops | $cpu_server | $cpu_store | $ctx_server | $ctx_store |" >>"$TABLE1"
done
for pid in "${CMP_PIDS[@]}"; do stop_server "$pid"; done

# ---------------------------------------------------------------------------------------------
# Tables 2 and 3: cgi-session over memcached, optimistic vs EveryRequest, by N in flight.
TABLE2="$WORK/table2.md"
TABLE3="$WORK/table3.md"
{
    echo "| processes | N in flight | lock | req/s | p50 ms | p99 ms | non-2xx | updates lost | CAS retries/save | writes/save | lock waits/req |"
    echo "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$TABLE2"
{
    echo "| processes | N in flight | lock | reads/req (get+touch) | sets/req (set+add+cas) | cas_badval/req | deletes/req | memcached ops/req |"
    echo "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
} >"$TABLE3"

contention_rows() {
    local procs="$1" lock="$2" n_list="$3"
    local -a ports=() pids=()
    local i n cookie saves
    for i in $(seq 1 "$procs"); do
        start_server --store cgi-memcached --lock "$lock"
        pids+=("$SERVER_PID")
        ports+=("$SERVER_PORT")
    done
    CPU_SERVER_PIDS=("${pids[@]}")
    CPU_STORE_PID="$MC_PID"
    for n in $n_list; do
        cookie="$(new_session_cookie "${ports[0]}")"
        log "$procs process(es), lock $lock, N=$n: session $(redact "$cookie"), ${DURATION}s"
        measure "$n" "$cookie" "${ports[@]}"
        saves="$(delta_stat saves)"
        [ "$R_ERR" -gt 0 ] && log "N=$n: $R_ERR socket errors"
        echo "| $procs | $n | $lock | $R_RPS | $R_P50 | $R_P99 | $R_NON2XX | $(lost_pct "$R_INC" "$R_OK") | $(ratio "$(delta_stat conflicts)" "$saves" %.3f) | $(ratio "$(delta_stat writes)" "$saves" %.3f) | $(ratio "$(delta_stat lock_waits)" "$R_REQ" %.3f) |" >>"$TABLE2"
        echo "| $procs | $n | $lock | $(mc_per_request) |" >>"$TABLE3"
    done
    for i in "${pids[@]}"; do stop_server "$i"; done
}

contention_rows 1 off "$N_LIST"
contention_rows 1 every-request "$N_LIST"
contention_rows 2 off "$TWO_PROC_N_LIST"
contention_rows 2 every-request "$TWO_PROC_N_LIST"

# ---------------------------------------------------------------------------------------------
cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo
echo "Machine: $(nproc) cores ($cpu), $(uname -sr); $(memcached -V); redis $(redis-server --version | awk '{ print $3 }' | sed 's/^v=//'); $(wrk -v 2>&1 | head -1 | awk '{ print "wrk", $2 }'); $(rustc -V | awk '{ print "rustc", $2 }')."
echo "wrk, the servers (tokio, 2 worker threads each), memcached (-t 2) and redis-server share the same $(nproc) cores; ${DURATION}s per run after ${WARMUP}s of warm-up on the same session; load average before the runs: $LOAD_START."
echo
if [ -s "$WORK/stuck.log" ]; then
    echo "Stuck session locks: $(wc -l <"$WORK/stuck.log") time(s) a session stayed locked after wrk stopped (a request abandoned by wrk left its memcached lock item behind), $(awk "{ s += \$1 } END { print s }" "$WORK/stuck.log") s in all; the script waited before reading the counter."
    echo
fi
echo "### Same session, 32 connections (wrk -t2 -c32), read n / store n+1"
echo
echo "Median of $REPEAT rounds (configurations run round-robin); the other columns are those of the median run. CPU: user+system time of the server / store process over the measured run, per request; sleeps: their voluntary context switches (all threads) per request, i.e. how often they went idle waiting for I/O and had to be woken."
echo
cat "$TABLE1"
echo
echo "### cgi-session over memcached: optimistic (update + CAS) vs LockMode::EveryRequest"
echo
echo "wrk -c N -t min(N,2); with 2 processes, one wrk per server (-c N/2 -t1), summed; p50/p99 are then the worse of the two wrk reports."
echo
cat "$TABLE2"
echo
echo "### memcached operations per request (same runs)"
echo
cat "$TABLE3"
