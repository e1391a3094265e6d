#!/usr/bin/env python3
"""drover's reliability figures (issue 12), measured on the real binary and printed as a table.

    python3 scripts/reliability.py                 # full scale, release build
    python3 scripts/reliability.py --small         # what CI runs: smaller counts, debug build
    python3 scripts/reliability.py --drover PATH   # any binary

Scenarios, each a pass/fail figure:
- orphans: N orphans reaped as PID 1 (unshare --pid --fork --mount-proc), beside 20 services that
  each exit once with their own code: zombies left, exit statuses lost;
- restarts: a service restarted M times: descriptors drover holds after the first restarts and
  after the last, and descriptors each run of the service starts with;
- sigkill: SIGKILL of drover, plain and as PID 1, with a service that leaves a child in its group
  and a `setsid` daemon outside it: processes left;
- fuzz: the manifest parser and validator under proptest (scripts/fuzz-spec.sh), when present.

Every process started is killed by its recorded pid at the end; every wait has a deadline.
Exit code 0 when every figure is at its goal, 1 otherwise.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_until(limit, what, condition):
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {limit}s waiting for {what}")
        time.sleep(0.01)


def proc_stat(pid):
    """(state, ppid) of pid, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2:].split()
    return rest[0], int(rest[1])


def alive(pid):
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def children_of(parent):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat and stat[1] == parent:
                found.append((int(entry), stat[0]))
    return found


def descendants_of(root):
    found, i = [root], 0
    while i < len(found):
        found.extend(pid for pid, _ in children_of(found[i]))
        i += 1
    return found[1:]


def is_guard(pid):
    """Whether pid is drover's guard (it ends by itself once it has cleaned)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"__guard" in f.read()
    except OSError:
        return False


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class Drover:
    """drover run in a temp dir, optionally as PID 1; killed (by recorded pid) on close."""

    def __init__(self, binary, manifest, files=None, pid1=False):
        self.dir = tempfile.TemporaryDirectory(prefix="drover-reliability-")
        self.path = self.dir.name
        with open(os.path.join(self.path, "drover.yaml"), "w") as f:
            f.write(manifest)
        for name, text in (files or {}).items():
            with open(os.path.join(self.path, name), "w") as f:
                f.write(text)
        argv = [binary, "run", "--metrics-listen", "", "drover.yaml"]
        if pid1:
            argv = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"] + argv
        env = dict(os.environ, RUNTIME_DIRECTORY=self.path, RUST_LOG="info", NO_COLOR="1")
        if pid1:
            # Killed as PID 1 it has no guard: a cgroup subtree would stay in the host's tree.
            env["DROVER_NO_CGROUPS"] = "1"
        self.log = open(os.path.join(self.path, "drover.log"), "w")
        self.process = subprocess.Popen(
            argv, cwd=self.path, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self.log)
        self.pid = self.process.pid
        if pid1:
            wait_until(10, "drover under unshare", lambda: children_of(self.process.pid))
            self.pid = children_of(self.process.pid)[0][0]

    def file(self, name):
        return os.path.join(self.path, name)

    def read(self, name):
        try:
            with open(self.file(name)) as f:
                return f.read()
        except OSError:
            return ""

    def stderr(self):
        return self.read("drover.log")

    def wait(self, limit):
        try:
            return self.process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            return None

    def close(self):
        for pid in [self.pid, self.process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.wait(10)
        self.log.close()
        self.dir.cleanup()


ORPHANS = """import os, time, sys
count = int(sys.argv[1])
read_end, write_end = os.pipe()
for _ in range(count):
    if os.fork() == 0:
        if os.fork() == 0:
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
        os._exit(0)
    os.wait()
os.close(read_end)
os.close(write_end)
open("released", "w").write("released\\n")
time.sleep(600)
"""


def orphans(binary, count):
    """N orphans as PID 1, and 20 services exiting once each with their own code."""
    manifest = "services:\n  storm: { command: [python3, storm.py, '%d'] }\n" % count
    for n in range(1, 21):
        manifest += "  exit%d: { command: \"exit %d\", restart: { policy: never } }\n" % (n, n)
    d = Drover(binary, manifest, {"storm.py": ORPHANS}, pid1=True)
    try:
        wait_until(120, "the orphans to be released", lambda: d.read("released"))
        # Only the storm service stays a child of drover once every orphan is reaped.
        wait_until(60, "every orphan reaped", lambda: len(children_of(d.pid)) == 1)
        zombies = sum(1 for _, state in children_of(d.pid) if state == "Z")
        os.kill(d.pid, signal.SIGTERM)
        d.wait(30)
        log = d.stderr()
        reaped = re.search(r"orphans_reaped=(\d+)", log)
        reaped = int(reaped.group(1)) if reaped else -1
        lost = sum(1 for n in range(1, 21)
                   if not re.search(r"service=exit%d\b.*exit code %d\b|exited with exit code %d[^0-9].*service=exit%d\b" % (n, n, n, n), log))
        return [
            (f"{count} orphans as PID 1: orphans reaped", reaped, reaped >= count),
            (f"{count} orphans as PID 1: zombies left", zombies, zombies == 0),
            ("exit statuses of 20 services lost", lost, lost == 0),
        ]
    finally:
        d.close()


def restarts(binary, count):
    manifest = """settings: { log: { service_output: discard } }
