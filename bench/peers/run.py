#!/usr/bin/env python3
"""The peer benchmark: drover against the supervisors and inits people run today, every
scenario for every system, in one run on one machine (issue 18). Needs root (the kernel's
process events, PID namespaces).

    python3 bench/peers/run.py [--install] [--with-horust] [--quick] [--only PEER,...]
                               [--json FILE] [--svg DIR]

Prints one table per scenario with drover's ratio to the best peer (below 1: drover is ahead),
and writes every figure, raw latencies included, as JSON. `--install` installs the peers by
package name first (Debian, PyPI, npm); a peer that cannot run is skipped with its reason.
Every process it starts is ended by the pid it recorded; every wait is bounded.
"""

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cnproc import EXEC, EXIT, FORK, ProcEvents, cmdline  # noqa: E402
import peers as peer_defs  # noqa: E402
import svg  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


# --- /proc -----------------------------------------------------------------------------------


def parents():
    """pid -> parent pid, for every process now."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        rest = text[text.rfind(")") + 2 :].split()
        out[int(entry)] = int(rest[1])
    return out


def tree(top):
    """`top` and every descendant of it."""
    by_parent = {}
    for pid, parent in parents().items():
        by_parent.setdefault(parent, []).append(pid)
    found, todo = [], [top]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(by_parent.get(pid, []))
    return found


def supervisor_side(top):
    """The supervisor's own processes: its tree without the services (helpers such as runsv,
    s6-supervise or pm2's daemon count)."""
    return [pid for pid in tree(top) if not peer_defs.is_service(cmdline(pid))]


def kib_sum(pids, name, key):
    """The sum over `pids` of the `key` line (in kB) of `/proc/PID/name`."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/{name}") as f:
                for line in f:
                    if line.startswith(key):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def rss_kib(pids):
    return kib_sum(pids, "status", "VmRSS:")


def pss_kib(pids):
    """Proportional set size: shared pages (a binary's text, libc) divided among the processes
    that share them, as RSS does not."""
    return kib_sum(pids, "smaps_rollup", "Pss:")


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            total += int(rest[11]) + int(rest[12])
        except (OSError, IndexError):
            pass
    return total


def service_pids(top):
    return [pid for pid in tree(top) if peer_defs.is_service(cmdline(pid))]


# --- one running peer ------------------------------------------------------------------------


class Run:
    """A started peer, ended by its recorded pids however the scenario ends."""

    def __init__(self, peer, kind, n, policy="fast"):
        self.dir = tempfile.mkdtemp(prefix=f"peer-{peer.name}-")
        self.peer = peer
        self.popen = peer.start(kind, n, self.dir, policy)
        self.pid = self.popen.pid

    def end(self):
        pids = tree(self.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass
        # Services that left the tree (setsid, reparented) but were recorded: ended too.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.01)
        subprocess.run(["rm", "-rf", self.dir], check=False)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_services(events, run, n, limit):
    """Waits until `n` service processes of `run` have exec'd; the kernel timestamp (ns) of the
    last of them, or None after `limit` seconds."""
    last_exec = {}
    deadline = time.monotonic() + limit
    done_at = None
    while time.monotonic() < deadline:
        for event in events.events(0.05):
            if event.what == EXEC and peer_defs.is_service(cmdline(event.pid)):
                last_exec[event.pid] = event.ts
        if len(last_exec) >= n:
            # A run script's `exec` comes as a second event of the same pid: take it too.
            done_at = done_at or time.monotonic() + 0.05
            if time.monotonic() >= done_at:
                return max(last_exec.values())
    return None


# --- scenarios -------------------------------------------------------------------------------


def scenario_start(peer, n, events):
    """Start of n, then the supervisor's RSS and its CPU over 10 idle seconds."""
    events.drain()
    started = time.monotonic_ns()
    run = Run(peer, "long", n)
    try:
        last = wait_services(events, run, n, limit=max(60, n / 5))
        if last is None:
            return {"error": f"not all {n} services started within the limit"}
        result = {"start_ms": (last - started) / 1e6}
        time.sleep(2)  # past the start, into the steady state
        own = supervisor_side(run.pid)
        result["rss_mib"] = rss_kib(own) / 1024
        result["pss_mib"] = pss_kib(own) / 1024
        result["processes"] = len(own)
        ticks = cpu_ticks(own)
        time.sleep(10)
        result["idle_cpu_percent"] = (cpu_ticks(own) - ticks) / TICK / 10 * 100
        return result
    finally:
        run.end()


def scenario_restart(peer, kills, events):
    """SIGKILL of the one service, `kills` times: kernel exit of the old -> exec of the new."""
    events.drain()
    run = Run(peer, "long", 1)
    try:
        if wait_services(events, run, 1, limit=30) is None:
            return {"error": "the service did not start"}
        latencies = []
        for _ in range(kills):
            time.sleep(max(0.2, peer.min_uptime + 0.1))
            current = service_pids(run.pid)
            if not current:
                return {"error": "no service process to kill", "latencies_ms": latencies}
            victim = current[0]
            exited = None
            os.kill(victim, signal.SIGKILL)
            replaced = False
            for event in events.events(10):
                if event.what == EXIT and event.pid == victim:
                    exited = event.ts
                elif (
                    event.what == EXEC
                    and event.pid != victim
                    and exited is not None
                    and peer_defs.is_service(cmdline(event.pid))
                ):
                    latencies.append((event.ts - exited) / 1e6)
                    replaced = True
                    break
            if not replaced:
                return {"error": "no replacement within 10 s", "latencies_ms": latencies}
        return summary(latencies)
    finally:
        run.end()


def summary(latencies):
    ordered = sorted(latencies)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "median_ms": statistics.median(ordered),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "latencies_ms": latencies,
    }


