#!/usr/bin/env bash
# Runs the supervisor, probe and metrics benchmarks of git REF ("before") and of this working
# tree ("after") alternately, in one run, so that both see the same machine; prints each
# figure of both. Usage: bash scripts/bench-compare.sh REF   (about 10 minutes plus the builds)
# BASE_DIR=/path/to/a/checkout/of/REF reuses a checkout (and its built target/) instead of a
# fresh worktree; BENCHES="metrics probes" picks benchmarks; ROUNDS=3 runs each pair 3 times.
set -euo pipefail
ref=${1:?usage: bench-compare.sh REF}
cd "$(dirname "$0")/.."
after=$PWD
before=${BASE_DIR:-}
if [ -z "$before" ]; then
  before=$(mktemp -d /tmp/drover-bench-before.XXXXXX)
  trap 'git -C "$after" worktree remove --force "$before"' EXIT
  git worktree add -q --detach "$before" "$ref"
fi
for dir in "$before" "$after"; do
  (cd "$dir" && cargo bench -q -p drover --no-run 2>/dev/null)
done
out=$(mktemp -d /tmp/drover-bench-compare.XXXXXX)
for bench in ${BENCHES:-supervisor probes metrics}; do
  for round in $(seq "${ROUNDS:-1}"); do
    for side in before after; do
      dir=$before
      [ "$side" = after ] && dir=$after
      (cd "$dir" && cargo bench -q -p drover --bench "$bench" 2>/dev/null) | grep -v '^$' > "$out/$bench.$side"
    done
    echo "== $bench, round $round: before ($ref), after (working tree)"
    # Both builds print the same lines in the same order: show them in pairs.
    paste -d '\n' "$out/$bench.before" "$out/$bench.after" |
      awk 'NR % 2 == 1 { print "  before: " $0; next } { print "  after:  " $0 }'
  done
done
rm -rf "$out"
