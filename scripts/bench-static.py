#!/usr/bin/env python3
"""Side-by-side figures of drover's builds: the glibc build (dynamic), the static musl build
and the static glibc build. Runs the existing benchmarks (`cargo bench -p drover --bench
supervisor` and `--bench metrics`) once per build, on that build's target, and prints binary
size, restart latency, the scrape of 1000 services and RSS with 100 and 1000 services, each
with its ratio to the dynamic build. About 15 minutes on 2 cores (three release builds with
fat LTO, then about 80 s of benchmark each). Figures, not pass/fail: see docs/benchmarks.md.

    python3 scripts/bench-static.py [--json out.json] [--builds dynamic,musl,glibc-static]
"""
import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILDS = {
    "dynamic": ([], ""),
    "musl": (["--target", "x86_64-unknown-linux-musl"], ""),
    "glibc-static": (["--target", "x86_64-unknown-linux-gnu"], "-C target-feature=+crt-static"),
}
PATTERNS = {
    "restart_median_ms": r"restart latency, drover .*?: median ([0-9.]+) ms",
    "restart_p90_ms": r"restart latency, drover .*?: median [0-9.]+ ms, p90 ([0-9.]+) ms",
    "bare_fork_median_ms": r"restart latency, bare kill\+wait\+fork\+exec loop: median ([0-9.]+) ms",
    "start_100_ms": r"start of 100 independent services, all running: ([0-9.]+) ms",
    "rss_100_mib": r"drover binary with 100 services: RSS ([0-9.]+) MiB",
    "rss_1000_mib": r"drover binary with 1000 services: RSS ([0-9.]+) MiB",
    "scrape_1000_median_ms": r"scrape of 1000 services .*?: median ([0-9.]+) ms",
    "scrape_1000_p90_ms": r"scrape of 1000 services .*?: median [0-9.]+ ms, p90 ([0-9.]+) ms",
}


def run_build(name):
    args, flags = BUILDS[name]
    env = dict(os.environ)
    if flags:
        env["RUSTFLAGS"] = (env.get("RUSTFLAGS", "") + " " + flags).strip()
    text = ""
    for bench in ["supervisor", "metrics"]:
        cmd = ["cargo", "bench", "--locked", "-p", "drover", "--bench", bench] + args
        print(f"== {name}: {' '.join(cmd)}" + (f" (RUSTFLAGS={flags})" if flags else ""), flush=True)
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            sys.stderr.write(out.stderr[-4000:])
            raise SystemExit(f"bench-static: {name} {bench} failed")
        sys.stdout.write(out.stdout)
        text += out.stdout
    figures = {}
    for key, pattern in PATTERNS.items():
        found = re.search(pattern, text)
        figures[key] = float(found.group(1)) if found else None
    triple = args[1] if args else None
    binary = os.path.join(ROOT, "target", triple, "release", "drover") if triple else os.path.join(ROOT, "target", "release", "drover")
    # The benchmark builds the binary of its own target: that one is measured.
    figures["binary_bytes"] = os.path.getsize(binary) if os.path.exists(binary) else None
    return figures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    parser.add_argument("--builds", default="dynamic,musl,glibc-static")
    options = parser.parse_args()
    names = options.builds.split(",")
    results = {name: run_build(name) for name in names}
    base = results.get("dynamic")
    keys = ["binary_bytes"] + list(PATTERNS)
    print()
    print(f"{'figure':24}" + "".join(f"{n:>22}" for n in names))
    for key in keys:
        row = f"{key:24}"
        for name in names:
            value = results[name][key]
            cell = "n/a" if value is None else (f"{value:.0f}" if key == "binary_bytes" else f"{value:.3f}")
            if base and name != "dynamic" and value is not None and base[key]:
                cell += f" ({value / base[key]:.2f}x)"
            row += f"{cell:>22}"
        print(row)
    if options.json:
        with open(options.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