services:
  crash:
    command: "ls /proc/self/fd | wc -l >> fds; echo x >> runs; exit 1"
    restart: { policy: always, backoff: { initial: 0s, max: 0s }, max_retries: %d }
  keep: { command: [sleep, "1000"] }
""" % count
    d = Drover(binary, manifest)
    try:
        runs = lambda: d.read("runs").count("\n")
        wait_until(60, "10 runs", lambda: runs() >= 10)
        early = fd_count(d.pid)
        wait_until(300, f"{count} restarts", lambda: f"gave up after {count} restarts" in d.stderr())
        late = fd_count(d.pid)
        counts = [int(x) for x in d.read("fds").split()]
        # `ls` itself opens its directory: a clean run sees 0, 1, 2 and that one.
        service_leaks = max(counts) - 4 if counts else -1
        return [
            (f"{count} restarts: drover's descriptors after 10 runs -> after all", f"{early}->{late}", late <= early),
            (f"{count} restarts: descriptors leaked into services", service_leaks, service_leaks <= 0),
        ]
    finally:
        d.close()


ESCAPING = """services:
  app:
    command: "sleep 1000 & echo $! > child; setsid sleep 1001 & echo $! > daemon; echo $$ > main; wait"
"""


def sigkill(binary, pid1):
    d = Drover(binary, ESCAPING, pid1=pid1)
    try:
        wait_until(10, "the service", lambda: d.read("main").endswith("\n"))
        wait_until(10, "its processes", lambda: len(descendants_of(d.pid)) >= 3)
        time.sleep(0.1)
        processes = [p for p in descendants_of(d.pid) if not is_guard(p)]
        cgroups = "services run in cgroups of their own" in d.stderr()
        os.kill(d.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in processes):
            time.sleep(0.01)
        left = [p for p in processes if alive(p)]
        for p in left:
            os.kill(p, signal.SIGKILL)
        where = "as PID 1" if pid1 else ("plain, cgroup v2" if cgroups else "plain, no cgroup v2")
        return [(f"SIGKILL of drover ({where}): processes left of {len(processes)}", len(left), not left)]
    finally:
        d.close()


def fuzz(cases):
    script = os.path.join(ROOT, "scripts", "fuzz-spec.sh")
    if not os.path.exists(script):
        return [("manifest fuzzing: scripts/fuzz-spec.sh missing", "skipped", True)]
    started = time.monotonic()
    run = subprocess.run(["bash", script, str(cases)], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    sys.stdout.write(run.stdout[-2000:])
    return [(f"manifest fuzzing, {cases} cases ({elapsed:.0f} s): exit code", run.returncode, run.returncode == 0)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CI's counts and the debug build")
    parser.add_argument("--drover", help="the drover binary (default: built by cargo)")
    parser.add_argument("--no-fuzz", action="store_true")
    args = parser.parse_args()
    profile = [] if args.small else ["--release"]
    binary = args.drover
    if binary is None:
        subprocess.run(["cargo", "build", "-q", "-p", "drover"] + profile, cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "debug" if args.small else "release", "drover")
    n_orphans, n_restarts, n_cases = (1000, 100, 2000) if args.small else (10000, 500, 1000000)
    rows = []
    unshare = subprocess.run(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "true"],
                             capture_output=True).returncode == 0
    if unshare:
        rows += orphans(binary, n_orphans)
    else:
        rows.append(("orphans as PID 1: unshare not permitted here (needs root)", "SKIPPED", True))
    rows += restarts(binary, n_restarts)
    rows += sigkill(binary, pid1=False)
    if unshare:
        rows += sigkill(binary, pid1=True)
    else:
        rows.append(("SIGKILL as PID 1: unshare not permitted here", "SKIPPED", True))
    if not args.no_fuzz:
        rows += fuzz(n_cases)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'figure'.ljust(width)}  {'value':>9}  goal met")
    for name, value, ok in rows:
        print(f"{name.ljust(width)}  {str(value):>9}  {'yes' if ok else 'NO'}")
    return 0 if all(ok for _, _, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
