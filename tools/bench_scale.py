#!/usr/bin/env python3
"""`make bench-scale`: capwatch at real model sizes against PyTorch generate() and a Python peer server.

Everything is built and run on this machine; nothing is downloaded but the Python packages of
tools/requirements.txt. Two random-weight checkpoints are built from configs (no hub access), each with a
word-level tokenizer of the real vocabulary size and a stop token that random weights never reach, so every
caption runs to the length limit: 19 new tokens on every side, checked on every answer.

  - BLIP-base: BlipConfig() defaults (ViT-B/16 at 384, BERT-base text decoder), [SEP] pushed out of reach;
    exported by tools/export_blip.py in the older layout (cross-attention K/V recomputed every step), the
    cross-cache layout, and the cross-cache layout with int8 weights.
  - ViT-GPT2-base: VisionEncoderDecoderModel of ViTConfig() (224, patch 16) and GPT2Config(add_cross_attention)
    (vocab 50257, n_positions 1024), decoder start / bos / eos / pad 50256, lm_head untied with its row 50256
    zeroed (see build_vit_gpt2_base). Exported by Optimum (main_export, task image-to-text-with-past: the
    standard merged export, "today's layout", what the peer serves) and by tools/export_vit_gpt2.py
    (cross-attention-cache layout) in fp32 and int8.

The exports run in child processes and are cached under --work (.tmp/bench-scale, ignored by git). Then:

  1. Concurrency 1, every row interleaved round by round after one warm-up call each: `capwatch serve` on
     every export (a raw PNG over loopback, `?max_new_tokens=19`, latency measured by the client); the
     FastAPI + onnxruntime peer (../shared/peers/py_peer_server.py run from where it is, with its own venv,
     ORT_THREADS=N) on the Optimum export; `generate()` in PyTorch on the preprocessed image. Each answer's
     caption is compared with PyTorch's.
  2. Concurrency 8 (--clients): for each row, a closed loop of 8 client threads, each sending its next request
     when its previous one answered; 8 x rounds requests per row, in --c8-passes passes that go through the
     rows in turn, after an untimed burst of 8. Rows: ViT-GPT2 cross-cache fp32 served by capwatch with
     continuous batching (max_batch_size 8: requests join the batch that is decoding), with batches that
     start together (join_running_batch false) and with batching off (max_batch_size 1), the peer; BLIP-base
     cross-cache likewise (unless --skip-blip-c8). Reported: captions/s, P50, P95, P95 / the concurrency-1
     P50 of the same model and server, the mean of the batch sizes capwatch answered with (the most
     captions decoded together while each one was).
  3. Memory: VmRSS and VmHWM (/proc/PID/status) of every server after its runs; and BLIP-base cross-cache
     served with `workers: 1` and with `workers: 2` (max_batch_size 1 so both workers caption), one server
     at a time with nothing else running, after 3 concurrent captions each.

capwatch runs 1 worker x N ONNX Runtime intra-op threads (N = --threads) unless a row says otherwise;
PyTorch uses torch.set_num_threads(N). The Markdown tables, under a header naming the machine, the date,
the versions and the method, are printed and written to --out (default WORK/results.md).

    tools/.venv/bin/python tools/bench_scale.py [--rounds 8] [--threads 2] [--skip-blip-c8] [--out FILE]

First run: the two checkpoints and six exports add about 7 minutes on a 2-vCPU VM (Optimum's export peaks at
~6 GB of RAM; the files take ~7 GB on disk).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessor,
    GenerationConfig,
    GPT2Config,
    VisionEncoderDecoderConfig,
    VisionEncoderDecoderModel,
    ViTConfig,
    ViTImageProcessor,
)
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_roofline  # noqa: E402

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
MAX_LENGTH = 20
NEW_TOKENS = MAX_LENGTH - 1  # on every side: capwatch gets ?max_new_tokens=19, the peer stops at max_length - 1
BLIP_VOCAB = 30524  # bert-base-uncased (30522) + [DEC] + padding, as BLIP's checkpoints
GPT2_VOCAB = 50257
GPT2_STOP = 50256  # <|endoftext|>: decoder start, bos, eos and pad, as nlpconnect/vit-gpt2-image-captioning


# ------------------------------------------------------------------------------------ checkpoints


def save_word_tokenizer(out: Path, vocab: int) -> None:
    """A word-level tokenizer with the real vocabulary size: token i is the word `wi`."""
    tokenizer = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w100"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(out / "tokenizer.json"))


def build_blip_base(out: Path) -> None:
    """Random weights at BLIP-base's shapes; stop on a token the random model never emits."""
    if (out / "tokenizer.json").is_file():
        return
    torch.manual_seed(0)
    config = BlipConfig(text_config={"vocab_size": BLIP_VOCAB, "bos_token_id": 30522, "sep_token_id": 102, "pad_token_id": 0})
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        # Random weights would stop at random; push [SEP] out of reach so captions are full length.
        model.text_decoder.cls.predictions.bias[102] -= 1e4
    model.generation_config = GenerationConfig(bos_token_id=30522, pad_token_id=0, eos_token_id=102, max_length=MAX_LENGTH)
    # save_pretrained leaves out values equal to BlipTextConfig's defaults (bos 30522, sep 102, pad 0);
    # capwatch falls back to them as transformers does.
    model.save_pretrained(out)
    BlipImageProcessor(size={"height": 384, "width": 384}).save_pretrained(out)
    save_word_tokenizer(out, BLIP_VOCAB)  # last: marks the checkpoint complete


