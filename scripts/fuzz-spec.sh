#!/usr/bin/env bash
# Fuzzes drover-spec's parser and validator: the `fuzz::hostile_manifests` property of
# crates/drover-spec/tests/spec/fuzz.rs (manifest-shaped YAML with huge numbers and durations,
# long strings and names, deep nesting, many services, unknown keys, odd scalars), in a release
# build. Each case must be answered without a panic within 1 s, with bounded diagnostics.
#
#   scripts/fuzz-spec.sh [CASES]     # default 1000000
#
# The fuzzer is proptest, run with PROPTEST_CASES=CASES. A coverage-guided fuzzer (cargo-fuzz,
# libFuzzer) needs a nightly toolchain and the cargo-fuzz tool: the project's machines
# and CI have stable Rust only (a nightly may be there by hand, but nothing installs it, and
# no toolchain can be fetched), so proptest is what runs everywhere. The property prints the
# number of cases, the elapsed time and the slowest case; a failure prints the minimal input.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-1000000}
case $cases in
  '' | *[!0-9]*) echo "fuzz-spec: CASES must be a number, got '$cases'" >&2; exit 2 ;;
esac
echo "fuzz-spec: $cases cases, release build"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
status=0
PROPTEST_CASES=$cases cargo test --release -p drover-spec --test spec -- \
  --exact fuzz::hostile_manifests --nocapture >"$log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
  tail -n 60 "$log" >&2
fi
grep -E '^fuzz:' "$log" || echo "fuzz-spec: the property printed no figures" >&2
echo "fuzz-spec: exit $status after $(( $(date +%s) - start )) s, build included"
exit "$status"
