#!/usr/bin/env python3
"""Prints the benchmark tables of docs/BENCHMARKS.md from the output of `cargo bench --bench pool`,
`cargo bench --features postgres --bench leak` and
`cargo bench --features postgres,mysql --bench drivers`.

Reads criterion's estimates under target/criterion/ (groups cycle, leak_cycle, leak_postgres,
drivers) and what the benches write to target/sluicegate-bench/: the overload table of the pool
bench (overload.csv), the paired PostgreSQL rounds of the leak bench
(leak_postgres_paired.csv), and the drivers bench's list of what its last run measured
(drivers_run.csv) and its paired rounds (drivers_paired.csv). Standard library only.

    python3 scripts/bench_table.py          # every table whose results are there
    python3 scripts/bench_table.py pool     # only the pool bench's tables
    python3 scripts/bench_table.py leak     # only the leak bench's tables
    python3 scripts/bench_table.py drivers  # only the drivers bench's tables
"""

import csv
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "target" / "criterion"
CRITERION = RESULTS / "cycle"
LEAK_CYCLE = RESULTS / "leak_cycle"
LEAK_POSTGRES = RESULTS / "leak_postgres"
DRIVERS = RESULTS / "drivers"
DRIVERS_RUN = ROOT / "target" / "sluicegate-bench" / "drivers_run.csv"
DRIVERS_PAIRED = ROOT / "target" / "sluicegate-bench" / "drivers_paired.csv"
OVERLOAD = ROOT / "target" / "sluicegate-bench" / "overload.csv"
PAIRED = ROOT / "target" / "sluicegate-bench" / "leak_postgres_paired.csv"
POOLS = ["floor", "sluicegate", "r2d2"]
# The drivers bench: (directory, name) of each database and each variant, in table order.
DATABASES = [("postgres", "PostgreSQL"), ("mysql", "MariaDB")]
VARIANTS = [
    ("dedicated", "dedicated connection per thread (the limit)"),
    ("sluicegate", "sluicegate"),
    ("r2d2", "r2d2 0.8"),
    ("mysql_pool", "`mysql` crate's pool"),
    ("new_connection", "new connection per request"),
]


def mean_ns(bench: pathlib.Path) -> float:
    """Criterion's mean time of one iteration of `bench` (a directory), in nanoseconds."""
    return json.loads((bench / "new" / "estimates.json").read_text())["mean"]["point_estimate"]


def mean_interval_ns(bench: pathlib.Path) -> tuple[float, float]:
    """The 95% confidence interval of that mean, in nanoseconds."""
    mean = json.loads((bench / "new" / "estimates.json").read_text())["mean"]
    interval = mean["confidence_interval"]
    return interval["lower_bound"], interval["upper_bound"]


def elements(bench: pathlib.Path) -> int:
    """The elements (check-outs, queries) one iteration of `bench` counts."""
    info = json.loads((bench / "new" / "benchmark.json").read_text())
    return int((info.get("throughput") or {}).get("Elements", 1))


def has_results(bench: pathlib.Path) -> bool:
    return (bench / "new" / "estimates.json").exists()


def per_iteration_ns(pool: str, threads: int) -> float:
    """Mean time of one iteration (one check-out + return on each thread), in nanoseconds."""
    return mean_ns(CRITERION / pool / str(threads))


