#!/usr/bin/env bash
# Plays the example container (deploy/docker/Dockerfile, target `example`) without Docker: the
# static drover as PID 1 of fresh PID, mount and network namespaces, chrooted into a minimal
# root filesystem laid out as the image is (busybox, drover, the example manifest and site),
# as the image's non-root user 65532. It checks readiness through /readyz, the site and the
# metrics, then sends SIGTERM and checks the exit code, the drain order (sidecar before web)
# and that nothing is left running; then `drover check` and `drover -- CMD` in the same root.
# Needs root, util-linux's unshare and nsenter, a static busybox (Debian's busybox-static) and
# the static build (scripts/build-static.sh). Every wait is bounded; every process it starts is
# killed by the pid it recorded.
set -euo pipefail
cd "$(dirname "$0")/../.."
binary="${DROVER_STATIC_BIN:-target/x86_64-unknown-linux-gnu/release/drover}"
busybox="${BUSYBOX:-/bin/busybox}"
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (namespaces, chroot)"
[ -x "$binary" ] || fail "no static binary at $binary (run scripts/build-static.sh)"
readelf -lW "$binary" | grep -q "program interpreter" && fail "$binary is not static"
readelf -lW "$busybox" | grep -q "program interpreter" && fail "$busybox is not static (apt-get install busybox-static)"