def build_vit_gpt2_base(out: Path) -> None:
    """Random weights at ViT-GPT2-base's shapes (nlpconnect/vit-gpt2-image-captioning's architecture).

    GPT-2's lm_head has no bias and is tied to the token embeddings (whose row 50256 is also the
    decoder-start input). Untied, with lm_head row 50256 set to zero, the stop token's logit is exactly 0
    for every hidden state, while the 50256 other logits are independent Gaussians (std 0.02 x |ln_f
    output| ~ 0.55) for any given state: one of them is above 0 except with probability 2^-50256."""
    if (out / "tokenizer.json").is_file():
        return
    torch.manual_seed(0)
    decoder = GPT2Config(
        add_cross_attention=True,
        tie_word_embeddings=False,
        bos_token_id=GPT2_STOP,
        eos_token_id=GPT2_STOP,
        pad_token_id=GPT2_STOP,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(ViTConfig(), decoder)
    for key in ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, key, GPT2_STOP)
    model = VisionEncoderDecoderModel(config=config).eval()
    assert model.decoder.lm_head.weight.data_ptr() != model.decoder.transformer.wte.weight.data_ptr(), "lm_head is tied"
    with torch.no_grad():
        model.decoder.lm_head.weight[GPT2_STOP] = 0.0
    model.generation_config = GenerationConfig(
        decoder_start_token_id=GPT2_STOP,
        bos_token_id=GPT2_STOP,
        eos_token_id=GPT2_STOP,
        pad_token_id=GPT2_STOP,
        max_length=MAX_LENGTH,
    )
    with torch.no_grad():
        generated = model.generate(pixel_values=torch.randn(4, 3, 224, 224), max_new_tokens=NEW_TOKENS)
    assert generated.shape[1] - 1 == NEW_TOKENS and (generated[:, 1:] != GPT2_STOP).all(), generated
    model.save_pretrained(out)
    # GenerationConfig.save_pretrained drops max_length (= its default, 20): write it out for the peer and capwatch.
    path = out / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "max_length": MAX_LENGTH}, indent=2) + "\n")
    processor = ViTImageProcessor(size={"height": 224, "width": 224}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor.save_pretrained(out)
    save_word_tokenizer(out, GPT2_VOCAB)  # last: marks the checkpoint complete


# ------------------------------------------------------------------------------------------ exports

OPTIMUM_EXPORT = """
import sys
from optimum.exporters.onnx import main_export
main_export(sys.argv[1], output=sys.argv[2], task="image-to-text-with-past", device="cpu", local_files_only=True)
"""


def export_once(out: Path, marker: str, command: list[str], after: Callable[[Path], None] | None = None) -> None:
    """Run an exporter (in a child process: the exports need GBs the benchmark should not keep) into
    OUT.partial, then rename it to OUT. Skipped when OUT/marker exists."""
    if (out / marker).is_file():
        return
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.time()
    print(f"exporting {out.name} ...", flush=True)
    subprocess.run([*command, str(partial)], check=True, cwd=REPO)
    if after:
        after(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    print(f"exported {out.name} in {time.time() - started:.0f} s", flush=True)


def export_all(work: Path) -> dict[str, Path]:
    blip, vit_gpt2 = work / "blip-base-random", work / "vit-gpt2-base-random"
    build_blip_base(blip)
    build_vit_gpt2_base(vit_gpt2)
    py = sys.executable
    exports = {
        "blip-older": (work / "blip-base-onnx", [TOOLS / "export_blip.py", "--no-cross-cache"], blip),
        "blip-cross": (work / "blip-base-onnx-cross", [TOOLS / "export_blip.py"], blip),
        "blip-int8": (work / "blip-base-onnx-cross-int8", [TOOLS / "export_blip.py", "--int8"], blip),
        "vg-cross": (work / "vit-gpt2-base-onnx-cross", [TOOLS / "export_vit_gpt2.py"], vit_gpt2),
        "vg-int8": (work / "vit-gpt2-base-onnx-cross-int8", [TOOLS / "export_vit_gpt2.py", "--int8"], vit_gpt2),
    }
    for out, (script, *flags), checkpoint in exports.values():
        export_once(out, "capwatch_export.json", [py, str(script), *flags, "--checkpoint", str(checkpoint), "--out"])

    def finish_optimum(out: Path) -> None:
        # Optimum does not copy a bare tokenizer.json (no tokenizer_config.json to load it by), and writes
        # generation_config.json without max_length: both servers need them. They read only the merged decoder.
        for name in ("tokenizer.json", "preprocessor_config.json", "generation_config.json"):
            shutil.copyfile(vit_gpt2 / name, out / name)
        for name in ("decoder_model.onnx", "decoder_with_past_model.onnx"):
            (out / name).unlink(missing_ok=True)
        (out / "bench_export_done").write_text("optimum.exporters.onnx.main_export, task image-to-text-with-past\n")

    # int4 decoder weights + int8 encoder, from the cross-cache exports (tools/quantize_export.py's defaults).
    quantize = TOOLS / "quantize_export.py"
    for key, source in (("blip-int4", "blip-cross"), ("vg-int4", "vg-cross")):
        out = work / f"{exports[source][0].name}-int4"
        export_once(out, "capwatch_export.json", [py, str(quantize), str(exports[source][0]), "--int4", "--out"])
        exports[key] = (out, [quantize], exports[source][0])

    optimum = work / "vit-gpt2-base-onnx-optimum"
    export_once(optimum, "bench_export_done", [py, "-c", OPTIMUM_EXPORT, str(vit_gpt2)], after=finish_optimum)
    # Exports cached from before tools/onnx_cleanup.py existed get its (exact) cleanup now; a no-op after.
    import onnx_cleanup

    for out, _, _ in exports.values():
        onnx_cleanup.clean_directory(out)
    paths = {key: out for key, (out, _, _) in exports.items()}
    paths.update({"blip": blip, "vg": vit_gpt2, "vg-optimum": optimum})
    return paths


# ------------------------------------------------------------------------------------------ servers


@dataclass
class Server:
    name: str
    kind: str  # "capwatch" or "peer"
    process: subprocess.Popen
    url: str
    log: Path
    health: dict = field(default_factory=dict)  # /health once ready (capwatch: layout, precision)
    runs: str = "concurrency 1"  # what it served, for the memory table
    memory: tuple[float, float] | None = None  # VmRSS, VmHWM in MiB, read after the server's runs

    @property
    def caption_url(self) -> str:
        # The peer has no max_new_tokens parameter: it stops after max_length - 1 = 19 tokens.
        return f"{self.url}/caption?max_new_tokens={NEW_TOKENS}" if self.kind == "capwatch" else f"{self.url}/caption"

    def read_memory(self) -> tuple[float, float]:
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        self.memory = (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)
        return self.memory

    def read_memory_and_stop(self) -> None:
        if self.process.poll() is None:
            self.read_memory()
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.loads(answer.read())


def start_capwatch(
    args, name: str, model: Path, *, workers: int = 1, max_batch_size: int = 8, join: bool = True
) -> Server:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    config = args.work / "serve" / f"{slug}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "service:\n"
        f"  workers: {workers}\n"
        f"  intra_op_threads: {args.threads}\n"
        f"  max_batch_size: {max_batch_size}\n"
        "  batch_wait_ms: 0\n"
        f"  join_running_batch: {'true' if join else 'false'}\n"
        "  queue_capacity: 64\n"
        "  request_timeout_s: 600\n"
    )
    port = free_port()
    log = config.with_suffix(".log")
    command = [str(args.binary), "serve", "--config", str(config), "--model", str(model), "--port", str(port)]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO)
    return Server(name, "capwatch", process, f"http://127.0.0.1:{port}", log)


