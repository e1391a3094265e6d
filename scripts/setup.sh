#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine, and nothing when it is
# already there. Called by .ci/run; safe to run by hand.
set -euo pipefail

# rustfmt and clippy for .ci/run's checks.
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^${component}" || rustup component add "$component"
  done
fi

# Debian packages the tests use:
# - util-linux: `script`, which gives drover a pseudo-terminal in the caret test;
# - python3: the demo manifest's web server and worker;
# - prometheus: `promtool check metrics` and a real Prometheus server that scrapes drover in the
#   metrics tests (the package's systemd unit is not started: there is no systemd here).
# - busybox-static: the services of the static binary's empty-root test and of
#   deploy/docker/smoke.sh (a static busybox is all such a root holds);
# - systemd: `systemd-analyze verify` of deploy/systemd/drover.service (nothing is started);
# - qemu-user-static: runs the aarch64 build's `drover check` and `drover --` on this x86_64;
# - gcc-aarch64-linux-gnu, libc6-dev-arm64-cross: link the aarch64 static build.
missing=()
command -v script >/dev/null 2>&1 || missing+=(util-linux)
readelf -lW /bin/busybox 2>/dev/null | grep -q "program interpreter" && missing+=(busybox-static)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/libc.a ] || missing+=(libc6-dev-arm64-cross)
# Debian's own python3 at /usr/bin, which services run as other users can execute.
[ -x /usr/bin/python3 ] || missing+=(python3)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need ${missing[*]} (apt-get install); run as root or install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The aarch64 static build's Rust target (scripts/build-static.sh), from rustup's servers; its
# cross gcc and C library are Debian's gcc-aarch64-linux-gnu and libc6-dev-arm64-cross.
if command -v rustup >/dev/null 2>&1; then
  for triple in aarch64-unknown-linux-gnu; do
    rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
  done
fi
# oteltap (PyPI), a real OTLP/HTTP receiver that the trace tests export to, in its own virtual
# environment under target/ (where the tests look for it).
tools="$(cd "$(dirname "$0")/.." && pwd)/target/tools/otel"
if [ ! -x "$tools/bin/oteltap" ]; then
  python3 -m venv "$tools" 2>/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    rm -rf "$tools"
    python3 -m venv "$tools"
  }
  "$tools/bin/pip" install --quiet --disable-pip-version-check oteltap==1.0.0
fi
echo "setup: ok"