def scenario_drain(peer, kind, n, events):
    """Drain of n services (`long` exit on SIGTERM; `ignore_term` need SIGKILL after 2 s)."""
    if kind == "ignore_term" and not peer.stop_timeout:
        return {"error": "no stop timeout: it waits for ever for a service that ignores SIGTERM"}
    run = Run(peer, kind, n)
    try:
        if wait_services(events, run, n, limit=max(60, n / 5)) is None:
            return {"error": f"not all {n} services started"}
        time.sleep(1)
        watched = set(service_pids(run.pid)) | {run.pid}
        began = time.monotonic_ns()
        os.kill(run.pid, peer.drain_signal)
        last = None
        deadline = time.monotonic() + 30
        while watched and time.monotonic() < deadline:
            for event in events.events(0.1):
                if event.what == EXIT and event.pid in watched:
                    watched.discard(event.pid)
                    last = event.ts
        if watched:
            return {"error": f"{len(watched)} of {n + 1} processes still there after 30 s"}
        return {"drain_ms": (last - began) / 1e6}
    finally:
        run.end()


def scenario_crash_loop(peer, events):
    """`/bin/false` under the peer's own default policy for 10 s: starts, and the supervisor's
    CPU."""
    run = Run(peer, "crash", 1, policy="default")
    try:
        time.sleep(0.5)
        first = set(supervisor_side(run.pid))
        own = set(first)
        ticks = cpu_ticks(first)
        starts = 0
        ends = time.monotonic() + 10
        refresh = 0.0
        while time.monotonic() < ends:
            # Helpers started later (runsvdir starts each runsv after its scan) count too.
            if time.monotonic() >= refresh:
                own |= set(supervisor_side(run.pid))
                refresh = time.monotonic() + 0.5
            for event in events.events(min(0.1, max(0.0, ends - time.monotonic()))):
                if event.what == FORK and event.parent in own:
                    starts += 1
        return {
            "starts_in_10s": starts,
            "cpu_percent": (cpu_ticks(own) - ticks) / TICK / 10 * 100,
        }
    finally:
        run.end()


