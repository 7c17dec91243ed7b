#!/usr/bin/env python3
"""Fails when a dependency needs a newer Rust than sluicegate's `rust-version` says.

Walks what a user compiles (normal and build dependencies, not dev-dependencies) for the host
platform, once with the default features and once with every feature, as `cargo metadata`
resolves them with the committed Cargo.lock, and compares each package's declared
`rust-version` with ours. A dependency that declares none cannot be checked; they are listed
so that a reader knows.

Usage: scripts/msrv.py   (from anywhere in the repository; needs cargo and python3)
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse(version):
    """'1.85' or '1.85.0' as a comparable tuple (1, 85, 0)."""
    parts = [int(p) for p in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def host():
    for line in subprocess.run(
        ["rustc", "-vV"], check=True, capture_output=True, text=True
    ).stdout.splitlines():
        if line.startswith("host: "):
            return line.split()[1]
    sys.exit("msrv: cannot tell the host platform from `rustc -vV`")


def walk(features):
    """(our rust-version, {package id: package}) for what a user builds with `features`."""
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked",
             "--filter-platform", host(), *features],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = meta["resolve"]["root"]
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for dep in nodes[node]["deps"]:
            # A dev-dependency of the root is not compiled by users; below the root cargo
            # already leaves dev-dependencies out of the resolve.
            if any(kind["kind"] in (None, "build") for kind in dep["dep_kinds"]):
                stack.append(dep["pkg"])
    ours = packages[root].get("rust_version")
    if not ours:
        sys.exit("msrv: Cargo.toml declares no rust-version")
    seen.discard(root)
    return ours, {i: packages[i] for i in seen}


def main():
    failed = False
    for label, features in (("default features", []), ("--all-features", ["--all-features"])):
        ours, deps = walk(features)
        newer = sorted(
            (parse(p["rust_version"]), p["name"], p["version"], p["rust_version"])
            for p in deps.values()
            if p.get("rust_version") and parse(p["rust_version"]) > parse(ours)
        )
        undeclared = sorted(p["name"] for p in deps.values() if not p.get("rust_version"))
        highest = max(
            (parse(p["rust_version"]), p["name"]) for p in deps.values() if p.get("rust_version")
        )
        print(
            f"msrv ({label}): rust-version {ours}; {len(deps)} dependencies, the highest "
            f"declared {'.'.join(map(str, highest[0]))} ({highest[1]}); "
            f"{len(undeclared)} declare none"
        )
        for _, name, version, needs in newer:
            print(f"  {name} {version} needs Rust {needs}, newer than {ours}")
            failed = True
    if failed:
        sys.exit("msrv: raise rust-version in Cargo.toml or choose older dependency versions")


if __name__ == "__main__":
    main()
