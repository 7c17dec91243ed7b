#!/usr/bin/env python3
"""Checks that every public item of sluicegate has an example in its docs.

Reads the JSON that rustdoc writes with `--output-format json` (see .ci/run), walks the
public items from the crate root (following re-exports, skipping `#[doc(hidden)]` ones and
trait implementations, whose docs are the trait's), and lists each item whose docs hold no
code block. Exits 1 if there is one.
"""
import json
import sys


def main(path):
    doc = json.load(open(path))
    index = doc["index"]
    seen, items, missing = set(), [], []

    def item(item_id):
        return index.get(str(item_id))

    def walk(item_id, path):
        if item_id in seen:
            return
        seen.add(item_id)
        it = item(item_id)
        if it is None or any("hidden" in str(attr) for attr in it.get("attrs", [])):
            return
        kind, inner = next(iter(it["inner"].items()))
        if it.get("visibility") != "public" and kind != "impl":
            return
        name = it.get("name") or ""
        here = path + [name] if name else path
        if kind in ("module", "struct", "enum", "trait", "function", "constant", "type_alias",
                    "static", "macro"):
            check(it, here)
        if kind == "module":
            for child in inner["items"]:
                walk(child, here)
        elif kind in ("struct", "enum"):
            for imp in inner.get("impls", []):
                walk(imp, here)
        elif kind == "trait":
            for child in inner["items"]:
                if item(child) is not None:
                    check(item(child), here + [item(child)["name"]])
        elif kind == "impl" and inner.get("trait") is None:
            for child in inner["items"]:
                walk(child, path)
        elif kind == "use" and inner.get("id") is not None:
            walk(inner["id"], path)

    def check(it, path):
        items.append(path)
        if "```" not in (it.get("docs") or ""):
            missing.append("::".join(path))

    walk(doc["root"], [])
    for name in sorted(missing):
        print(f"no example: {name}")
    if missing:
        sys.exit(1)
    print(f"doc examples: all {len(items)} public items have one")


if __name__ == "__main__":
    main(sys.argv[1])