def start_peer(args, name: str, model: Path) -> Server:
    port = free_port()
    log = args.work / "serve" / "peer.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MODEL_DIR": str(model.resolve()), "ORT_THREADS": str(args.threads)}
    command = [str(args.peer_python), "-m", "uvicorn", "py_peer_server:app", "--port", str(port)]
    command += ["--log-level", "warning"]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=args.peer_dir, env=env)
    return Server(name, "peer", process, f"http://127.0.0.1:{port}", log)


def wait_ready(servers: list[Server], timeout_s: float = 900) -> None:
    """Wait for /ready (capwatch: loaded and warmed up) or /health (peer); keep /health's answer."""
    deadline = time.time() + timeout_s
    for server in servers:
        path = "/ready" if server.kind == "capwatch" else "/health"
        while True:
            if server.process.poll() is not None:
                tail = server.log.read_text()[-2000:]
                raise RuntimeError(f"{server.name} exited with {server.process.returncode}; {server.log}:\n{tail}")
            try:
                get_json(f"{server.url}{path}")
                server.health = get_json(f"{server.url}/health")
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"{server.name} was not ready in {timeout_s:.0f} s (log: {server.log})")
                time.sleep(0.5)


# -------------------------------------------------------------------------------------- measurement

LOCK = threading.Lock()  # rows are timed from several client threads at concurrency > 1


@dataclass
class Answer:
    tokens: int
    caption: str
    batch_size: int | None = None  # capwatch: how many requests its batch held
    timings: dict | None = None  # capwatch: the server's timings_ms (encoder, decoder, ...)


@dataclass
class Row:
    """One line of a table: a callable that captions the model's test image once, and what it measured."""

    name: str
    call: Callable[[], Answer]
    ms: list[float] = field(default_factory=list)
    tokens: set[int] = field(default_factory=set)
    captions: set[str] = field(default_factory=set)
    batch_sizes: list[int] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0  # closed loops: the time they took, for captions/s
    c1: Row | None = None  # closed loops: the concurrency-1 row of the same model and server

    def timed(self) -> None:
        started = time.perf_counter()
        try:
            answer = self.call()
        except Exception as error:  # noqa: BLE001  (a failed request is reported, not fatal)
            with LOCK:
                self.failures.append(repr(error))
            return
        elapsed = (time.perf_counter() - started) * 1000
        with LOCK:
            self.ms.append(elapsed)
            self.tokens.add(answer.tokens)
            self.captions.add(answer.caption)
            if answer.batch_size is not None:
                self.batch_sizes.append(answer.batch_size)
            if answer.timings:
                self.timings.append(answer.timings)

    def p(self, q: float) -> float:
        return float(np.percentile(np.array(self.ms), q)) if self.ms else float("nan")

    def rate(self) -> float:
        return len(self.ms) / self.wall_s if self.wall_s else float("nan")


def post_caption(server: Server, body: bytes) -> Answer:
    request = urllib.request.Request(server.caption_url, data=body, headers={"content-type": "image/png"})
    with urllib.request.urlopen(request, timeout=900) as response:
        answer = json.loads(response.read())
    return Answer(answer["tokens"], answer["caption"], answer.get("batch_size"), answer.get("timings_ms"))


def server_row(name: str, server: Server, body: bytes, c1: Row | None = None) -> Row:
    return Row(name, lambda: post_caption(server, body), c1=c1)


def torch_row(model, pixel_values: torch.Tensor, tokenizer_json: Path, **generate_kwargs) -> Row:
    tokenizer = Tokenizer.from_file(str(tokenizer_json))

    def call() -> Answer:
        with torch.no_grad():
            out = model.generate(pixel_values=pixel_values, **generate_kwargs)[0, 1:].tolist()  # without the start
        return Answer(len(out), tokenizer.decode(out, skip_special_tokens=True).strip())

    return Row("PyTorch generate()", call)


