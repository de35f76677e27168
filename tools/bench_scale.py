#!/usr/bin/env python3
"""`make bench-scale`: capwatch against transformers' generate() in PyTorch at real model sizes.

Builds a real-size random-weight BLIP-base checkpoint locally (BlipConfig() defaults: ViT-B/16 at
384, BERT-base text decoder; no hub access), with a word-level tokenizer of the real vocabulary
size and a stop token that random weights do not reach, so every caption runs to the length
limit; exports it in the older layout (cross-attention K/V recomputed every step), the
cross-cache layout, and the cross-cache layout with int8 weights; then, in one run and interleaved, times:

  - `capwatch serve` on each export (1 worker x N ONNX Runtime threads, raw PNG over loopback),
  - `BlipForConditionalGeneration.generate()` in PyTorch with N threads on the same image,

and prints a Markdown table of P50 / P95 latency and the ratios. Everything runs on this machine;
nothing is downloaded but the Python packages of tools/requirements.txt.

    tools/.venv/bin/python tools/bench_scale.py --work .tmp/bench-scale --rounds 10 --threads 2
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, GenerationConfig

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))
import export_blip  # noqa: E402

VOCAB = 30524  # bert-base-uncased (30522) + [DEC] + padding, as BLIP's checkpoints
MAX_LENGTH = 20


def build_blip_base(out: Path) -> None:
    """Random weights at BLIP-base's shapes; stop on a token the random model never emits."""
    if (out / "config.json").is_file():
        return
    torch.manual_seed(0)
    config = BlipConfig(text_config={"vocab_size": VOCAB, "bos_token_id": 30522, "sep_token_id": 102, "pad_token_id": 0})
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        # Random weights would stop at random; push [SEP] out of reach so captions are full length.
        model.text_decoder.cls.predictions.bias[102] -= 1e4
    model.generation_config = GenerationConfig(bos_token_id=30522, pad_token_id=0, eos_token_id=102, max_length=MAX_LENGTH)
    model.save_pretrained(out)
    # save_pretrained leaves out values equal to BlipTextConfig's defaults (bos 30522, sep 102, pad 0), and
    # capwatch does not fall back to those defaults yet (issue 11): write them out.
    config_path = out / "config.json"
    saved = json.loads(config_path.read_text())
    saved["text_config"].update({"bos_token_id": 30522, "sep_token_id": 102, "pad_token_id": 0})
    config_path.write_text(json.dumps(saved, indent=2))
    BlipImageProcessor(size={"height": 384, "width": 384}).save_pretrained(out)
    words = {f"w{i}": i for i in range(VOCAB)}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="w100"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(out / "tokenizer.json"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body, headers={"content-type": "image/png"})
    with urllib.request.urlopen(request, timeout=600) as answer:
        return json.loads(answer.read())


def start_server(binary: Path, model: Path, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = model / "bench_serve.yaml"
    config.write_text(f"service:\n  workers: 1\n  intra_op_threads: {threads}\n  request_timeout_s: 600\n")
    process = subprocess.Popen(
        [str(binary), "serve", "--config", str(config), "--model", str(model), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"capwatch serve on {model} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=5) as answer:
                if answer.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"capwatch serve on {model} was not ready in 10 minutes")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / ".tmp" / "bench-scale")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--binary", type=Path, default=REPO / "target" / "release" / "capwatch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = args.work
    checkpoint = work / "blip-base-random"
    build_blip_base(checkpoint)
    exports = {
        "older layout": (work / "blip-base-onnx", False, False),
        "cross-cache layout": (work / "blip-base-onnx-cross", True, False),
        "cross-cache layout, int8": (work / "blip-base-onnx-cross-int8", True, True),
    }
    for out, cross_cache, int8 in exports.values():
        if not (out / "capwatch_export.json").is_file():
            export_blip.export(checkpoint, out, cross_cache=cross_cache, int8=int8)

    image = Image.fromarray((np.random.default_rng(0).random((384, 384, 3)) * 255).astype(np.uint8))
    png = io.BytesIO()
    image.save(png, format="PNG")
    body = png.getvalue()

    model = BlipForConditionalGeneration.from_pretrained(checkpoint).eval()
    processor = BlipImageProcessor.from_pretrained(checkpoint)
    pixel_values = processor(images=image, return_tensors="pt")["pixel_values"]
    servers = {name: start_server(args.binary, out, args.threads) for name, (out, _, _) in exports.items()}
    timings: dict[str, list[float]] = {name: [] for name in [*exports, "PyTorch generate()"]}
    tokens: dict[str, int] = {}
    try:
        with torch.no_grad():
            new_tokens = model.generate(pixel_values=pixel_values, max_length=MAX_LENGTH).shape[1] - 1
        # The same number of new tokens on every side.
        for name, (_, url) in servers.items():
            post(f"{url}/caption?max_new_tokens={new_tokens}", body)  # warm-up
        for _ in range(args.rounds):
            for name, (_, url) in servers.items():
                started = time.perf_counter()
                answer = post(f"{url}/caption?max_new_tokens={new_tokens}", body)
                timings[name].append((time.perf_counter() - started) * 1000)
                tokens[name] = answer["tokens"]
            started = time.perf_counter()
            with torch.no_grad():
                out = model.generate(pixel_values=pixel_values, max_length=MAX_LENGTH)
            timings["PyTorch generate()"].append((time.perf_counter() - started) * 1000)
            tokens["PyTorch generate()"] = out.shape[1] - 1
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)

    torch_p50 = percentile(timings["PyTorch generate()"], 50)
    older_p50 = percentile(timings["older layout"], 50)
    print(f"\nBLIP-base (random weights, new tokens per caption: {tokens}), "
          f"{args.rounds} rounds interleaved, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs\n")
    print("| what | P50 ms | P95 ms | P50 vs PyTorch | P50 vs older layout |")
    print("|---|---|---|---|---|")
    for name, values in timings.items():
        p50 = percentile(values, 50)
        print(f"| {name} | {p50:.0f} | {percentile(values, 95):.0f} | {p50 / torch_p50:.2f}× | {p50 / older_p50:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
