#!/usr/bin/env python3
"""Fetch the ONNX Runtime shared library from the official `onnxruntime` wheel on PyPI.

capwatch loads ONNX Runtime at run time (the `ort` crate's `load-dynamic` feature). A wheel
is a zip file; the only thing needed from it is `onnxruntime/capi/libonnxruntime.so.*`.
This script downloads the pinned wheel once with pip (PyPI only, nothing else) and copies
the library to `.ort/libonnxruntime.so` in the repository root (ignored by git).

Usage: python3 tools/fetch_onnxruntime.py [--dest .ort]
The version is pinned to what the `ort` crate's `api-31` feature expects.
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

ONNXRUNTIME_VERSION = "1.31.1"
LIBRARY_NAME = "libonnxruntime.so"


def main() -> int:
    root = pathlib.Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=pathlib.Path, default=root / ".ort")
    args = parser.parse_args()
    dest: pathlib.Path = args.dest
    target = dest / LIBRARY_NAME
    stamp = dest / "VERSION"
    if target.exists() and stamp.exists() and stamp.read_text().strip() == ONNXRUNTIME_VERSION:
        print(f"ONNX Runtime {ONNXRUNTIME_VERSION} already at {target}")
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "-q", "-d", tmp, f"onnxruntime=={ONNXRUNTIME_VERSION}",
        ]
        print("fetching the onnxruntime wheel from PyPI:", " ".join(cmd[2:]))
        subprocess.run(cmd, check=True)
        wheels = list(pathlib.Path(tmp).glob("onnxruntime-*.whl"))
        if not wheels:
            print("error: pip downloaded no onnxruntime wheel", file=sys.stderr)
            return 1
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [n for n in wheel.namelist()
                       if n.startswith("onnxruntime/capi/") and pathlib.Path(n).name.startswith(LIBRARY_NAME + ".")]
            if not members:
                print(f"error: no {LIBRARY_NAME}.* inside {wheels[0].name}", file=sys.stderr)
                return 1
            with wheel.open(members[0]) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    stamp.write_text(ONNXRUNTIME_VERSION + "\n")
    print(f"ONNX Runtime {ONNXRUNTIME_VERSION} installed at {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