def closed_loop(row: Row, clients: int, per_client: int) -> None:
    """`clients` threads, each sending its next request when the previous one answered, per_client each."""

    def client() -> None:
        for _ in range(per_client):
            row.timed()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    row.wall_s += time.perf_counter() - started


def test_png(size: int) -> tuple[Image.Image, bytes]:
    image = Image.fromarray((np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8))
    png = io.BytesIO()
    image.save(png, format="PNG")
    return image, png.getvalue()


# ------------------------------------------------------------------------------------------- phases


def start_c1_servers(args, paths: dict[str, Path]) -> dict[str, Server]:
    """Every concurrency-1 server, started together (1 worker x N threads, batching on: the default)."""
    servers = {
        "blip-older": start_capwatch(args, "BLIP-base, older layout", paths["blip-older"]),
        "blip-cross": start_capwatch(args, "BLIP-base, cross-cache", paths["blip-cross"]),
        "blip-int8": start_capwatch(args, "BLIP-base, cross-cache int8", paths["blip-int8"]),
        "blip-int4": start_capwatch(args, "BLIP-base, cross-cache int4 decoder + int8 encoder", paths["blip-int4"]),
        "vg-optimum": start_capwatch(args, "ViT-GPT2, today's layout (Optimum)", paths["vg-optimum"]),
        "vg-cross": start_capwatch(args, "ViT-GPT2, cross-cache", paths["vg-cross"]),
        "vg-int8": start_capwatch(args, "ViT-GPT2, cross-cache int8", paths["vg-int8"]),
        "vg-int4": start_capwatch(args, "ViT-GPT2, cross-cache int4 decoder + int8 encoder", paths["vg-int4"]),
    }
    if not args.skip_peer:
        servers["peer"] = start_peer(args, "peer (FastAPI + onnxruntime), Optimum export", paths["vg-optimum"])
    return servers


def c1_rows(args, paths: dict[str, Path], servers: dict[str, Server], pngs: dict) -> tuple[dict, dict]:
    """The concurrency-1 rows of each model, by key; PyTorch last."""
    (blip_image, blip_png), (vg_image, vg_png) = pngs["blip"], pngs["vg"]
    blip_model = BlipForConditionalGeneration.from_pretrained(paths["blip"]).eval()
    blip_pixels = BlipImageProcessor.from_pretrained(paths["blip"])(blip_image, return_tensors="pt")["pixel_values"]
    vg_model = VisionEncoderDecoderModel.from_pretrained(paths["vg"]).eval()
    vg_pixels = ViTImageProcessor.from_pretrained(paths["vg"])(vg_image, return_tensors="pt")["pixel_values"]
    blip = {
        "older": server_row("capwatch, older layout", servers["blip-older"], blip_png),
        "cross": server_row("capwatch, cross-cache layout", servers["blip-cross"], blip_png),
        "int8": server_row("capwatch, cross-cache layout, int8", servers["blip-int8"], blip_png),
        "int4": server_row("capwatch, cross-cache layout, int4 decoder + int8 encoder", servers["blip-int4"], blip_png),
        # BLIP's generate() counts max_length in new tokens + 1, as capwatch's older code did: 19 new tokens.
        "torch": torch_row(blip_model, blip_pixels, paths["blip"] / "tokenizer.json", max_length=MAX_LENGTH),
    }
    vg = {
        "optimum": server_row("capwatch, today's layout (Optimum merged export)", servers["vg-optimum"], vg_png),
        "cross": server_row("capwatch, cross-cache layout", servers["vg-cross"], vg_png),
        "int8": server_row("capwatch, cross-cache layout, int8", servers["vg-int8"], vg_png),
        "int4": server_row("capwatch, cross-cache layout, int4 decoder + int8 encoder", servers["vg-int4"], vg_png),
    }
    if not args.skip_peer:
        vg["peer"] = server_row("peer (FastAPI + onnxruntime), Optimum merged export", servers["peer"], vg_png)
    # generate() treats max_length == 20 as "unset" and adds the prompt length: ask for the new tokens instead.
    vg["torch"] = torch_row(vg_model, vg_pixels, paths["vg"] / "tokenizer.json", max_new_tokens=NEW_TOKENS)
    return blip, vg


def run_concurrency_1(rows: list[Row], rounds: int, log: Callable[[str], None]) -> None:
    for row in rows:
        row.call()  # warm-up; a failure here is fatal
    for round_ in range(rounds):
        for row in rows:
            row.timed()
        log(f"concurrency 1: round {round_ + 1}/{rounds} done")


