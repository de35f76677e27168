#!/usr/bin/env python3
"""Where a caption's time goes inside ONNX Runtime: the encoder and the decoding steps of one model directory,
by operator type, from onnxruntime's own profiler (--threads intra-op threads, as capwatch runs them).

    tools/.venv/bin/python tools/profile_stages.py .tmp/bench-scale/blip-base-onnx-cross-int4 [--steps 19]

Prints, for the encoder (one image) and the decoder (per step, averaged over --steps greedy steps after a
warm-up caption), the time per operator type, its share, and the count of nodes run — the measured reason
a stage sits above its roofline floor (bench-scale's "Every stage against its floor").
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quantize_export as qe  # noqa: E402


def profiled(path: Path, threads: int, prefix: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def by_op(trace_path: str, skip_runs: int) -> tuple[dict[str, float], dict[str, int], int]:
    """Microseconds and node runs per operator type, over the model runs after the first `skip_runs`."""
    events = json.loads(Path(trace_path).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    runs.sort(key=lambda e: e["ts"])
    kept = runs[skip_runs:]
    windows = [(e["ts"], e["ts"] + e["dur"]) for e in kept]
    time_us: dict[str, float] = collections.Counter()
    count: dict[str, int] = collections.Counter()
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        if not any(start <= event["ts"] <= end for start, end in windows):
            continue
        op = event.get("args", {}).get("op_name", "?")
        time_us[op] += event["dur"]
        count[op] += 1
    return time_us, count, len(kept)


def table(title: str, time_us: dict[str, float], count: dict[str, int], per: int, unit: str) -> str:
    total = sum(time_us.values())
    lines = [f"#### {title}", "", f"| operator | ms {unit} | share | nodes {unit} |", "|---|---:|---:|---:|"]
    for op, us in sorted(time_us.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"| {op} | {us / per / 1000:.2f} | {us / total:.0%} | {count[op] / per:.0f} |")
    rest = total - sum(us for _, us in sorted(time_us.items(), key=lambda kv: -kv[1])[:12])
    lines.append(f"| (others) | {rest / per / 1000:.2f} | {rest / total:.0%} | |")
    lines.append(f"| **all operators** | **{total / per / 1000:.2f}** | | **{sum(count.values()) / per:.0f}** |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=19)
    parser.add_argument("--work", type=Path, default=Path(".tmp/profile"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    prefix = str(args.work / args.model.name)
    original = qe.session
    qe.session = lambda path: profiled(path, args.threads, f"{prefix}-{path.stem}")
    try:
        config = json.loads((args.model / "config.json").read_text())
        generation_path = args.model / "generation_config.json"
        generation = json.loads(generation_path.read_text()) if generation_path.is_file() else {}
        decoder = qe.Decoder(args.model, config, generation)
    finally:
        qe.session = original
    pixels = np.random.default_rng(0).uniform(-1, 1, decoder.pixel_shape()).astype(np.float32)
    decoder.run(pixels, args.steps)  # warm-up caption
    decoder.run(pixels, args.steps)  # profiled caption
    encoder_trace = decoder.encoder.end_profiling()
    decoder_trace = decoder.later.end_profiling()
    if decoder.first is not decoder.later:
        decoder.first.end_profiling()
    enc_us, enc_n, enc_runs = by_op(encoder_trace, 1)
    dec_us, dec_n, dec_runs = by_op(decoder_trace, args.steps)
    print(f"### {args.model} ({args.threads} threads, onnxruntime {ort.__version__})\n")
    print(table("Encoder, per image", enc_us, enc_n, max(enc_runs, 1), "per image"))
    print(table(f"Decoder, per step ({dec_runs} steps)", dec_us, dec_n, max(dec_runs, 1), "per step"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
