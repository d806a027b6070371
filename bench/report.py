#!/usr/bin/env python3
"""Turns target/bench/results.jsonl (written by bench/bench.py) into the
benchmark table (Markdown, on stdout) and a chart, bench/results.svg:
requests/s per contender and backend, and requests/s against concurrency
for widget-host and the floor.

    bench/report.py
"""
import json
import os
from html import escape

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target/bench")
COLOURS = {"widget-host": "#1f77b4", "widget-host at 16": "#aec7e8", "widget-host at 64": "#9edae5",
           "widget-host at 128": "#c5b0d5", "widget-host x3": "#17becf", "floor": "#7f7f7f", "seed-style": "#d62728"}


def main():
    rows = [json.loads(line) for line in open(os.path.join(OUT, "results.jsonl"))]
    machine = json.load(open(os.path.join(OUT, "machine.json")))
    main_rows = [r for r in rows if not r["backend"].startswith("sweep")]
    print(f"{machine['n']} requests, {machine['cores']} cores, {machine['garage']}, DynamoDB Local\n")
    print("| backend | contender | concurrency | backlog | requests/s | calls/request | instances/request | p50 ms | p99 ms | peak RSS MB | CPU cores | CPU ms/request |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in main_rows:
        calls = "-" if r["calls_per_request"] is None else r["calls_per_request"]
        instances = "-" if r.get("instances_per_request") is None else r["instances_per_request"]
        print(f"| {r['backend']} | {r['contender']} | {r['concurrency']} | {r['backlog']} | {r['rate']} | {calls} | "
              f"{instances} | {r['p50_ms']} | {r['p99_ms']} | {r['peak_rss_mb']} | {r.get('cpu_cores', '-')} | "
              f"{r.get('cpu_ms_per_request') or '-'} |")
    print()
    for backend in sorted({r["backend"] for r in main_rows}):
        by = {(r["contender"], r["backlog"]): r["rate"] for r in main_rows if r["backend"] == backend}
        host = next((v for (c, _), v in by.items() if c == "widget-host"), None)
        floor = next((v for (c, _), v in by.items() if c == "floor"), None)
        seeds = {b: v for (c, b), v in by.items() if c == "seed-style"}
        parts = []
        hosts3 = next((v for (c, _), v in by.items() if c == "widget-host x3"), None)
        if host and hosts3:
            parts.append(f"three hosts/one host {hosts3 / host:.2f}")
        if host and floor:
            parts.append(f"widget-host/floor {host / floor:.2f}")
        fixed = {c: v for (c, _), v in by.items() if c.startswith("widget-host at ")}
        if host and fixed:
            best = max(fixed, key=fixed.get)
            parts.append(f"measured/best fixed ({best[len('widget-host at '):]}) {host / fixed[best]:.2f}")
        cpu = {r["contender"]: r.get("cpu_ms_per_request") for r in main_rows if r["backend"] == backend}
        if cpu.get("widget-host") and cpu.get("floor"):
            parts.append(f"CPU per request widget-host/floor {cpu['widget-host'] / cpu['floor']:.2f}")
        for backlog, v in sorted(seeds.items()):
            parts.append(f"widget-host/seed-style at {backlog} {host / v:.1f}x")
        print(f"- {backend}: " + ", ".join(parts))
    write_svg(main_rows, [r for r in rows if r["backend"].startswith("sweep")])


def write_svg(rows, sweep):
    groups = sorted({r["backend"] for r in rows})
    x0, bw = 60, 22
    left = len(rows) * (bw + 2) + len(groups) * 24
    width, height = x0 + left + 60 + (360 if sweep else 0), 425
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>']
    # Left: bars, requests/s per backend and contender.
    bars = [(g, r) for g in groups for r in rows if r["backend"] == g]
    top = max((r["rate"] for _, r in bars), default=1)
    y0, h = 360, 300
    parts.append(f'<text x="{x0}" y="30" font-size="14">requests/s by backend and contender</text>')
    x = x0
    for i, g in enumerate(groups):
        members = [r for gg, r in bars if gg == g]
        for r in members:
            bh = h * r["rate"] / top
            label = r["contender"] + (f" ({r['backlog']})" if r["contender"] == "seed-style" else "")
            parts.append(f'<rect x="{x}" y="{y0 - bh:.1f}" width="{bw}" height="{bh:.1f}" fill="{COLOURS[r["contender"]]}">'
                         f'<title>{escape(label)}: {r["rate"]}/s</title></rect>')
            parts.append(f'<text x="{x + bw / 2}" y="{y0 - bh - 4:.1f}" text-anchor="middle" font-size="9">{r["rate"]:.0f}</text>')
            x += bw + 2
        # Every other label a line lower, so that long ones do not overlap.
        parts.append(f'<text x="{x - (bw + 2) * len(members) / 2}" y="{y0 + 16 + 14 * (i % 2)}" '
                     f'text-anchor="middle" font-size="11">{escape(g)}</text>')
        x += 24
    legend_y = 400
    for i, (name, colour) in enumerate(COLOURS.items()):
        parts.append(f'<rect x="{x0 + i * 130}" y="{legend_y}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x0 + i * 130 + 14}" y="{legend_y + 9}">{name}</text>')
    # Right: requests/s against concurrency.
    if sweep:
        sx0, sy0, sw, sh = x0 + left + 60, 360, 300, 300
        levels = sorted({r["concurrency"] for r in sweep})
        stop = max(r["rate"] for r in sweep)
        parts.append(f'<text x="{sx0}" y="30" font-size="14">requests/s against concurrency ({escape(sweep[0]["backend"][6:])})</text>')
        parts.append(f'<line x1="{sx0}" y1="{sy0}" x2="{sx0 + sw}" y2="{sy0}" stroke="black"/>')
        for i, c in enumerate(levels):
            px = sx0 + sw * i / max(len(levels) - 1, 1)
            parts.append(f'<text x="{px:.1f}" y="{sy0 + 16}" text-anchor="middle">{c}</text>')
        for contender in ["widget-host", "floor"]:
            points = []
            for r in sorted((r for r in sweep if r["contender"] == contender), key=lambda r: r["concurrency"]):
                px = sx0 + sw * levels.index(r["concurrency"]) / max(len(levels) - 1, 1)
                py = sy0 - sh * r["rate"] / stop
                points.append(f"{px:.1f},{py:.1f}")
                parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{COLOURS[contender]}"><title>{contender} at {r["concurrency"]}: {r["rate"]}/s</title></circle>')
            parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{COLOURS[contender]}" stroke-width="2"/>')
        parts.append(f'<text x="{sx0 + sw / 2}" y="{sy0 + 32}" text-anchor="middle">concurrency</text>')
    parts.append("</svg>")
    with open(os.path.join(ROOT, "bench/results.svg"), "w") as f:
        f.write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