def cycle_table() -> None:
    runs = sorted(int(p.name) for p in (CRITERION / "sluicegate").iterdir() if p.name.isdigit())
    print("Check-out + return, no-op connections, 4 connections (millions per second, all threads):")
    print()
    print("| threads | floor | sluicegate | r2d2 | sluicegate / floor | sluicegate / r2d2 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for threads in runs:
        rate = {p: threads / per_iteration_ns(p, threads) * 1e3 for p in POOLS}
        print(
            f"| {threads} | {rate['floor']:.2f} | {rate['sluicegate']:.2f} | {rate['r2d2']:.2f} "
            f"| {rate['sluicegate'] / rate['floor']:.2f}x | {rate['sluicegate'] / rate['r2d2']:.2f}x |"
        )
    ns = {p: per_iteration_ns(p, 1) for p in POOLS}
    print()
    print(
        f"One thread: floor {ns['floor']:.0f} ns, sluicegate {ns['sluicegate']:.0f} ns "
        f"({ns['sluicegate'] / ns['floor']:.2f}x the floor), r2d2 {ns['r2d2']:.0f} ns "
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


def leak_cycle_table() -> None:
    """leak_cycle: one thread, check-out + return with leak detection off and on."""
    ns = {name: mean_ns(LEAK_CYCLE / name) for name in ("floor", "off", "on")}
    print("Leak detection, one thread, check-out + return, 4 no-op connections (ns per cycle):")
    print()
    print("| floor | off | on | off / floor | on / off | on - off, per check-out |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {ns['floor']:.0f} | {ns['off']:.0f} | {ns['on']:.0f} | {ns['off'] / ns['floor']:.2f}x "
        f"| {ns['on'] / ns['off']:.1f}x | {(ns['on'] - ns['off']) / 1e3:.2f} µs |"
    )
    print()
    print(
        f"\"on\" costs {(ns['on'] - ns['off']) / 1e3:.2f} µs more per check-out than \"off\" "
        f"({ns['on'] / ns['off']:.0f}x the cycle)."
    )
    sluicegate_1 = CRITERION / "sluicegate" / "1"
    if has_results(sluicegate_1):
        # A different run: compare the ratios to each run's own floor, not only the times.
        cycle_ns = mean_ns(sluicegate_1)
        line = (
            f"\"off\" {ns['off']:.0f} ns against cycle/sluicegate/1 {cycle_ns:.0f} ns "
            f"({ns['off'] / cycle_ns:.2f}x)"
        )
        floor_1 = CRITERION / "floor" / "1"
        if has_results(floor_1):
            cycle_floor = mean_ns(floor_1)
            line += (
                f"; relative to each run's floor: off {ns['off'] / ns['floor']:.2f}x, "
                f"cycle/sluicegate/1 {cycle_ns / cycle_floor:.2f}x"
            )
        print(line + " (separate runs).")
    else:
        print("(no cycle/sluicegate/1 results: `cargo bench --bench pool -- cycle/` to compare)")


def leak_postgres_table() -> None:
    """leak_postgres: SELECT 1 on PostgreSQL, 8 threads on 8 connections, off and on."""
    rate = {}
    interval = {}
    for mode in ("off", "on"):
        bench = LEAK_POSTGRES / mode
        per_s = elements(bench) * 1e9
        rate[mode] = per_s / mean_ns(bench)
        low, high = mean_interval_ns(bench)
        interval[mode] = (per_s / high, per_s / low)
    ratio = rate["on"] / rate["off"]
    print()
    print("Leak detection, PostgreSQL `SELECT 1`, 8 threads on 8 connections (queries per second):")
    print()
    print("| leak detection | queries/s | 95% interval | on / off |")
    print("|---|---:|---:|---:|")
    for mode in ("off", "on"):
        low, high = interval[mode]
        print(
            f"| {mode} | {rate[mode]:.0f} | {low:.0f} - {high:.0f} "
            f"| {rate[mode] / rate['off']:.2f}x |"
        )
    print()
    verdict = "meets" if ratio >= 0.8 else "misses"
    print(
        f"Criterion, off then on: on keeps {ratio:.2f}x of off's throughput "
        f"({verdict} the goal of at least 0.8x)."
    )


def leak_postgres_paired_table() -> None:
    """leak_postgres_paired: both pools in alternating blocks, one on / off ratio per round."""
    rows = list(csv.DictReader(PAIRED.open()))
    off = [float(r["off_queries_per_s"]) for r in rows]
    on = [float(r["on_queries_per_s"]) for r in rows]
    # Every block lasts as long as the others: the overall rate is the plain mean.
    overall_off = sum(off) / len(off)
    overall_on = sum(on) / len(on)
    ratios = sorted(b / a for a, b in zip(off, on))
    n = len(ratios)
    ratio = overall_on / overall_off
    print()
    print(
        f"Paired, the same 8 threads running the two pools in turns ({n} rounds of one "
        "0.1 s block each, queries per second):"
    )
    print()
    print("| off | on | on / off | per round: median | p10 | p90 |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {overall_off:.0f} | {overall_on:.0f} | {ratio:.2f}x | {ratios[n // 2]:.2f}x "
        f"| {ratios[n // 10]:.2f}x | {ratios[n * 9 // 10]:.2f}x |"
    )
    print()
    verdict = "meets" if ratio >= 0.8 else "misses"
    print(f"Paired: on keeps {ratio:.2f}x of off's throughput ({verdict} the goal of at least 0.8x).")


def times(x: float) -> str:
    """A ratio with two significant decimals even when it is small (0.005x)."""
    return f"{x:.3f}x" if x < 0.1 else f"{x:.2f}x"


def drivers_paired(run: str) -> dict:
    """{database: {variant: (mean ratio to dedicated, p10, p90)}} of the paired run `run`."""
    if not DRIVERS_PAIRED.exists():
        return {}
    rates = {}  # database -> variant -> [queries/s per round]
    for row in csv.DictReader(DRIVERS_PAIRED.open()):
        if row["run"] == run:
            by_variant = rates.setdefault(row["database"], {})
            by_variant.setdefault(row["variant"], []).append(float(row["queries_per_s"]))
    paired = {}
    for database, by_variant in rates.items():
        dedicated = by_variant["dedicated"]
        paired[database] = {}
        for variant, rounds in by_variant.items():
            ratios = sorted(r / d for r, d in zip(rounds, dedicated))
            n = len(ratios)
            # Every block lasts as long as the others: the overall rate is the plain mean.
            mean = sum(rounds) / sum(dedicated)
            paired[database][variant] = (mean, ratios[n // 10], ratios[n * 9 // 10])
    return paired


def drivers_results() -> tuple[dict, dict] | None:
    """The drivers bench's last run: ({database: {variant: (label, queries/s, low, high)}},
    its paired rounds as `drivers_paired` gives them), or None when there is no run."""
    if not DRIVERS_RUN.exists():
        return None
    measured = list(csv.DictReader(DRIVERS_RUN.open()))
    if not measured:
        return None
    run = measured[0]["run"]
    results = {}
    for database, _ in DATABASES:
        ran = {row["variant"] for row in measured if row["database"] == database}
        rates = {}
        for variant, label in VARIANTS:
            bench = DRIVERS / database / variant
            if variant not in ran or not has_results(bench):
                continue
            per_s = elements(bench) * 1e9
            low, high = mean_interval_ns(bench)
            rates[variant] = (label, per_s / mean_ns(bench), per_s / high, per_s / low)
        results[database] = rates
    return results, drivers_paired(run)


def drivers_tables() -> bool:
    """drivers: SELECT 1, 8 threads on 8 connections, per database; whether any was printed."""
    found = drivers_results()
    if found is None:
        return False
    results, paired = found
    printed = False
    for database, name in DATABASES:
        rates = results[database]
        if printed:
            print()
        printed = True
        if "dedicated" not in rates:
            print(f"{name}: not measured in the last run (unreachable, or filtered out).")
            continue
        dedicated = rates["dedicated"][1]
        r2d2 = rates["r2d2"][1] if "r2d2" in rates else None
        turns = paired.get(database, {})
        print(f"{name}, `SELECT 1`, 8 threads, 8 connections (queries per second, all threads):")
        print()
        print(
            "| | queries/s | 95% interval | / dedicated | / r2d2 "
            "| in turns: / dedicated (p10 - p90) |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for variant, (label, rate, low, high) in rates.items():
            vs_r2d2 = times(rate / r2d2) if r2d2 else "-"
            if variant in turns:
                mean, p10, p90 = turns[variant]
                in_turns = f"{times(mean)} ({p10:.2f} - {p90:.2f})"
            else:
                in_turns = "-"
            print(
                f"| {label} | {rate:.0f} | {low:.0f} - {high:.0f} "
                f"| {times(rate / dedicated)} | {vs_r2d2} | {in_turns} |"
            )
        if "sluicegate" in rates:
            kept = rates["sluicegate"][1] / dedicated
            line = f"{name}: sluicegate keeps {kept:.2f}x of dedicated connections' throughput"
            if "sluicegate" in turns:
                line += f" ({turns['sluicegate'][0]:.2f}x taking turns with them)"
            print()
            print(line + "; the goal is at least 0.95x.")
    if not paired:
        print()
        print("(no paired results from this run: run `--bench drivers` without a filter)")
    return printed


def main() -> int:
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which not in ("all", "pool", "leak", "drivers"):
        print(f"usage: {sys.argv[0]} [pool|leak|drivers]", file=sys.stderr)
        return 2
    printed = False
    if which in ("all", "pool"):
        if CRITERION.exists() and OVERLOAD.exists():
            cycle_table()
            overload_table()
            printed = True
        elif which == "pool":
            print("run `cargo bench --bench pool` first", file=sys.stderr)
            return 1
    if which in ("all", "leak"):
        have_cycle = all(has_results(LEAK_CYCLE / n) for n in ("floor", "off", "on"))
        have_pg = all(has_results(LEAK_POSTGRES / m) for m in ("off", "on"))
        if not have_cycle and not have_pg and not PAIRED.exists() and which == "leak":
            print("run `cargo bench --features postgres --bench leak` first", file=sys.stderr)
            return 1
        if (have_cycle or have_pg or PAIRED.exists()) and printed:
            print()
        if have_cycle:
            leak_cycle_table()
            printed = True
        if have_pg:
            leak_postgres_table()
            printed = True
        if PAIRED.exists():
            leak_postgres_paired_table()
            printed = True
        elif have_cycle and not have_pg:
            print()
            print("(no leak_postgres results: PostgreSQL was unreachable when the bench ran)")
    if which in ("all", "drivers"):
        have_drivers = DRIVERS_RUN.exists()
        if have_drivers and printed:
            print()
        if have_drivers and drivers_tables():
            printed = True
        elif which == "drivers":
            print(
                "no drivers results: run `cargo bench --features postgres,mysql --bench drivers` "
                "with the servers up",
                file=sys.stderr,
            )
            return 1
    if not printed:
        print(
            "run `cargo bench --bench pool`, `--bench leak` or `--bench drivers` first",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
