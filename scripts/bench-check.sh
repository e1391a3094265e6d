#!/usr/bin/env bash
# Prints how long `drover check` (release build) takes and how much memory it peaks at, on a
# large valid manifest and on hostile inputs. Figures, not pass/fail: see docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { echo "bench-check: needs GNU time (apt-get install time)" >&2; exit 1; }
cargo build -q --release -p drover
bin=target/release/drover
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

{
  echo "services:"
  for i in $(seq 1 1000); do
    printf '  svc%d:\n    command: ["sleep", "infinity"]\n    environment: {N: "%d"}\n' "$i" "$i"
    [ "$i" -gt 1 ] && printf '    depends_on: {svc%d: {condition: ready}}\n' $((i - 1))
    printf '    readiness_probe: {tcp: {port: %d}, period: 1s}\n' $((20000 + i))
  done
} > "$work/1000-services.yaml"
{
  echo 'a: &a [x,x,x,x,x,x,x,x,x,x]'
  prev=a
  for n in b c d e f g h i; do echo "$n: &$n [*$prev,*$prev,*$prev,*$prev,*$prev,*$prev,*$prev,*$prev,*$prev,*$prev]"; prev=$n; done
  echo 'services: {web: {command: x}}'
} > "$work/alias-bomb.yaml"
{ printf 'services: '; head -c 5000000 /dev/zero | tr '\0' '['; echo; } > "$work/deep-5MB.yaml"
truncate -s 100M "$work/100MB.yaml"
head -c 4000000 /dev/urandom > "$work/garbage-4MB.yaml"

printf '%-22s %10s %12s %s\n' input seconds max_rss_kb exit
for f in 1000-services alias-bomb deep-5MB 100MB garbage-4MB; do
  /usr/bin/time -f '%e %M' -o "$work/time" "$bin" check "$work/$f.yaml" >/dev/null 2>&1 && rc=0 || rc=$?
  read -r secs rss < <(tail -n 1 "$work/time")
  printf '%-22s %10s %12s %s\n' "$f" "$secs" "$rss" "$rc"
done
