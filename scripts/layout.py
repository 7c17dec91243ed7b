#!/usr/bin/env python3
"""Checks the layout rule of src/: every import points down the floors.

Each module of the crate sits on a floor (below); a module may name, in its code, only modules
on floors below its own (or on its own floor, for siblings that are leaves). Doc comments and
`#[cfg(test)] mod tests` are not code here: a doc may link anywhere, and a unit test may use
what it likes. Prints each path that points up and exits 1 if there is one.
"""
import pathlib
import re
import sys

# Lowest first. The root re-exports (`crate::Error`, ...) count as the module they come from.
FLOORS = [
    # 1. Leaves: time, text, errors, what a driver implements, the figures a pool reports.
    {"backtrace", "clock", "error", "event", "extensions", "human", "leak",
     "manager", "metrics", "sizing", "sync"},
    # 2. Settings and the builder.
    {"config"},
    # 3. The state behind the lock.
    {"state"},
    # 4. The engine.
    {"core"},
    # 5. The pool's threads.
    {"worker"},
    # 6. The public face.
    {"pool"},
    # 7. Drivers, the model checker's entry points, and the fixture the docs' examples use.
    {"doc_fixture", "drivers", "model"},
    # 8. The crate root.
    {"lib"},
]
REEXPORTS = {
    "Builder": "config", "Error": "error", "HandleEvent": "event", "NopEventHandler": "event",
    "Extensions": "extensions", "Leak": "leak", "Metrics": "metrics", "State": "metrics",
    "Drained": "pool", "Pool": "pool", "PooledConnection": "pool",
    "CustomizeConnection": "manager", "HandleError": "manager", "LoggingErrorHandler": "manager",
    "ManageConnection": "manager", "NopConnectionCustomizer": "manager",
    "NopErrorHandler": "manager",
    "diesel": "drivers", "mysql": "drivers", "postgres": "drivers", "r2d2": "drivers",
    "sqlite": "drivers",
}


def floor_of(module):
    for level, names in enumerate(FLOORS):
        if module in names:
            return level
    return None


def main():
    src = pathlib.Path(__file__).resolve().parent.parent / "src"
    problems = []
    for path in sorted(src.rglob("*.rs")):
        module = path.relative_to(src).parts[0].removesuffix(".rs")
        mine = floor_of(module)
        if mine is None:
            problems.append(f"{path}: module `{module}` is on no floor (add it to FLOORS)")
            continue
        text = path.read_text().split("#[cfg(test)]\nmod tests")[0]
        # Comments (docs included) blanked, lines kept, so that positions give line numbers.
        code = "\n".join("" if l.lstrip().startswith("//") else l for l in text.splitlines())
        found = [(m.start(), m.group(1)) for m in re.finditer(r"\bcrate::(\w+)", code)]
        for group in re.finditer(r"\bcrate::\{([^}]*)\}", code):
            found += [(group.start(), part.strip().split("::")[0].split()[0])
                      for part in group.group(1).split(",") if part.strip()]
        for at, name in found:
            number = code.count("\n", 0, at) + 1
            line = code.splitlines()[number - 1].strip()
            target = REEXPORTS.get(name, name)
            theirs = floor_of(target)
            if theirs is None:
                problems.append(f"{path}:{number}: `crate::{name}` is on no floor")
            elif theirs > mine:
                problems.append(
                    f"{path}:{number}: `{module}` (floor {mine + 1}) names `crate::{name}` "
                    f"(floor {theirs + 1}): {line}")
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"layout: every import in {src} points down")


if __name__ == "__main__":
    main()
