#!/usr/bin/env python3
"""`make bench-roofline`: what this machine can do at best through ONNX Runtime, so that every stage of a
caption can be stated as a ratio to its floor.

Measured with the onnxruntime of tools/requirements.txt, CPU execution provider, --threads intra-op threads
(capwatch's default: one worker with 2 threads), graphs built here with random weights:

  - weight streaming at batch 1: a chain of MatMuls [1, D] x [D, D] over >= 500 MB of weights, run again and
    again; the weights do not fit any cache, so the time is the time to read them. Three chains, one per
    precision capwatch serves: fp32 MatMul (D 2048, 32 layers, 537 MB), int8 as quantize_dynamic writes it
    (DynamicQuantizeLinear + MatMulInteger, D 4096, 32 layers, 537 MB), int4 as MatMulNBits (block 32,
    accuracy level 4; D 8192, 16 layers, 537 MB of packed weights + 134 MB of fp32 scales). The fp32 chain's
    rate is the memory floor; the int8/int4 rates say how close their kernels come to it.
  - GEMM throughput: MatMul 1024 x 1024 x 1024 in fp32, and MatMulInteger (uint8 x int8, the kernel the
    int8 encoder runs) at the same size, counted as 2*M*N*K operations.

Each rate comes from the fastest of --runs timed runs after 3 warm-ups (a floor is the best the machine
does; the median is printed beside it). Writes WORK/roofline.json (read by
tools/bench_scale.py for its floor ratios) and WORK/roofline.md, and prints the table.

    tools/.venv/bin/python tools/bench_roofline.py [--threads 2] [--runs 15] [--work .tmp/bench-roofline]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 21
IR_VERSION = 10  # onnxruntime 1.31 refuses 14, which recent onnx writes by default
MB = 1e6


def _model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "roofline", inputs, outputs, initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = IR_VERSION
    return model


def fp32_chain(width: int, layers: int, rng) -> tuple[onnx.ModelProto, int]:
    nodes, inits = [], []
    name = "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width), dtype=np.float32) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [name, f"w{i}"], [f"h{i}"]))
        name = f"h{i}"
    nodes.append(helper.make_node("Identity", [name], ["y"]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])
    return _model(nodes, [x], [y], inits), layers * width * width * 4


def int8_chain(width: int, layers: int, rng) -> tuple[onnx.ModelProto, int]:
    """The pattern quantize_dynamic writes for a MatMul with a constant weight."""
    nodes, inits = [], []
    name = "x"
    for i in range(layers):
        w = rng.integers(-127, 128, (width, width), dtype=np.int8)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.array(0, np.int8), f"wz{i}"),
            numpy_helper.from_array(np.array(1.0 / (127 * np.sqrt(width)), np.float32), f"ws{i}"),
        ]
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [name], [f"q{i}", f"qs{i}", f"qz{i}"]),
            helper.make_node("MatMulInteger", [f"q{i}", f"w{i}", f"qz{i}", f"wz{i}"], [f"i{i}"]),
            helper.make_node("Cast", [f"i{i}"], [f"f{i}"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"qs{i}", f"ws{i}"], [f"s{i}"]),
            helper.make_node("Mul", [f"f{i}", f"s{i}"], [f"h{i}"]),
        ]
        name = f"h{i}"
    nodes.append(helper.make_node("Identity", [name], ["y"]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])
    return _model(nodes, [x], [y], inits), layers * width * width


def int4_chain(width: int, layers: int, rng, block: int = 32, accuracy_level: int = 4) -> tuple[onnx.ModelProto, int]:
    """MatMulNBits as onnxruntime's MatMulNBitsQuantizer writes it (symmetric: no zero points)."""
    nodes, inits = [], []
    name = "x"
    blocks = width // block
    for i in range(layers):
        packed = rng.integers(0, 256, (width, blocks, block // 2), dtype=np.uint8)
        scales = np.full((width * blocks,), 1.0 / (8 * np.sqrt(width)), np.float32)
        inits += [numpy_helper.from_array(packed, f"w{i}"), numpy_helper.from_array(scales, f"s{i}")]
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [name, f"w{i}", f"s{i}"],
                [f"h{i}"],
                domain="com.microsoft",
                K=width,
                N=width,
                bits=4,
                block_size=block,
                accuracy_level=accuracy_level,
            )
        )
        name = f"h{i}"
    nodes.append(helper.make_node("Identity", [name], ["y"]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])
    return _model(nodes, [x], [y], inits), layers * (width * width // 2 + width * blocks * 4)


def gemm(size: int, int8: bool, rng) -> tuple[onnx.ModelProto, float]:
    if int8:
        w = rng.integers(-127, 128, (size, size), dtype=np.int8)
        nodes = [helper.make_node("MatMulInteger", ["x", "w"], ["y"])]
        x = helper.make_tensor_value_info("x", TensorProto.UINT8, [size, size])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])
    else:
        w = rng.standard_normal((size, size), dtype=np.float32)
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])
    return _model(nodes, [x], [y], [numpy_helper.from_array(w, "w")]), 2.0 * size**3


