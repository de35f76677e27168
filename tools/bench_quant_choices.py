#!/usr/bin/env python3
"""`make bench-quant-choices`: the measurements behind tools/quantize_export.py's defaults.

For one fp32 model directory (default: bench-scale's BLIP-base cross-cache export), writes its quantized
copies with tools/quantize_export.py and times, in one run, interleaved, with onnxruntime on --threads
intra-op threads (capwatch's default 2): the encoder on one image, and greedy decoding of --steps tokens
(reported per step). Variants:

  - fp32; int8 (quantize_dynamic everywhere, today's --int8);
  - int4 decoder (MatMulNBits) with block size 16, 32, 64, 128 at accuracy level 4 (int8 compute), and
    blocks 32 and 128 at accuracy level 0 (fp32 compute), each with the dynamic int8 encoder (its attention
    fused, tools/fuse_attention.py), and block 128 with the encoder's attention left unfused;
  - the int4 block-32 decoder with a static QDQ int8 encoder (per-channel, calibrated on images), and with
    a dynamic int8 encoder whose attention MatMuls (activation x activation) are quantized too.

Also printed: file sizes and how many of --images random images decode to the same --steps tokens as fp32
(random-weight models have flat logits: information only). Accuracy on real weights is measured on the
bundled model with tools/eval_server.py --reference-url.

    tools/.venv/bin/python tools/bench_quant_choices.py [SRC_DIR] [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quantize_export as qe  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def timed_decoder(directory: Path, threads: int) -> qe.Decoder:
    original = qe.session

    def threaded(path: Path) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    qe.session = threaded
    try:
        config = json.loads((directory / "config.json").read_text())
        generation_path = directory / "generation_config.json"
        generation = json.loads(generation_path.read_text()) if generation_path.is_file() else {}
        return qe.Decoder(directory, config, generation)
    finally:
        qe.session = original


def caption_ms(decoder: qe.Decoder, pixels: np.ndarray, steps: int) -> tuple[float, float]:
    """(encoder ms, decoding ms) of one caption of `steps` tokens: the encoder's run is timed inside the
    caption, so a step's time does not carry the noise of a separate encoder run."""
    encoder = decoder.encoder
    timed = {}

    class TimedEncoder:
        def __getattr__(self, name):
            return getattr(encoder, name)

        def run(self, *args, **kwargs):
            start = time.perf_counter()
            out = encoder.run(*args, **kwargs)
            timed["ms"] = (time.perf_counter() - start) * 1000
            return out

    decoder.encoder = TimedEncoder()
    try:
        start = time.perf_counter()
        decoder.run(pixels, steps)
        total = (time.perf_counter() - start) * 1000
    finally:
        decoder.encoder = encoder
    return timed["ms"], total - timed["ms"]


def size_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.iterdir() if p.suffix in (".onnx", ".data")) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", nargs="?", type=Path, default=REPO / ".tmp/bench-scale/blip-base-onnx-cross")
    parser.add_argument("--work", type=Path, default=REPO / ".tmp/quant-choices")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=19)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--only", help="semicolon-separated variant names")
    args = parser.parse_args()
    if not (args.src / "config.json").is_file():
        parser.error(f"{args.src} is not a model directory (make bench-scale writes the default one)")
    base = {"op_types": ["MatMul"], "per_channel": False, "reduce_range": False, "calibration_images": 32}
    variants = {
        "int8": {**base, "precision": "int8", "encoder": "dynamic", "block_size": 32, "accuracy_level": 4},
        **{
            f"int4 b{block} a4": {**base, "precision": "int4", "encoder": "dynamic", "block_size": block, "accuracy_level": 4}
            for block in (16, 32, 64, 128)
        },
        "int4 b32 a0": {**base, "precision": "int4", "encoder": "dynamic", "block_size": 32, "accuracy_level": 0},
        "int4 b128 a0": {**base, "precision": "int4", "encoder": "dynamic", "block_size": 128, "accuracy_level": 0},
        "int4 b128 a4, unfused encoder": {
            **base, "precision": "int4", "encoder": "dynamic", "block_size": 128, "accuracy_level": 4, "fuse_attention": False
        },
        "int4 b32 a4, static encoder": {**base, "precision": "int4", "encoder": "static", "block_size": 32, "accuracy_level": 4},
        "int4 b32 a4, dynamic+attention encoder": {**base, "precision": "int4", "encoder": "dynamic+attention", "block_size": 32, "accuracy_level": 4},
    }
    if args.only:
        wanted = {name.strip() for name in args.only.split(";")}
        variants = {k: v for k, v in variants.items() if k in wanted}
    dirs = {"fp32": args.src}
    for name, settings in variants.items():
        out = args.work / args.src.name / name.replace(" ", "-").replace(",", "")
        if not (out / qe.EXPORT_RECORD).is_file():
            print(f"writing {name} -> {out}", flush=True)
            qe.quantize_directory(args.src, out, settings, force=True)
        dirs[name] = out
    decoders = {name: timed_decoder(d, args.threads) for name, d in dirs.items()}
    rng = np.random.default_rng(0)
    pixels = rng.uniform(-1, 1, decoders["fp32"].pixel_shape()).astype(np.float32)
    enc = {name: [] for name in decoders}
    step = {name: [] for name in decoders}
    for name, decoder in decoders.items():  # warm-up
        caption_ms(decoder, pixels, 2)
    for round_ in range(args.rounds):
        for name, decoder in decoders.items():
            e, decoding = caption_ms(decoder, pixels, args.steps)
            enc[name].append(e)
            step[name].append(decoding / args.steps)
        print(f"round {round_ + 1}/{args.rounds}", flush=True)
    same = {name: 0 for name in decoders}
    for _ in range(args.images):
        image = rng.uniform(-1, 1, decoders["fp32"].pixel_shape()).astype(np.float32)
        reference = decoders["fp32"].run(image, args.steps)[0]
        for name, decoder in decoders.items():
            same[name] += decoder.run(image, args.steps)[0] == reference
    lines = [
        f"### Quantization choices: {args.src.name} (onnxruntime {ort.__version__}, {args.threads} threads, "
        f"{args.rounds} rounds interleaved, medians)",
        "",
        "| variant | ONNX MB | encoder ms | decoder ms/step | caption ms (encoder + steps) | vs fp32 | same tokens as fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    fp32_total = statistics.median(enc["fp32"]) + args.steps * statistics.median(step["fp32"])
    for name in decoders:
        e, s = statistics.median(enc[name]), statistics.median(step[name])
        total = e + args.steps * s
        lines.append(
            f"| {name} | {size_mb(dirs[name]):.0f} | {e:.1f} | {s:.2f} | {total:.0f} | {total / fp32_total:.2f}× "
            f"| {same[name]}/{args.images} |"
        )
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / f"{args.src.name}.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
