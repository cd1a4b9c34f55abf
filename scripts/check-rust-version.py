#!/usr/bin/env python3
"""Checks that the workspace's `rust-version` is at least what every locked dependency declares.

CI cannot install an older toolchain to prove the minimum (only the machine's own is reachable), so it compares the
declared minimum against `cargo metadata`: a dependency update that raises the real minimum fails here, and the
README's "Rust 1.NN or newer" stays true.
"""
import json
import pathlib
import re
import subprocess
import sys


def version(text):
    """`1.89` and `1.89.0` are the same minimum."""
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


metadata = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"], check=True, capture_output=True, text=True
    ).stdout
)
members = set(metadata["workspace_members"])
declared = {package["rust_version"] for package in metadata["packages"] if package["id"] in members}
if len(declared) != 1 or None in declared:
    sys.exit(f"every workspace member should inherit one rust-version; found {sorted(map(str, declared))}")
workspace = declared.pop()
needed = [
    (version(package["rust_version"]), package["name"], package["version"])
    for package in metadata["packages"]
    if package["id"] not in members and package.get("rust_version")
]
highest = max(needed)
too_new = [f"{name} {ver} needs {'.'.join(map(str, need[:2]))}" for need, name, ver in needed if need > version(workspace)]
if too_new:
    sys.exit(f"rust-version is {workspace}, but " + "; ".join(sorted(too_new)) + ": raise it (and the README's)")
readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
said = re.search(r"Rust toolchain \((\d+\.\d+) or newer\)", readme)
if not said or version(said.group(1)) != version(workspace):
    sys.exit(f"README.md should say 'Rust toolchain ({workspace} or newer)'")
print(f"rust-version {workspace} covers every locked dependency (the highest, {highest[1]}, needs "
      f"{'.'.join(map(str, highest[0][:2]))})")