def session(model: onnx.ModelProto, path: Path, threads: int) -> ort.InferenceSession:
    onnx.save(model, str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_ms(run, runs: int) -> tuple[float, float]:
    """(fastest, median) of `runs` timed runs after 3 warm-ups. A floor is what the machine can do at best,
    so rates come from the fastest run; the median says how far a typical run is from it (shared VMs
    move by 2x from one minute to the next)."""
    for _ in range(3):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def measure(threads: int, runs: int, work: Path, log=print) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    result = {
        "machine": f"{cpu_name()}, {len(__import__('os').sched_getaffinity(0))} CPUs",
        "date": datetime.date.today().isoformat(),
        "onnxruntime": ort.__version__,
        "threads": threads,
        "stream": {},
        "gemm": {},
    }
    chains = {
        "fp32": lambda: fp32_chain(2048, 32, rng),
        "int8": lambda: int8_chain(4096, 32, rng),
        "int4": lambda: int4_chain(8192, 16, rng),
    }
    for precision, build in chains.items():
        model, weight_bytes = build()
        sess = session(model, work / f"stream_{precision}.onnx", threads)
        del model
        width = sess.get_inputs()[0].shape[1]
        x = rng.standard_normal((1, width), dtype=np.float32)
        ms, median = time_ms(lambda: sess.run(None, {"x": x}), runs)
        rate = weight_bytes / (ms / 1000) / 1e9
        result["stream"][precision] = {
            "weight_bytes": weight_bytes,
            "ms": round(ms, 3),
            "median_ms": round(median, 3),
            "gb_per_s": round(rate, 2),
        }
        log(f"stream {precision}: {weight_bytes / MB:.0f} MB in {ms:.2f} ms (median {median:.2f}) = {rate:.1f} GB/s")
        del sess
        (work / f"stream_{precision}.onnx").unlink()
    for precision in ("fp32", "int8"):
        model, ops = gemm(1024, precision == "int8", rng)
        sess = session(model, work / f"gemm_{precision}.onnx", threads)
        if precision == "int8":
            x = rng.integers(0, 256, (1024, 1024), dtype=np.uint8)
        else:
            x = rng.standard_normal((1024, 1024), dtype=np.float32)
        ms, median = time_ms(lambda: sess.run(None, {"x": x}), runs)
        rate = ops / (ms / 1000) / 1e9
        result["gemm"][precision] = {"ops": ops, "ms": round(ms, 3), "median_ms": round(median, 3), "gops_per_s": round(rate, 1)}
        log(f"gemm {precision}: 1024^3 in {ms:.2f} ms = {rate:.0f} G{'FL' if precision == 'fp32' else ''}OP/s")
        (work / f"gemm_{precision}.onnx").unlink()
    return result


def best_of(results: list[dict]) -> dict:
    """One result from several measurements of the same machine (a bench run measures before and after its
    servers): each floor from the measurement that did best, with every measurement's rate kept under "rates".
    A neighbour on a shared host can halve a rate for a minute; a floor is what the machine can do."""
    best = dict(results[0], stream={}, gemm={}, measurements=len(results))
    for section, rate in (("stream", "gb_per_s"), ("gemm", "gops_per_s")):
        for name in results[0][section]:
            entries = [r[section][name] for r in results]
            best[section][name] = dict(max(entries, key=lambda e: e[rate]), rates=[e[rate] for e in entries])
    return best


def markdown(result: dict) -> str:
    several = result.get("measurements", 1) > 1
    lines = [
        f"### Roofline of this machine ({result['machine']}; onnxruntime {result['onnxruntime']}, "
        f"{result['threads']} threads; {result['date']})",
        "",
        "| what | size | fastest | median | rate (fastest) |" + (" each measurement |" if several else ""),
        "|---|---|---:|---:|---:|" + ("---:|" if several else ""),
    ]

    def each(entry: dict, digits: int) -> str:
        return (" " + " · ".join(f"{r:.{digits}f}" for r in entry["rates"]) + " |") if several else ""

    for precision, s in result["stream"].items():
        lines.append(
            f"| weight streaming, {precision} chain at batch 1 | {s['weight_bytes'] / MB:.0f} MB | {s['ms']:.2f} ms "
            f"| {s['median_ms']:.2f} ms | {s['gb_per_s']:.1f} GB/s |" + each(s, 1)
        )
    for precision, g in result["gemm"].items():
        unit = "GFLOP/s" if precision == "fp32" else "GOP/s"
        lines.append(
            f"| GEMM {precision} 1024³ | {g['ops'] / 1e9:.1f} G | {g['ms']:.2f} ms | {g['median_ms']:.2f} ms "
            f"| {g['gops_per_s']:.0f} {unit} |" + each(g, 0)
        )
    if several:
        lines += ["", f"Each floor is the best of {result['measurements']} measurements in this run (before the "
                  "servers started and after they stopped); the last column gives every one of them."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (capwatch's default: 2)")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--work", type=Path, default=Path(".tmp/bench-roofline"))
    args = parser.parse_args()
    result = measure(args.threads, args.runs, args.work)
    (args.work / "roofline.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.work / "roofline.md").write_text(text)
    print()
    print(text)
    print(f"wrote {args.work / 'roofline.json'} and {args.work / 'roofline.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