def c8_rows(args, paths, servers: dict[str, Server], blip: dict, vg: dict, pngs: dict) -> list[Row]:
    """The closed-loop rows. Batching off needs servers of its own (added to `servers`); on reuses the
    concurrency-1 servers, whose concurrency-1 P50 is the reference either way (one request at a time never
    batches)."""
    vg_png, blip_png = pngs["vg"][1], pngs["blip"][1]
    servers["vg-cross-off"] = start_capwatch(
        args, "ViT-GPT2, cross-cache, batching off", paths["vg-cross"], max_batch_size=1
    )
    servers["vg-cross-nojoin-off"] = start_capwatch(
        args, "ViT-GPT2, cross-cache, batches start together", paths["vg-cross"], join=False
    )
    if not args.skip_blip_c8:
        servers["blip-cross-off"] = start_capwatch(
            args, "BLIP-base, cross-cache, batching off", paths["blip-cross"], max_batch_size=1
        )
        servers["blip-cross-nojoin-off"] = start_capwatch(
            args, "BLIP-base, cross-cache, batches start together", paths["blip-cross"], join=False
        )
    wait_ready([s for key, s in servers.items() if key.endswith("-off")])
    plan = [
        ("ViT-GPT2 cross-cache: capwatch, continuous batching (max_batch_size 8)", "vg-cross", vg_png, vg["cross"]),
        ("ViT-GPT2 cross-cache: capwatch, batches start together (join_running_batch false)", "vg-cross-nojoin-off", vg_png, vg["cross"]),
        ("ViT-GPT2 cross-cache: capwatch, batching off (max_batch_size 1)", "vg-cross-off", vg_png, vg["cross"]),
        ("ViT-GPT2 cross-cache int4 + int8 encoder: capwatch, continuous batching (max_batch_size 8)", "vg-int4", vg_png, vg["int4"]),
    ]  # fmt: skip
    if not args.skip_peer:
        plan.append(("ViT-GPT2 Optimum export: peer (FastAPI + onnxruntime)", "peer", vg_png, vg["peer"]))
    if not args.skip_blip_c8:
        plan += [
            ("BLIP-base cross-cache: capwatch, continuous batching (max_batch_size 8)", "blip-cross", blip_png, blip["cross"]),
            ("BLIP-base cross-cache: capwatch, batches start together (join_running_batch false)", "blip-cross-nojoin-off", blip_png, blip["cross"]),
            ("BLIP-base cross-cache: capwatch, batching off (max_batch_size 1)", "blip-cross-off", blip_png, blip["cross"]),
            ("BLIP-base cross-cache int4 + int8 encoder: capwatch, continuous batching (max_batch_size 8)", "blip-int4", blip_png, blip["int4"]),
        ]  # fmt: skip
    rows = []
    for name, key, png, c1 in plan:
        servers[key].runs = f"concurrency {'' if key.endswith('-off') else '1 and '}{args.clients}"
        rows.append(server_row(name, servers[key], png, c1=c1))
    return rows


