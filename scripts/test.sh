#!/usr/bin/env bash
# Installs what the tests need (only where missing) and runs the whole test suite:
# formatting, clippy and rustdoc with warnings as errors, and every test of the workspace.
# Usage: scripts/test.sh        (as root, or with sudo available, on Debian/Ubuntu)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use, each with the command or Perl module that shows it is there.
# The tests that run perl, lighttpd, chromium and nutcracker are in crates/cgi-session-e2e
# (memcached is started by tests all over the workspace).
need=()
command -v memcached >/dev/null 2>&1 || need+=(memcached)
perl -MCGI::Session -e1 >/dev/null 2>&1 || need+=(libcgi-session-perl)
perl -MCache::Memcached -e1 >/dev/null 2>&1 || need+=(libcache-memcached-perl)
perl -MCGI::Session::Driver::memcached -e1 >/dev/null 2>&1 || need+=(libcgi-session-driver-memcached-perl)
command -v lighttpd >/dev/null 2>&1 || [ -x /usr/sbin/lighttpd ] || need+=(lighttpd)
command -v nutcracker >/dev/null 2>&1 || [ -x /usr/sbin/nutcracker ] || need+=(nutcracker)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)

if [ "${#need[@]}" -gt 0 ]; then
  echo "==> installing missing packages: ${need[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "error: need root (or sudo) to run: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}"
fi
# The tests start their own memcached processes on free loopback ports; a system service
# started by the package install is not used (stop it so it holds no port or memory).
# The same for lighttpd (the CGI tests start their own on a free port).
if command -v systemctl >/dev/null 2>&1; then
  systemctl stop memcached lighttpd nutcracker >/dev/null 2>&1 || true
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "==> cargo doc (broken links and missing docs are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked --quiet
echo "==> cargo test"
cargo test --workspace --all-features --locked
# The crates meant for the registry (the others say `publish = false`: bench, conformance,
# demo, e2e, fuzz, memcached-harness): each must package and build from its package alone,
# with versioned internal dependencies.
echo "==> cargo package (published crates)"
published="cgi-session-core cgi-session-dumper cgi-session-storable cgi-session-memcache-client
  cgi-session-memcache cgi-session cgi-session-tower cgi-session-actix cgi-session-cgi
  cgi-session-cli cgi-session-sealed"
# Each crate is verified against the others' packages through a temporary registry in the
# target directory, which cargo unpacks under $CARGO_HOME/registry/src/ once per registry path
# and never again: a second run with the same target directory would build against the first
# run's sources. Remove those unpacked copies of this workspace's crates first.
for crate in $published; do
  rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate"-[0-9]*
done
# Likewise their builds: cargo takes a registry crate's build as never changing, so a second
# run would link the first run's build of a crate whose public API changed since.
# shellcheck disable=SC2046 # one -p per crate
cargo clean --quiet $(printf -- '-p %s ' $published)
# shellcheck disable=SC2046 # one -p per crate
cargo package --locked --allow-dirty $(printf -- '-p %s ' $published)
echo "==> all tests passed"
