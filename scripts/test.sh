#!/usr/bin/env bash
# Every test, on a fresh machine too: installs what the tests need (scripts/setup.sh), builds
# the static binary (scripts/build-static.sh) for the empty-root test, runs
# `cargo test --workspace`, and ends with the tests that skipped, and why. A test that cannot
# run here (no root for `unshare`, no cgroup v2, a tool missing) says `SKIPPED ...` on stderr;
# libtest hides a passing test's output, so it is shown (`--show-output`) and gathered here,
# and the last line of the run says how many skipped. With DROVER_NO_SKIPS=1 (CI sets it, on
# a root machine where every test can run) a skipped test fails the run.
#
#   scripts/test.sh [CARGO TEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${DROVER_SKIP_SETUP:-}" != 1 ]; then
  bash scripts/setup.sh
fi
# The static binary for the empty-root test (crates/drover/tests/drover/static_root.rs).
if [ -z "${DROVER_STATIC_BIN:-}" ]; then
  bash scripts/build-static.sh glibc
  export DROVER_STATIC_BIN="$PWD/target/x86_64-unknown-linux-gnu/release/drover"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace "$@" -- --show-output 2>&1 | tee "$log" || status=$?
skipped=$(grep -E '^\s*SKIPPED' "$log" | sed -E 's/^\s*//' | sort -u || true)
echo
if [ -n "$skipped" ]; then
  echo "== $(printf '%s\n' "$skipped" | wc -l) test(s) or parts skipped:"
  printf '%s\n' "$skipped"
  if [ "${DROVER_NO_SKIPS:-0}" = 1 ] && [ "$status" -eq 0 ]; then
    echo "== DROVER_NO_SKIPS=1: a skipped test is a failure here"
    status=1
  fi
else
  echo "== no test skipped"
fi
exit "$status"