def run_closed_loops(rows: list[Row], clients: int, rounds: int, passes: int, log: Callable[[str], None]) -> None:
    """clients x rounds requests per row, in `passes` passes that go through the rows in turn."""
    for row in rows:
        closed_loop(Row(row.name, row.call), clients, 1)  # untimed burst: the server sees every batch shape once
    per_client = [rounds // passes + (i < rounds % passes) for i in range(passes)]
    for pass_, count in enumerate(per_client):
        for row in rows:
            closed_loop(row, clients, count)
        log(f"concurrency {clients}: pass {pass_ + 1}/{passes} done")


def weights_sharing(args, model: Path, body: bytes) -> dict[int, tuple[float, float]]:
    """VmRSS / VmHWM of BLIP-base cross-cache served by 1 and by 2 workers (N threads each), one server at a
    time, after 3 concurrent captions (max_batch_size 1, so that both workers caption)."""
    result = {}
    for workers in (1, 2):
        name = f"BLIP-base cross-cache, {workers} worker{'s' if workers > 1 else ''}"
        server = start_capwatch(args, name, model, workers=workers, max_batch_size=1)
        try:
            wait_ready([server])
            row = server_row(server.name, server, body)
            closed_loop(row, clients=3, per_client=1)
            if row.failures:
                raise RuntimeError(f"{server.name}: {row.failures}")
            result[workers] = server.read_memory()
        finally:
            server.stop()
    return result


# ------------------------------------------------------------------------------------------- report


def machine_header(args, servers: list[Server]) -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_gib = int(next(line.split()[1] for line in meminfo if line.startswith("MemTotal"))) / 1024**2
    import onnxruntime
    import optimum.version
    import transformers

    peer_ort = "not run"
    if not args.skip_peer:
        probe = [str(args.peer_python), "-c", "import onnxruntime; print(onnxruntime.__version__)"]
        peer_ort = subprocess.run(probe, capture_output=True, text=True, check=False).stdout.strip() or "?"
    ort_stamp = REPO / ".ort" / "VERSION"
    capwatch_ort = ort_stamp.read_text().strip() if ort_stamp.is_file() else "?"
    git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, cwd=REPO).stdout.strip()  # noqa: E731
    dirty = " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    version = next((s.health.get("version") for s in servers if s.kind == "capwatch" and s.health), "?")
    built = datetime.datetime.fromtimestamp(args.binary.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    c = args.clients
    return [
        f"# bench-scale, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"- Machine: {cpu}, {os.cpu_count()} logical CPUs, {mem_gib:.0f} GiB RAM; load average before the run "
        f"{args.load_before} (1 / 5 / 15 min).",
        f"- capwatch {version} ({args.binary}, built {built}; repository at {git('rev-parse', '--short', 'HEAD')}"
        f"{dirty}), ONNX Runtime {capwatch_ort}. Peer: {args.peer_dir / 'py_peer_server.py'}, onnxruntime {peer_ort}.",
        f"- PyTorch {torch.__version__}, transformers {transformers.__version__}, "
        f"optimum {optimum.version.__version__}, onnxruntime {onnxruntime.__version__} (exports, tools/.venv).",
        f"- Threads: N = {args.threads}. capwatch: 1 worker x N ONNX Runtime intra-op threads unless a row says "
        "otherwise, max_batch_size 8 unless a row says otherwise, batch_wait_ms 0; peer: ORT_THREADS = N; "
        "PyTorch: torch.set_num_threads(N).",
        f"- Method: random-weight checkpoints built from configs; every caption is {NEW_TOKENS} new tokens (the stop "
        "token is unreachable; checked on every answer). Servers get a raw PNG over loopback (BLIP 384x384, "
        "ViT-GPT2 224x224); latency is measured by the client, from request to parsed answer. PyTorch rows time "
        "generate() alone on preprocessed pixels (no HTTP, no image decoding or preprocessing). Concurrency 1: one "
        f"warm-up call per row, then {args.rounds} rounds, every row once per round, interleaved. Concurrency {c}: "
        f"a closed loop of {c} client threads (each sends its next request when its previous one answered), "
        f"{c} x {args.rounds} requests per row in {args.c8_passes} passes interleaved between the rows, after an "
        f"untimed burst of {c} per row; captions/s = answers / time the loops took. Percentiles: numpy, linear "
        "interpolation. Memory: VmRSS / VmHWM from /proc/PID/status after the server's runs. Client threads, "
        "servers and PyTorch share the same CPUs. int8 weights are expected to change some captions.",
        "",
    ]


def fmt_ratio(a: float, b: float) -> str:
    return "–" if np.isnan(a) or np.isnan(b) or not b else f"{a / b:.2f}×"


def tokens_cell(row: Row) -> str:
    cell = ", ".join(str(t) for t in sorted(row.tokens)) or "–"
    return cell if row.tokens == {NEW_TOKENS} else f"**{cell}**"


def c1_table(title: str, rows: dict[str, Row], baselines: dict[str, str]) -> list[str]:
    """P50 / P95 at concurrency 1, against PyTorch (the "torch" row) and the rows named in `baselines`."""
    reference = rows["torch"]
    ref_caption = next(iter(reference.captions), None)
    header = "| what | new tokens | caption = PyTorch's | P50 ms | P95 ms | P50 vs PyTorch |"
    header += "".join(f" P50 vs {label} |" for label in baselines)
    lines = [f"### {title}, concurrency 1", "", header, "|" + "---|" * (6 + len(baselines))]
    for row in rows.values():
        same = "–" if row is reference else ("yes" if row.captions == {ref_caption} else "no")
        failed = f" ({len(row.failures)} failed)" if row.failures else ""
        line = f"| {row.name}{failed} | {tokens_cell(row)} | {same} | {row.p(50):.0f} | {row.p(95):.0f} "
        line += f"| {fmt_ratio(row.p(50), reference.p(50))} |"
        line += "".join(f" {fmt_ratio(row.p(50), rows[key].p(50))} |" for key in baselines.values())
        lines.append(line)
    return [*lines, ""]


def c8_table(rows: list[Row], clients: int, peer: Row | None) -> list[str]:
    lines = [
        f"### Concurrency {clients} (closed loop)",
        "",
        "| what | answers / failed | new tokens | captions/s | P50 ms | P95 ms | P95 / concurrency-1 P50 | mean batch size "
        "| captions/s vs peer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        batch = f"{np.mean(row.batch_sizes):.1f}" if row.batch_sizes else "–"
        lines.append(
            f"| {row.name} | {len(row.ms)} / {len(row.failures)} | {tokens_cell(row)} | {row.rate():.2f} "
            f"| {row.p(50):.0f} | {row.p(95):.0f} | {fmt_ratio(row.p(95), row.c1.p(50))} | {batch} "
            f"| {fmt_ratio(row.rate(), peer.rate()) if peer else '–'} |"
        )
    return [*lines, ""]


def memory_table(servers: list[Server], sharing: dict[int, tuple[float, float]]) -> list[str]:
    lines = [
        "### Server memory",
        "",
        "| server | layout, precision | runs | VmRSS MiB | VmHWM MiB |",
        "|---|---|---|---|---|",
    ]
    for s in servers:
        if s.memory:
            layout = "Optimum merged, fp32"
            if s.kind == "capwatch":
                layout = f"{s.health['layout']}, {s.health['precision']}"
            lines.append(f"| {s.name} | {layout} | {s.runs} | {s.memory[0]:.0f} | {s.memory[1]:.0f} |")
    lines += [
        "",
        "Weights shared between workers: BLIP-base cross-cache, 1 worker vs 2 workers (N threads each, "
        "max_batch_size 1), one server at a time with no other running, after 3 concurrent captions:",
        "",
        "| workers | VmRSS MiB | VmHWM MiB |",
        "|---|---|---|",
        *(f"| {workers} | {rss:.0f} | {hwm:.0f} |" for workers, (rss, hwm) in sharing.items()),
        f"| 2 / 1 | {sharing[2][0] / sharing[1][0]:.2f}× | {sharing[2][1] / sharing[1][1]:.2f}× |",
        "",
    ]
    return lines


def notes(rows: list[Row]) -> list[str]:
    """What should not happen: failed requests, other token counts, captions that change between calls."""
    found = [f"- {r.name}: {len(r.failures)} failed, e.g. {r.failures[0]}" for r in rows if r.failures]
    found += [f"- {r.name}: new tokens {sorted(r.tokens)}, not {NEW_TOKENS}" for r in rows if r.tokens != {NEW_TOKENS}]
    found += [f"- {r.name}: {len(r.captions)} different captions for one image" for r in rows if len(r.captions) > 1]
    return ["### Notes", "", *found, ""] if found else []


def encoder_gflop(model_dir: Path) -> tuple[float, float]:
    """GFLOP (2 x multiply-adds) of one image through the vision encoder: (the MatMuls with weights — patch
    embedding, Q/K/V/output projections, MLP, and in a cross-cache layout the decoder's cross-attention K/V
    computed from the image — and the attention's activation x activation MatMuls (scores and weighted sum),
    which stay fp32 in the int8 graphs)."""
    config = json.loads((model_dir / "config.json").read_text())
    vision = config.get("vision_config") or config.get("encoder") or {}
    text = config.get("text_config") or config.get("decoder") or {}
    hidden, mlp = vision.get("hidden_size", 768), vision.get("intermediate_size", 3072)
    layers, image, patch = vision.get("num_hidden_layers", 12), vision.get("image_size", 224), vision.get("patch_size", 16)
    tokens = (image // patch) ** 2 + 1
    weights = 2 * (tokens - 1) * hidden * 3 * patch * patch
    weights += layers * (2 * tokens * hidden * 4 * hidden + 2 * 2 * tokens * hidden * mlp)
    attention = layers * 2 * 2 * tokens * tokens * hidden
    record_path = model_dir / "capwatch_export.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if "cross-cache" in str(record.get("layout", "")):
        text_layers = text.get("num_hidden_layers", text.get("n_layer", 12))
        text_hidden = text.get("hidden_size", text.get("n_embd", 768))
        weights += text_layers * 2 * 2 * tokens * hidden * text_hidden
    return weights / 1e9, attention / 1e9


WEIGHT_READERS = {"MatMul", "Gemm", "MatMulInteger", "MatMulNBits", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def decoder_step_mb(model_dir: Path) -> float:
    """Bytes read at every decoding step: the weights of the decoder's matrix products (not the embedding
    tables, of which a step reads one row) and, in a cross-cache layout, the cross-attention keys/values."""
    import onnx

    names = [n for n in ("text_decoder.onnx", "decoder_model_merged.onnx") if (model_dir / n).is_file()]
    model = onnx.load(str(model_dir / names[0]), load_external_data=False)
    sizes = {}
    for init in model.graph.initializer:
        count = int(np.prod(init.dims)) if init.dims else 1
        sizes[init.name] = count * onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
    read = set()

    def visit(graph) -> None:
        for node in graph.node:
            if node.op_type in WEIGHT_READERS:
                read.update(i for i in node.input[1:] if i in sizes)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)

    visit(model.graph)
    total = sum(sizes[name] for name in read)
    config = json.loads((model_dir / "config.json").read_text())
    vision = config.get("vision_config") or config.get("encoder") or {}
    text = config.get("text_config") or config.get("decoder") or {}
    if any(i.name.startswith("cross_key_values.") for i in model.graph.input):
        tokens = (vision.get("image_size", 224) // vision.get("patch_size", 16)) ** 2 + 1
        layers = text.get("num_hidden_layers", text.get("n_layer", 12))
        total += layers * 2 * tokens * text.get("hidden_size", text.get("n_embd", 768)) * 4
    return total / 1e6


def stage_table(args, paths: dict[str, Path], blip: dict, vg: dict, roofline: dict) -> list[str]:
    """Each cross-cache row's encoder and decoder step (server timings, medians over the concurrency-1 calls)
    as a ratio to its floor: FLOPs / GEMM peak of its precision, bytes / the fp32 weight-streaming rate."""
    stream = roofline["stream"]["fp32"]["gb_per_s"]
    peak = {p: roofline["gemm"][p]["gops_per_s"] for p in ("fp32", "int8")}
    lines = [
        "### Every stage against its floor (concurrency 1, server timings, medians)",
        "",
        f"Floors from the roofline above: encoder = GFLOP / GEMM peak of its precision (fp32 {peak['fp32']:.0f} "
        f"GFLOP/s, int8 {peak['int8']:.0f} GOP/s; in the int8 encoders only the MatMuls with weights are int8, the "
        "attention's activation MatMuls stay fp32 and are counted at the fp32 peak); decoder step = MB read per "
        f"step / the fp32 weight-streaming rate ({stream:.1f} GB/s), the memory floor whatever the kernel.",
        "",
        "| model | precision | encoder ms | GFLOP | floor ms | × floor | decoder ms/step | MB/step | floor ms | × floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, rows, keys in (("BLIP-base", blip, ("blip-cross", "blip-int8", "blip-int4")), ("ViT-GPT2-base", vg, ("vg-cross", "vg-int8", "vg-int4"))):
        for key, row_key in zip(keys, ("cross", "int8", "int4")):
            row = rows[row_key]
            if not row.timings:
                continue
            directory = paths[key]
            encoder_ms = float(np.median([t["encoder"] for t in row.timings]))
            step_ms = float(np.median([t["decoder"] for t in row.timings])) / NEW_TOKENS
            weight_gflop, attention_gflop = encoder_gflop(directory)
            gflop = weight_gflop + attention_gflop
            weight_peak = peak["fp32" if row_key == "cross" else "int8"]
            encoder_floor = (weight_gflop / weight_peak + attention_gflop / peak["fp32"]) * 1000
            mb = decoder_step_mb(directory)
            step_floor = mb / 1000 / stream * 1000
            label = {"cross": "fp32", "int8": "int8", "int4": "int4 decoder, int8 encoder"}[row_key]
            lines.append(
                f"| {model} | {label} | {encoder_ms:.0f} | {gflop:.0f} | {encoder_floor:.0f} | {encoder_ms / encoder_floor:.1f}× "
                f"| {step_ms:.2f} | {mb:.0f} | {step_floor:.2f} | {step_ms / step_floor:.1f}× |"
            )
    return [*lines, ""]


def targets_table(args, blip: dict, vg: dict, c8: list[Row]) -> list[str]:
    by_name = {row.name: row for row in c8}

    def c8_rate(prefix: str) -> float:
        row = by_name.get(prefix)
        return row.rate() if row else float("nan")

    vg_int4 = c8_rate("ViT-GPT2 cross-cache int4 + int8 encoder: capwatch, continuous batching (max_batch_size 8)")
    vg_fp32 = c8_rate("ViT-GPT2 cross-cache: capwatch, continuous batching (max_batch_size 8)")
    blip_int4 = c8_rate("BLIP-base cross-cache int4 + int8 encoder: capwatch, continuous batching (max_batch_size 8)")
    blip_fp32 = c8_rate("BLIP-base cross-cache: capwatch, continuous batching (max_batch_size 8)")
    verdict = lambda ok: "met" if ok else "not met"  # noqa: E731
    blip_ratio = blip["int4"].p(50) / blip["torch"].p(50)
    lines = [
        "### Low-precision targets (this run)",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| BLIP-base int4 + int8 encoder P50 ≤ 1/5 of PyTorch fp32 generate() | {blip_ratio:.2f}× ({blip['int4'].p(50):.0f} vs {blip['torch'].p(50):.0f} ms) | {verdict(blip_ratio <= 0.2)} |",
    ]
    if "peer" in vg:
        vg_ratio = vg["int4"].p(50) / vg["peer"].p(50)
        lines.append(
            f"| ViT-GPT2-base int4 + int8 encoder P50 ≤ 1/5 of the FastAPI peer | {vg_ratio:.2f}× ({vg['int4'].p(50):.0f} vs {vg['peer'].p(50):.0f} ms) | {verdict(vg_ratio <= 0.2)} |"
        )
    for model, int4, fp32 in (("ViT-GPT2-base", vg_int4, vg_fp32), ("BLIP-base", blip_int4, blip_fp32)):
        if not np.isnan(int4) and not np.isnan(fp32):
            lines.append(
                f"| {model} concurrency {args.clients} with batching: int4 throughput ≥ 2× fp32 | {int4 / fp32:.2f}× ({int4:.2f} vs {fp32:.2f} captions/s) | {verdict(int4 / fp32 >= 2)} |"
            )
    return [*lines, ""]


# --------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / ".tmp" / "bench-scale", help="models, configs, logs")
    parser.add_argument("--out", type=Path, help="Markdown results file (default: WORK/results.md)")
    parser.add_argument("--rounds", type=int, default=8, help="concurrency 1: rounds; closed loops: clients x rounds")
    parser.add_argument("--threads", type=int, default=2, help="N: ONNX Runtime / PyTorch threads")
    parser.add_argument("--clients", type=int, default=8, help="concurrency of the closed-loop rows")
    parser.add_argument("--c8-passes", type=int, default=2, help="closed loops: passes through the rows")
    parser.add_argument("--skip-blip-c8", action="store_true", help="no BLIP-base closed-loop rows")
    parser.add_argument("--skip-peer", action="store_true", help="no FastAPI peer rows")
    parser.add_argument("--binary", type=Path, default=REPO / "target" / "release" / "capwatch")
    parser.add_argument("--peer-dir", type=Path, default=REPO.parent / "shared" / "peers", help="has py_peer_server.py")
    parser.add_argument("--peer-python", type=Path, default=Path("/tmp/peervenv/bin/python"), help="the peer's venv")
    args = parser.parse_args()
    args.work = args.work.resolve()
    args.out = args.out or args.work / "results.md"
    args.c8_passes = max(1, min(args.c8_passes, args.rounds))
    if not args.binary.is_file():
        parser.error(f"{args.binary} is missing: cargo build --release")
    if not args.skip_peer and not ((args.peer_dir / "py_peer_server.py").is_file() and args.peer_python.is_file()):
        parser.error(f"no peer ({args.peer_dir}/py_peer_server.py, {args.peer_python}): see its docstring, or --skip-peer")
    return args


def main() -> int:
    args = parse_args()
    args.load_before = " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    began = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - began:5.0f} s] {message}", flush=True)

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    paths = export_all(args.work)
    pngs = {"blip": test_png(384), "vg": test_png(224)}
    # The machine's floors (tools/bench_roofline.py), measured in this run before any server starts and again
    # after the last one stopped; each floor is the better of the two.
    roofline = [bench_roofline.measure(args.threads, 15, args.work / "roofline", log=log)]

    servers = start_c1_servers(args, paths)
    try:
        wait_ready(list(servers.values()))
        log("servers ready")
        blip, vg = c1_rows(args, paths, servers, pngs)
        run_concurrency_1([*blip.values(), *vg.values()], args.rounds, log)
        for key in ("blip-older", "blip-int8", "vg-optimum", "vg-int8"):  # not needed at concurrency 8
            servers[key].read_memory_and_stop()
        c8 = c8_rows(args, paths, servers, blip, vg, pngs)
        run_closed_loops(c8, args.clients, args.rounds, args.c8_passes, log)
        for server in servers.values():
            server.read_memory_and_stop()
    finally:
        for server in servers.values():
            server.stop()
    sharing = weights_sharing(args, paths["blip-cross"], pngs["blip"][1])
    log("weights sharing measured")
    roofline = bench_roofline.best_of([*roofline, bench_roofline.measure(args.threads, 15, args.work / "roofline", log=log)])
    (args.work / "roofline" / "roofline.json").write_text(json.dumps(roofline, indent=2) + "\n")
    floors = stage_table(args, paths, blip, vg, roofline)

    vg_baselines = {"today's layout": "optimum", **({} if args.skip_peer else {"peer": "peer"})}
    peer_c8 = None if args.skip_peer else next(r for r in c8 if "peer" in r.name)
    lines = [
        *machine_header(args, list(servers.values())),
        *c1_table("BLIP-base", blip, {"older layout": "older"}),
        *c1_table("ViT-GPT2-base", vg, vg_baselines),
        *c8_table(c8, args.clients, peer_c8),
        *memory_table(list(servers.values()), sharing),
        bench_roofline.markdown(roofline),
        *floors,
        *targets_table(args, blip, vg, c8),
        *notes([*blip.values(), *vg.values(), *c8]),
        f"Run time: {(time.time() - began) / 60:.1f} min (exports included when they were not cached).",
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