def unshare_ok():
    try:
        return (
            subprocess.run(
                ["unshare", "--pid", "--fork", "--mount-proc", "true"],
                timeout=10,
                capture_output=True,
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def inits(drover):
    return {
        "drover": [drover, "--"],
        "tini": ["tini", "--"],
        "dumb-init": ["dumb-init"],
        "catatonit": ["catatonit", "--"],
    }


def scenario_orphans(init, helpers, count):
    """`count` orphans reaped by `init` as PID 1 of a new PID namespace."""
    started = time.monotonic()
    child = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", *init, helpers, "orphans", str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = waited(child, 120)
    elapsed = time.monotonic() - started
    line = next((l for l in stdout.splitlines() if l.startswith("made ")), "")
    if not line:
        return {"error": f"no report (exit {child.returncode}): {stderr[-200:]}"}
    left = int(line.split("zombies left ")[1].split(",")[0])
    return {"total_s": elapsed, "zombies_left": left}


def scenario_true(init, runs):
    """`INIT -- /bin/true`, start to exit, median over `runs` (the init's own cost)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        child = subprocess.Popen([*init, "/bin/true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        waited(child, 10)
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(times)}


def waited(child, limit):
    """`child`'s output once it exits, in a blocking wait bounded by a timer that kills it
    after `limit` seconds: `wait(timeout=)` polls with growing sleeps, which would round a
    figure up to its next poll (7.6 ms for a 3.6 ms `drover -- true`)."""
    import threading

    guard = threading.Timer(limit, child.kill)
    guard.start()
    try:
        return child.communicate()
    finally:
        guard.cancel()


# --- the run ---------------------------------------------------------------------------------


def install(with_horust):
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "supervisor", "s6", "runit", "tini", "dumb-init", "catatonit", "gcc"],
        check=False,
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
    )
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "simpervisor", "circus"], check=False)
    subprocess.run(["npm", "install", "-g", "-q", "pm2"], check=False)
    if with_horust:
        subprocess.run(["cargo", "install", "horust"], check=False)


def build_helpers():
    out = os.path.join(tempfile.gettempdir(), "drover-peer-helpers")
    subprocess.run(["gcc", "-O2", "-o", out, os.path.join(HERE, "helpers.c")], check=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--install", action="store_true")
    parser.add_argument("--with-horust", action="store_true")
    parser.add_argument("--quick", action="store_true", help="N = 10 and 100, 20 kills, 50 runs")
    parser.add_argument("--only", default="", help="comma-separated peers (drover always runs)")
    parser.add_argument("--drover", default=os.path.join(peer_defs.ROOT, "target/release/drover"))
    parser.add_argument("--json", default="bench/peers/results.json")
    parser.add_argument("--svg", default="docs/img")
    parser.add_argument(
        "--scenarios",
        default="start,restart,drain,crash,orphans,true",
        help="which to run (comma-separated); with --merge, the others are kept from --json",
    )
    parser.add_argument("--merge", action="store_true", help="update the figures in --json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the peer benchmark needs root (the kernel's process events, PID namespaces)")
    if args.install:
        install(args.with_horust)
    helpers = build_helpers()
    systems, floor = peer_defs.all_peers(args.drover, helpers)
    wanted = {name for name in args.only.split(",") if name}
    sizes = [10, 100] if args.quick else [10, 100, 1000]
    kills = 20 if args.quick else 50
    runs = 50 if args.quick else 200

    results = {"machine": machine(), "peers": {}, "skipped": {}, "scenarios": {}}
    running = []
    for peer in systems:
        if wanted and peer.name not in wanted and peer.name != "drover":
            continue
        why = peer.available()
        if why:
            results["skipped"][peer.name] = why
            print(f"SKIPPED {peer.name}: {why}", flush=True)
            continue
        results["peers"][peer.name] = peer.version()
        running.append(peer)
    results["peers"]["floor"] = floor.version()

    chosen = set(args.scenarios.split(","))
    if args.merge and os.path.exists(args.json):
        with open(args.json) as f:
            kept = json.load(f)
        results["scenarios"] = kept.get("scenarios", {})
    events = ProcEvents()
    scenarios = results["scenarios"]

    def record(scenario, system, value):
        scenarios.setdefault(scenario, {})[system] = value
        shown = {k: v for k, v in value.items() if k != "latencies_ms"}
        print(f"{scenario:<28} {system:<12} {json.dumps(shown)}", flush=True)

    for n in sizes if "start" in chosen else []:
        for peer in [*running, floor]:
            record(f"start_{n}", peer.name, scenario_start(peer, n, events))
    for peer in [*running, floor] if "restart" in chosen else []:
        record("restart", peer.name, scenario_restart(peer, kills, events))
    for peer in running:
        if "drain" in chosen:
            record("drain_100_term", peer.name, scenario_drain(peer, "long", 100, events))
            record("drain_100_ignore_term", peer.name, scenario_drain(peer, "ignore_term", 100, events))
        if "crash" in chosen:
            record("crash_loop_10s", peer.name, scenario_crash_loop(peer, events))
    if "orphans" not in chosen:
        pass
    elif unshare_ok():
        for name, init in inits(args.drover).items():
            record("orphans_10000", name, scenario_orphans(init, helpers, 10000))
    else:
        results["skipped"]["orphans_10000"] = "unshare --pid --fork --mount-proc is not permitted here"
        print("SKIPPED orphans_10000: unshare --pid --fork --mount-proc is not permitted here")
    for name, init in [("bare", []), *inits(args.drover).items()] if "true" in chosen else []:
        record("true", name, scenario_true(init, runs))
    events.close()
    results["lost_event_batches"] = events.lost

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print()
    print(tables(results))
    os.makedirs(args.svg, exist_ok=True)
    svg.restart_plot(scenarios.get("restart", {}), os.path.join(args.svg, "peers-restart.svg"))
    svg.rss_plot(scenarios, sizes, os.path.join(args.svg, "peers-rss.svg"))
    print(f"\nwrote {args.json}, {args.svg}/peers-restart.svg, {args.svg}/peers-rss.svg")


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }


# Which number of each scenario is compared, and whether lower is better (all are).
FIGURES = [
    ("start_10", "start_ms", "start of 10, ms"),
    ("start_100", "start_ms", "start of 100, ms"),
    ("start_1000", "start_ms", "start of 1000, ms"),
    ("start_10", "rss_mib", "RSS with 10, MiB"),
    ("start_100", "rss_mib", "RSS with 100, MiB"),
    ("start_1000", "rss_mib", "RSS with 1000, MiB"),
    ("start_100", "pss_mib", "PSS with 100, MiB"),
    ("start_1000", "pss_mib", "PSS with 1000, MiB"),
    ("start_100", "idle_cpu_percent", "idle CPU with 100, %"),
    ("start_1000", "idle_cpu_percent", "idle CPU with 1000, %"),
    ("restart", "median_ms", "restart latency median, ms"),
    ("restart", "p90_ms", "restart latency p90, ms"),
    ("restart", "p99_ms", "restart latency p99, ms"),
    ("drain_100_term", "drain_ms", "drain of 100 (exit on TERM), ms"),
    ("drain_100_ignore_term", "drain_ms", "drain of 100 (ignore TERM, 2 s), ms"),
    ("crash_loop_10s", "cpu_percent", "crash loop CPU, %"),
    ("orphans_10000", "total_s", "10 000 orphans as PID 1, s"),
    ("true", "median_ms", "INIT -- true, ms"),
]


def tables(results):
    scenarios = results["scenarios"]
    systems = []
    for scenario in scenarios.values():
        for name in scenario:
            if name not in systems:
                systems.append(name)
    header = ["figure"] + systems + ["drover / best peer"]
    rows = [header]
    for scenario, key, label in FIGURES:
        values = scenarios.get(scenario, {})
        row = [label]
        for name in systems:
            value = values.get(name, {})
            row.append(f"{value[key]:.3g}" if key in value else ("error" if "error" in value else ""))
        mine = values.get("drover", {}).get(key)
        others = [
            v[key]
            for name, v in values.items()
            if name not in ("drover", "floor", "bare") and key in v
        ]
        row.append(f"{mine / min(others):.2f}" if mine is not None and others and min(others) > 0 else "")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [f"- {name}: {why}" for name, why in results["skipped"].items()]
    errors = [
        f"- {scenario} {name}: {value['error']}"
        for scenario, values in scenarios.items()
        for name, value in values.items()
        if "error" in value
    ]
    return "\n".join(lines + ([""] + ["Skipped:"] + notes if notes else []) + ([""] + ["Errors:"] + errors if errors else []))


if __name__ == "__main__":
    main()
