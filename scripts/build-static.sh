#!/usr/bin/env bash
# Builds drover as one static binary, the one the container image, the chroot test and the
# systemd unit use:
#   bash scripts/build-static.sh            # x86_64-unknown-linux-musl (the default)
#   bash scripts/build-static.sh aarch64    # aarch64-unknown-linux-musl, linked by rust-lld
#   bash scripts/build-static.sh glibc      # static glibc (x86_64-unknown-linux-gnu, crt-static)
# The binary lands in target/<triple>/release/drover; the script prints its path, size and
# that it has no interpreter and no shared library. Installs the rustup target when missing.
# Why musl and not static glibc: docs/benchmarks.md ("Static binary").
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-musl}"
case "$flavour" in
  musl) triple=x86_64-unknown-linux-musl; flags="" ;;
  aarch64) triple=aarch64-unknown-linux-musl; flags="-C linker=rust-lld -C linker-flavor=ld.lld" ;;
  glibc) triple=x86_64-unknown-linux-gnu; flags="-C target-feature=+crt-static" ;;
  *) echo "build-static: unknown flavour '$flavour' (musl, aarch64 or glibc)" >&2; exit 2 ;;
esac
if [ "$triple" != x86_64-unknown-linux-gnu ] && command -v rustup >/dev/null 2>&1; then
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
