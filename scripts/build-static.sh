#!/usr/bin/env bash
# Builds drover as one static binary, the one the container image, the empty-root test, the
# container smoke test and the systemd unit use:
#   bash scripts/build-static.sh            # x86_64, static glibc (the default)
#   bash scripts/build-static.sh native     # this machine's own target, static glibc
#   bash scripts/build-static.sh aarch64    # aarch64, static glibc, by Debian's cross gcc
#   bash scripts/build-static.sh musl       # x86_64-unknown-linux-musl, for comparison
#   bash scripts/build-static.sh aarch64-musl   # aarch64 musl, linked by rust-lld
# The binary lands in target/<triple>/release/drover; the script prints its path, size and
# that it has no interpreter and no shared library. Installs the rustup target (and, for
# aarch64, gcc-aarch64-linux-gnu and libc6-dev-arm64-cross) when missing.
# Why static glibc and not musl: docs/benchmarks.md, "Static binary" (musl's allocator gives
# its memory back after each scrape, which then costs 3x the time in page faults).
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-glibc}"
case "$flavour" in
  glibc) triple=x86_64-unknown-linux-gnu; flags="-C target-feature=+crt-static" ;;
  native) triple="$(rustc -vV | sed -n 's/^host: //p')"; flags="-C target-feature=+crt-static"
    case "$triple" in
      *-linux-gnu) ;;
      *) echo "build-static: the native flavour wants a *-linux-gnu host, not '$triple'" >&2; exit 2 ;;
    esac ;;
  aarch64) triple=aarch64-unknown-linux-gnu
    flags="-C target-feature=+crt-static -C linker=aarch64-linux-gnu-gcc"
    if ! command -v aarch64-linux-gnu-gcc >/dev/null || [ ! -e /usr/aarch64-linux-gnu/lib/libc.a ]; then
      [ "$(id -u)" -eq 0 ] || { echo "build-static: need gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (apt-get install)" >&2; exit 1; }
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    fi ;;
  musl) triple=x86_64-unknown-linux-musl; flags="" ;;
  aarch64-musl) triple=aarch64-unknown-linux-musl; flags="-C linker=rust-lld -C linker-flavor=ld.lld" ;;
  *) echo "build-static: unknown flavour '$flavour' (glibc, native, aarch64, musl or aarch64-musl)" >&2; exit 2 ;;
esac
if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
fi
# RUSTFLAGS applies to the target only (with --target, build scripts and proc macros are host
# code), so the host's build cache is not disturbed.
RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo build --release --locked --target "$triple" -p drover
binary="target/$triple/release/drover"
if readelf -lW "$binary" | grep -q "Requesting program interpreter"; then
  echo "build-static: $binary has a program interpreter: not static" >&2
  exit 1
fi
if readelf -dW "$binary" | grep -q "(NEEDED)"; then
  echo "build-static: $binary needs shared libraries:" >&2
  readelf -dW "$binary" | grep "(NEEDED)" >&2
  exit 1
fi
echo "static binary: $binary ($(stat -c %s "$binary") bytes, $triple, no interpreter, no shared library)"
