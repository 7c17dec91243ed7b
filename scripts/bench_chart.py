#!/usr/bin/env python3
"""Draws the benchmark chart of the README and docs/BENCHMARKS.md, docs/benchmark.svg, from the benchmarks' own output:
the last run of `cargo bench --features postgres,mysql --bench drivers` (left: each variant's
throughput relative to dedicated connections, per database) and of `cargo bench --bench pool`
(right: check-outs per second against the thread count). Reads the same files as
bench_table.py, through it. Standard library only: the SVG is written by hand.

    python3 scripts/bench_chart.py              # writes docs/benchmark.svg
    python3 scripts/bench_chart.py out.svg      # writes out.svg
"""

import pathlib
import sys
from html import escape

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_table  # noqa: E402  (a sibling script, found through the path set above)

OUT = bench_table.ROOT / "docs" / "benchmark.svg"
COLOURS = {
    "dedicated": "#9e9e9e",
    "sluicegate": "#1f77b4",
    "r2d2": "#ff7f0e",
    "mysql_pool": "#2ca02c",
    "new_connection": "#d62728",
    "floor": "#9e9e9e",
}
LABELS = {
    "dedicated": "dedicated connections (the limit)",
    "sluicegate": "sluicegate",
    "r2d2": "r2d2 0.8",
    "mysql_pool": "mysql crate's pool",
    "new_connection": "new connection per request",
    "floor": "floor (bare mutex + stack)",
}
FONT = 'font-family="sans-serif" font-size="12"'


def text(x: float, y: float, s: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {FONT} {extra}>{escape(s)}</text>'


def drivers_panel(x0: float, y0: float, width: float) -> tuple[list[str], float]:
    """Horizontal bars, one group per database: throughput / dedicated. Returns the SVG
    elements and the panel's height."""
    found = bench_table.drivers_results()
    out = [text(x0, y0 + 14, "SELECT 1, 8 threads on 8 connections: throughput / dedicated",
                extra='font-weight="bold"')]
    if found is None:
        out.append(text(x0, y0 + 40, "no drivers run found: run the drivers bench first"))
        return out, 60
    results, _ = found
    label_w, bar_h, gap = 235, 16, 4
    scale_max = 1.2
    plot_w = width - label_w - 50
    y = y0 + 34
    for database, name in bench_table.DATABASES:
        rates = results.get(database, {})
        if "dedicated" not in rates:
            continue
        dedicated = rates["dedicated"][1]
        out.append(text(x0, y + 12, name, extra='font-weight="bold"'))
        y += 20
        for variant, (_, rate, _low, _high) in rates.items():
            ratio = rate / dedicated
            w = max(1.0, plot_w * min(ratio, scale_max) / scale_max)
            out.append(text(x0 + label_w - 6, y + bar_h - 4, LABELS[variant], "end"))
            out.append(
                f'<rect x="{x0 + label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{COLOURS[variant]}"/>'
            )
            out.append(text(x0 + label_w + w + 4, y + bar_h - 4, bench_table.times(ratio)))
            y += bar_h + gap
        y += 10
    # The goal line: 0.95x of dedicated.
    gx = x0 + label_w + plot_w * 0.95 / scale_max
    out.append(
        f'<line x1="{gx:.1f}" y1="{y0 + 30}" x2="{gx:.1f}" y2="{y - 6}" stroke="#333" '
        'stroke-dasharray="4 3"/>'
    )
    out.append(text(gx, y + 8, "goal: 0.95x", "middle"))
    return out, y + 16 - y0


def pool_panel(x0: float, y0: float, width: float, height: float) -> list[str]:
    """Lines: millions of check-outs per second against threads, 4 no-op connections."""
    out = [text(x0, y0 + 14, "The pool alone: check-out + return, 4 connections",
                extra='font-weight="bold"')]
    threads = [1, 2, 8, 32]
    series = {}
    for pool in bench_table.POOLS:
        points = []
        for n in threads:
            bench = bench_table.CRITERION / pool / str(n)
            if bench_table.has_results(bench):
                points.append((n, n * 1e3 / bench_table.per_iteration_ns(pool, n)))
        if points:
            series[pool] = points
    if not series:
        out.append(text(x0, y0 + 40, "no pool run found: run the pool bench first"))
        return out
    top = max(rate for points in series.values() for _, rate in points) * 1.1
    left, plot_top, plot_w = x0 + 50, y0 + 40, width - 70
    plot_h = height - 150
    bottom = plot_top + plot_h
    out.append(f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" stroke="#333"/>')
    out.append(f'<line x1="{left}" y1="{plot_top}" x2="{left}" y2="{bottom}" stroke="#333"/>')
    for i, n in enumerate(threads):
        x = left + plot_w * i / (len(threads) - 1)
        out.append(text(x, bottom + 16, f"{n}", "middle"))
    out.append(text(left + plot_w / 2, bottom + 32, "threads", "middle"))
    for k in range(5):
        value = top * k / 4
        y = bottom - plot_h * k / 4
        out.append(text(left - 6, y + 4, f"{value:.0f}", "end"))
    out.append(text(x0 + 4, plot_top - 6, "M/s"))
    for pool, points in series.items():
        coords = [
            (left + plot_w * threads.index(n) / (len(threads) - 1), bottom - plot_h * rate / top)
            for n, rate in points
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{COLOURS.get(pool)}" stroke-width="2"/>'
        )
        for x, y in coords:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLOURS.get(pool)}"/>')
    for i, pool in enumerate(series):
        y = bottom + 52 + i * 16
        out.append(f'<rect x="{left}" y="{y - 10}" width="12" height="12" fill="{COLOURS.get(pool)}"/>')
        out.append(text(left + 18, y, LABELS[pool]))
    return out


def main() -> int:
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    left, left_h = drivers_panel(10, 10, 610)
    height = max(left_h + 20, 360)
    right = pool_panel(640, 10, 370, height - 10)
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="1020" height="{height:.0f}" '
        f'viewBox="0 0 1020 {height:.0f}">',
        '<rect width="100%" height="100%" fill="white"/>',
        *left,
        *right,
        "</svg>",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(svg) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
