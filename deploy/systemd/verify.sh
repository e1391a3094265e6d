#!/usr/bin/env bash
# Checks deploy/systemd/drover.service with `systemd-analyze verify` (Debian's systemd package),
# with the static binary at the unit's /usr/local/bin/drover: in a private mount namespace, so
# nothing is installed on this machine. Then checks that a unit with a misspelt key fails the
# same check, so that a pass means something (systemd only warns about it: any output fails). Needs root (unshare) and the static build
# (scripts/build-static.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
binary="${DROVER_STATIC_BIN:-target/x86_64-unknown-linux-gnu/release/drover}"
unit=deploy/systemd/drover.service
[ -x "$binary" ] || { echo "verify: no static binary at $binary (run scripts/build-static.sh)" >&2; exit 1; }
command -v systemd-analyze >/dev/null || { echo "verify: systemd-analyze missing (apt-get install systemd)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$unit" "$work/drover.service"
mkdir "$work/broken"
sed 's/^WatchdogSec=/WatchdogSecs=/' "$unit" > "$work/broken/drover.service"
unshare --mount --propagation private -- sh -euc '
  mount -t tmpfs -o mode=0755 tmpfs /usr/local/bin
  cp "$1" /usr/local/bin/drover
  echo "== systemd-analyze verify $2 ($(systemd-analyze --version | head -n1))"
  # Any warning counts: systemd only warns about an unknown key or a bad value.
  out="$(systemd-analyze verify "$3/drover.service" 2>&1)" || { printf "%s\n" "$out" >&2; exit 1; }
  [ -z "$out" ] || { printf "verify: warnings:\n%s\n" "$out" >&2; exit 1; }
  echo "ok: no error, no warning"
  echo "== the same unit with a misspelt key must fail"
  if out="$(systemd-analyze verify "$3/broken/drover.service" 2>&1)" && [ -z "$out" ]; then
    echo "verify: a misspelt key passed systemd-analyze verify" >&2
    exit 1
  fi
  printf "%s\n" "$out" | grep -q "WatchdogSecs" || { printf "%s\n" "$out" >&2; exit 1; }
  echo "rejected: $(printf "%s\n" "$out" | grep WatchdogSecs | head -n1)"
' verify "$binary" "$unit" "$work"
