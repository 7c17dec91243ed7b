#!/usr/bin/env python3
"""Prints the README's benchmark tables from the output of `cargo bench --bench pool`.

Reads criterion's estimates under target/criterion/cycle/ and the overload table the bench
writes to target/sluice-bench/overload.csv. Standard library only.
"""

import csv
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion" / "cycle"
OVERLOAD = ROOT / "target" / "sluice-bench" / "overload.csv"
POOLS = ["floor", "sluice", "r2d2"]


def per_iteration_ns(pool: str, threads: int) -> float:
    """Mean time of one iteration (one check-out + return on each thread), in nanoseconds."""
    path = CRITERION / pool / str(threads) / "new" / "estimates.json"
    return json.loads(path.read_text())["mean"]["point_estimate"]


def cycle_table() -> None:
    runs = sorted(int(p.name) for p in (CRITERION / "sluice").iterdir() if p.name.isdigit())
    print("Check-out + return, no-op connections, 4 connections (millions per second, all threads):")
    print()
    print("| threads | floor | sluice | r2d2 | sluice / floor | sluice / r2d2 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for threads in runs:
        rate = {p: threads / per_iteration_ns(p, threads) * 1e3 for p in POOLS}
        print(
            f"| {threads} | {rate['floor']:.2f} | {rate['sluice']:.2f} | {rate['r2d2']:.2f} "
            f"| {rate['sluice'] / rate['floor']:.2f}x | {rate['sluice'] / rate['r2d2']:.2f}x |"
        )
    ns = {p: per_iteration_ns(p, 1) for p in POOLS}
    print()
    print(
        f"One thread: floor {ns['floor']:.0f} ns, sluice {ns['sluice']:.0f} ns "
        f"({ns['sluice'] / ns['floor']:.2f}x the floor), r2d2 {ns['r2d2']:.0f} ns "
        f"({ns['r2d2'] / ns['floor']:.2f}x the floor)."
    )


def overload_table() -> None:
    rows = list(csv.DictReader(OVERLOAD.open()))
    print()
    print("Overload: 32 threads on 4 connections, each held 1 ms (wait for a connection, ms):")
    print()
    print("| pool | check-outs/s | mean | p50 | p99 | max | p99 / mean |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        mean, p99 = float(row["mean_ms"]), float(row["p99_ms"])
        print(
            f"| {row['pool']} | {float(row['checkouts_per_s']):.0f} | {mean:.2f} "
            f"| {float(row['p50_ms']):.2f} | {p99:.2f} | {float(row['max_ms']):.2f} "
            f"| {p99 / mean:.2f} |"
        )


def main() -> int:
    if not CRITERION.exists() or not OVERLOAD.exists():
        print("run `cargo bench --bench pool` first", file=sys.stderr)
        return 1
    cycle_table()
    overload_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
