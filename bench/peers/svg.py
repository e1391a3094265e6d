"""The two plots of the peer benchmark, as plain SVG (no plotting library to install): restart
latency per system (every kill a dot, the median a bar) and supervisor RSS against N."""

import math

COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"]


def _ticks(lo, hi):
    """1, 2 and 5 times each power of ten from 10**lo up to 10**hi: a log axis's grid."""
    return [step * 10**decade for decade in range(lo, hi + 1) for step in (1, 2, 5) if step * 10**decade <= 10**hi]


def _write(path, width, height, body):
    with open(path, "w") as f:
        f.write(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif" font-size="12">\n'
            f'<rect width="{width}" height="{height}" fill="white"/>\n'
            + "\n".join(body)
            + "\n</svg>\n"
        )


def restart_plot(restart, path):
    """One row per system, a log axis of milliseconds, a dot per kill, a bar at the median."""
    systems = [(name, v["latencies_ms"]) for name, v in restart.items() if v.get("latencies_ms")]
    if not systems:
        return
    low = min(min(l) for _, l in systems)
    high = max(max(l) for _, l in systems)
    lo, hi = math.floor(math.log10(max(low, 1e-3))), math.ceil(math.log10(high))
    hi = max(hi, lo + 1)
    left, right, top, row = 110, 30, 40, 34
    width, height = 760, top + row * len(systems) + 50

    def x(ms):
        return left + (math.log10(max(ms, 1e-3)) - lo) / (hi - lo) * (width - left - right)

    body = [f'<text x="{left}" y="20" font-size="14">restart latency: kernel exit of the killed service to exec of its replacement (ms, log scale)</text>']
    for value in _ticks(lo, hi):
        gx = x(value)
        body.append(f'<line x1="{gx:.1f}" y1="{top - 5}" x2="{gx:.1f}" y2="{height - 40}" stroke="#ddd"/>')
        body.append(f'<text x="{gx:.1f}" y="{height - 25}" text-anchor="middle">{value:g}</text>')
    for i, (name, latencies) in enumerate(systems):
        y = top + row * i + row / 2
        colour = COLOURS[i % len(COLOURS)]
        body.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{name}</text>')
        for ms in latencies:
            body.append(f'<circle cx="{x(ms):.1f}" cy="{y:.1f}" r="2.5" fill="{colour}" fill-opacity="0.5"/>')
        ordered = sorted(latencies)
        median = ordered[len(ordered) // 2]
        body.append(f'<line x1="{x(median):.1f}" y1="{y - 11:.1f}" x2="{x(median):.1f}" y2="{y + 11:.1f}" stroke="black" stroke-width="2"/>')
    _write(path, width, height, body)


def rss_plot(scenarios, sizes, path):
    """The supervisor's RSS (helpers included) against the number of services, log-log."""
    series = {}
    for n in sizes:
        for name, value in scenarios.get(f"start_{n}", {}).items():
            if "rss_mib" in value and name != "floor":
                series.setdefault(name, []).append((n, value["rss_mib"]))
    if not series:
        return
    values = [v for points in series.values() for _, v in points]
    lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    hi = max(hi, lo + 1)
    left, right, top, bottom = 70, 140, 40, 50
    width, height = 640, 420

    def x(n):
        return left + (math.log10(n) - math.log10(sizes[0])) / max(1e-9, math.log10(sizes[-1]) - math.log10(sizes[0])) * (width - left - right)

    def y(v):
        return height - bottom - (math.log10(v) - lo) / (hi - lo) * (height - top - bottom)

    body = [f'<text x="{left}" y="20" font-size="14">supervisor RSS (MiB, its helper processes included) against services</text>']
    for value in _ticks(lo, hi):
        body.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{width - right}" y2="{y(value):.1f}" stroke="#ddd"/>')
        body.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:g}</text>')
    for n in sizes:
        body.append(f'<text x="{x(n):.1f}" y="{height - bottom + 18}" text-anchor="middle">{n}</text>')
    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path_d = " ".join(f"{'M' if j == 0 else 'L'}{x(n):.1f},{y(v):.1f}" for j, (n, v) in enumerate(points))
        body.append(f'<path d="{path_d}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for n, v in points:
            body.append(f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        lx, ly = points[-1]
        body.append(f'<text x="{x(lx) + 8:.1f}" y="{y(ly) + 4:.1f}" fill="{colour}">{name}</text>')
    _write(path, width, height, body)
