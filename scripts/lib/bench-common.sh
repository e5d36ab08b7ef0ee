# Shared by the HTTP benchmark scripts (source it; it defines functions and state, runs nothing):
# a scratch directory and the processes to stop on exit, free loopback ports, polling with a
# deadline, and the wrk script that sends one of many session cookies per request.

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Polls until `cmd` succeeds or the deadline (in seconds) passes.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "error: timed out waiting for: $*" >&2; return 1; fi
    sleep 0.05
  done
}

# Writes a wrk Lua script to $1 that sends, per request, one of $2 session cookies picked at
# random; each cookie comes from running the command in the remaining arguments, which must
# print the response headers of a request that creates a session.
cookies_lua() {
  local lua="$1" n="$2"; shift 2
  {
    echo 'cookies = {'
    for _ in $(seq "$n"); do
      cookie="$("$@" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' | head -1)"
      [ -n "$cookie" ] || { echo "error: creating a session set no cookie: $*" >&2; return 1; }
      echo "  \"$cookie\","
    done
    echo '}'
    cat <<'LUA'
math.randomseed(os.time())
request = function()
  return wrk.format(nil, nil, { ["Cookie"] = cookies[math.random(#cookies)] })
end
LUA
  } >"$lua"
}
