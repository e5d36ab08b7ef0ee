#!/usr/bin/env bash
# Long, coverage-guided fuzzing of every parser that reads untrusted bytes (libFuzzer through
# cargo-fuzz). Not part of scripts/test.sh, which keeps a bounded smoke run of the same targets
# (crates/cgi-session-fuzz/tests/smoke.rs).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 300 s, every target)
# Needs cargo-fuzz (`cargo install cargo-fuzz`). The machine's stable toolchain is used with
# RUSTC_BOOTSTRAP=1, since libFuzzer's sanitizer flags are nightly-only.
# Crashes land in fuzz/artifacts/<target>/: copy each into fuzz/corpus/<target>/ as a
# regression input once fixed (the smoke run replays that directory).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-300}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(json_session perl_session storable_session dsn cookie_and_id meta_reply text_reply metadump_line sealed_item)
fi
command -v cargo-fuzz >/dev/null 2>&1 || { echo "error: install cargo-fuzz: cargo install cargo-fuzz" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
work="${FUZZ_WORK_DIR:-$(mktemp -d)}"
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "artifacts/$t"
  cp corpus/"$t"/* "$work/$t/"
  echo "==> $t for ${secs}s (working corpus $work/$t)"
  "target/x86_64-unknown-linux-gnu/release/$t" "$work/$t" \
    -max_total_time="$secs" -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>&1 \
    | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY)" || true
done
echo "==> done; crashes, if any, are in fuzz/artifacts/"