work="$(mktemp -d)"
root="$work/root"
log="$work/drover.log"
outer=""
cleanup() {
  if [ -n "$outer" ] && kill -0 "$outer" 2>/dev/null; then
    kill -KILL "$outer" 2>/dev/null || true
    # The namespace's PID 1, killed by its recorded pid: the kernel then ends the rest.
    [ -n "${drover:-}" ] && kill -KILL "$drover" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The image's root filesystem: busybox:1.36.1-musl's /bin, plus what the Dockerfile copies.
mkdir -p "$root"/{bin,proc,dev,etc/drover,usr/local/bin,www}
chmod 0755 "$work" "$root"
mkdir -m 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$binary" "$root/usr/local/bin/drover"
cp deploy/docker/example/drover.yaml "$root/etc/drover/drover.yaml"
cp -r deploy/docker/example/www/. "$root/www/"
# busybox's own user database, which has no entry for 65532: drover must not need one.
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$root/etc/group"

# `docker run drover-example`: the ENTRYPOINT and CMD of the image, as PID 1, as user 65532,
# with the environment a container starts with. --kill-child: if this script dies, the
# namespace's PID 1 dies with unshare, and the kernel ends everything in it.
unshare --pid --kill-child --mount --net --propagation private -- "$busybox" sh -ec '
  root=$1
  mount -t proc proc "$root/proc"
  mount -t tmpfs -o mode=0755 tmpfs "$root/dev"
  for node in null zero urandom; do : > "$root/dev/$node"; mount --bind "/dev/$node" "$root/dev/$node"; done
  '"$busybox"' ip link set lo up
  exec env -i PATH=/usr/local/bin:/bin HOME=/ /usr/sbin/chroot --userspec=65532:65532 "$root" /usr/local/bin/drover run /etc/drover/drover.yaml
' smoke "$root" > "$log" 2>&1 &
outer=$!

# drover's pid as seen from here: the only child of unshare, once the chain has exec'd it.
deadline=$((SECONDS + 20))
drover=""
while [ -z "$drover" ]; do
  [ $SECONDS -lt $deadline ] || fail "drover did not start within 20 s: $(cat "$log")"
  kill -0 "$outer" 2>/dev/null || fail "the container exited early: $(cat "$log")"
  child="$(cat "/proc/$outer/task/$outer/children" 2>/dev/null | tr -d ' ')"
  if [ -n "$child" ] && [ "$(readlink "/proc/$child/exe" 2>/dev/null)" = "$root/usr/local/bin/drover" ]; then
    drover="$child"
  else
    sleep 0.05
  fi
done
# (coreutils' timeout: Debian's static busybox 1.35 wget crashes with -T.)
fetch() { timeout --kill-after=2 5 nsenter --target "$drover" --net -- "$busybox" wget -q -O - "$@"; }

# Ready: /readyz answers 200 (wget fails on 503).
deadline=$((SECONDS + 30))
until readyz="$(fetch http://127.0.0.1:9464/readyz 2>/dev/null)"; do
  [ $SECONDS -lt $deadline ] || fail "/readyz not 200 within 30 s: $(cat "$log")"
  kill -0 "$drover" 2>/dev/null || fail "drover exited: $(cat "$log")"
  sleep 0.1
done
echo "smoke: /readyz: $readyz"
fetch http://127.0.0.1:8080/ | grep -q "Hello from drover" || fail "the site does not answer"
metrics="$(fetch http://127.0.0.1:9464/metrics)"
for service in web sidecar; do
  grep -q "^drover_service_ready{service=\"$service\"} 1" <<<"$metrics" || fail "metrics: $service not ready"
done
grep -q "^Uid:[[:space:]]*65532[[:space:]]" "/proc/$drover/status" || fail "drover does not run as 65532"
[ "$(cut -d' ' -f1 "/proc/$drover/stat" 2>/dev/null)" = "$drover" ] || fail "no stat for drover"
nspid="$(grep '^NSpid:' "/proc/$drover/status" | awk '{print $NF}')"
[ "$nspid" = 1 ] || fail "drover is pid $nspid in its namespace, not 1"
deadline=$((SECONDS + 20))
until grep -q "sidecar | sidecar: web answers" "$log"; do
  [ $SECONDS -lt $deadline ] || fail "the sidecar did not reach web within 20 s: $(cat "$log")"
  sleep 0.1
done
services="$(cat /proc/"$drover"/task/*/children)"
[ "$(wc -w <<<"$services")" -ge 2 ] || fail "expected web and sidecar under drover, got '$services'"
echo "smoke: ready; drover is PID 1 as uid 65532; services: $services"

# `docker stop`: SIGTERM to PID 1, then the exit code.
kill -TERM "$drover"
deadline=$((SECONDS + 30))
while kill -0 "$outer" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || fail "no exit within 30 s of SIGTERM: $(cat "$log")"
  sleep 0.05
done
set +e
wait "$outer"
code=$?
set -e
outer=""
[ "$code" -eq 0 ] || fail "exit code $code, not 0: $(cat "$log")"
# (Whether a process outlived drover cannot be seen from here: the kernel ends every process
# of a PID namespace when its PID 1 exits. drover's log says whether it had to end any.)
grep -q "sidecar | sidecar: draining" "$log" || fail "the sidecar was not told to drain"
sidecar_line="$(grep -n "stopping with SIGTERM service=sidecar" "$log" | head -n1 | cut -d: -f1)"
web_line="$(grep -n "stopping with SIGTERM service=web" "$log" | head -n1 | cut -d: -f1)"
[ -n "$sidecar_line" ] && [ -n "$web_line" ] || fail "no stop lines: $(cat "$log")"
[ "$sidecar_line" -lt "$web_line" ] || fail "web stopped before its dependent sidecar"
grep -q "SIGKILL" "$log" && fail "something needed SIGKILL: $(cat "$log")"
grep -q "outlived their services" "$log" && fail "processes outlived their services"
echo "smoke: SIGTERM: exit 0, sidecar drained before web, nothing left running"
echo "smoke: drover's log, as the container printed it:"
sed 's/^/    /' "$log"

# `docker run drover-example check` and `docker run drover-example -- sh -c 'exit 3'`.
in_root() {
  timeout --kill-after=5 20 unshare --pid --kill-child --mount --propagation private -- "$busybox" sh -ec '
    mount -t proc proc "$1/proc"; shift
    exec env -i PATH=/usr/local/bin:/bin HOME=/ /usr/sbin/chroot --userspec=65532:65532 "$@"
  ' smoke "$root" "$root" /usr/local/bin/drover "$@"
}
in_root check /etc/drover/drover.yaml || fail "drover check in the image failed"
set +e
in_root -- sh -c 'exit 3'
code=$?
in_root sh -c 'kill -TERM $$'
killed=$?
set -e
[ "$code" -eq 3 ] || fail "drover -- sh -c 'exit 3' exited $code"
[ "$killed" -eq 143 ] || fail "a command killed by SIGTERM gave $killed, not 143"
echo "smoke: drover check: 0; drover -- sh -c 'exit 3': 3; drover sh -c 'kill -TERM \$\$': 143"
echo "smoke: ok"
