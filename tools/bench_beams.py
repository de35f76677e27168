#!/usr/bin/env python3
"""`make bench-beams`: beam search at real model sizes, capwatch against PyTorch generate().

Uses bench_scale.py's random-weight BLIP-base and ViT-GPT2-base checkpoints and their cross-attention-cache
exports (built and cached under --work the first time, ~7 min). For each model, four rows are timed at
concurrency 1, interleaved round by round after one warm-up call each: `capwatch serve` (1 worker x N ONNX
Runtime threads) with `?num_beams=1` and `?num_beams=B`, and `generate(num_beams=1)` / `generate(num_beams=B)`
in PyTorch (N threads) on the preprocessed image. Every caption runs to 19 new tokens (the stop token is out of
reach of the random weights), so each beam search runs its full length. Each capwatch answer is compared with
PyTorch's for the same number of beams (token-identical captions at real size).

    tools/.venv/bin/python tools/bench_beams.py [--beams 4] [--rounds 3] [--threads 2] [--out FILE]

Prints and writes (--out, default WORK/beams.md) one table per model: P50 / min latency, beam / greedy time on
the same side, capwatch / PyTorch time for the same search, and whether the captions matched.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import torch
from transformers import BlipForConditionalGeneration, BlipImageProcessor, VisionEncoderDecoderModel, ViTImageProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scale as scale  # noqa: E402


def capwatch_row(server: scale.Server, body: bytes, num_beams: int) -> scale.Row:
    url = f"{server.url}/caption?max_new_tokens={scale.NEW_TOKENS}&num_beams={num_beams}"

    def call() -> scale.Answer:
        request = urllib.request.Request(url, data=body, headers={"content-type": "image/png"})
        with urllib.request.urlopen(request, timeout=900) as response:
            answer = json.loads(response.read())
        assert answer["num_beams"] == num_beams, answer
        return scale.Answer(answer["tokens"], answer["caption"])

    return scale.Row(f"capwatch, num_beams {num_beams}", call)


def table(title: str, rows: dict[tuple[str, int], scale.Row], beams: int) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| row | P50 ms | min ms | tokens | beam / greedy (same side) | capwatch / PyTorch (same search) | caption = PyTorch's |",
        "|---|---|---|---|---|---|---|",
    ]
    for (side, n), row in rows.items():
        greedy = rows[(side, 1)]
        torch_row = rows[("torch", n)]
        same = "–" if side == "torch" else ("yes" if row.captions == torch_row.captions else "**no**")
        ratio_side = "–" if n == 1 else scale.fmt_ratio(row.p(50), greedy.p(50))
        ratio_torch = "–" if side == "torch" else scale.fmt_ratio(row.p(50), torch_row.p(50))
        failures = f" ({len(row.failures)} failed)" if row.failures else ""
        lines.append(
            f"| {row.name}{failures} | {row.p(50):.0f} | {min(row.ms, default=float('nan')):.0f} | "
            f"{scale.tokens_cell(row)} | {ratio_side} | {ratio_torch} | {same} |"
        )
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=scale.REPO / ".tmp" / "bench-scale")
    parser.add_argument("--out", type=Path, help="Markdown results file (default: WORK/beams.md)")
    parser.add_argument("--beams", type=int, default=4, help="B: beams of the beam-search rows")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="N: ONNX Runtime / PyTorch threads")
    parser.add_argument("--binary", type=Path, default=scale.REPO / "target" / "release" / "capwatch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scale.hf_logging.set_verbosity_error()
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    paths = scale.export_all(args.work)
    servers = {
        "blip": scale.start_capwatch(args, "BLIP-base, cross-cache", paths["blip-cross"]),
        "vg": scale.start_capwatch(args, "ViT-GPT2, cross-cache", paths["vg-cross"]),
    }
    try:
        scale.wait_ready(list(servers.values()))
        (blip_image, blip_png), (vg_image, vg_png) = scale.test_png(384), scale.test_png(224)
        blip_model = BlipForConditionalGeneration.from_pretrained(paths["blip"]).eval()
        blip_pixels = BlipImageProcessor.from_pretrained(paths["blip"])(blip_image, return_tensors="pt")
        vg_model = VisionEncoderDecoderModel.from_pretrained(paths["vg"]).eval()
        vg_pixels = ViTImageProcessor.from_pretrained(paths["vg"])(vg_image, return_tensors="pt")
        models = {
            "blip": (servers["blip"], blip_png, blip_model, blip_pixels["pixel_values"], paths["blip"]),
            "vg": (servers["vg"], vg_png, vg_model, vg_pixels["pixel_values"], paths["vg"]),
        }
        tables: dict[str, dict[tuple[str, int], scale.Row]] = {}
        for key, (server, png, model, pixels, checkpoint) in models.items():
            rows = {}
            for n in (1, args.beams):
                rows[("capwatch", n)] = capwatch_row(server, png, n)
                kwargs = {"max_new_tokens": scale.NEW_TOKENS, "num_beams": n, "do_sample": False}
                torch_row = scale.torch_row(model, pixels, checkpoint / "tokenizer.json", **kwargs)
                torch_row.name = f"PyTorch generate(num_beams={n})"
                rows[("torch", n)] = torch_row
            tables[key] = dict(sorted(rows.items(), key=lambda item: (item[0][1], item[0][0])))
        every_row = [row for rows in tables.values() for row in rows.values()]
        scale.run_concurrency_1(every_row, args.rounds, lambda message: print(message, flush=True))
    finally:
        for server in servers.values():
            server.stop()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=scale.REPO)
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line),
        "?",
    )
    lines = [
        f"# bench-beams, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"- Machine: {cpu}, {os.cpu_count()} logical CPUs; load average before the run {load_before}. Repository at "
        f"{git.stdout.strip()}; capwatch {args.binary}; PyTorch {torch.__version__}.",
        f"- Method: random-weight BLIP-base / ViT-GPT2-base (tools/bench_scale.py), cross-attention-cache exports; "
        f"capwatch 1 worker x {args.threads} ONNX Runtime threads, PyTorch {args.threads} threads; concurrency 1, "
        f"one warm-up call per row, then {args.rounds} rounds, every row once per round, interleaved; {scale.NEW_TOKENS} "
        "new tokens per caption; capwatch rows are client-measured over loopback (PNG decode and preprocessing "
        "included), PyTorch rows time generate() alone.",
        "",
        *table("BLIP-base (384², BERT-base decoder)", tables["blip"], args.beams),
        *table("ViT-GPT2-base (224², GPT-2 decoder)", tables["vg"], args.beams),
    ]
    text = "\n".join(lines)
    print(text)
    out = args.out or args.work / "beams.md"
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
