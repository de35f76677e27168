#!/usr/bin/env python3
"""Write an int8 or int4 copy of a capwatch model directory (quantized weights, same layout).

    tools/.venv/bin/python tools/quantize_export.py models/default --out .tmp/default-int8
    tools/.venv/bin/python tools/quantize_export.py models/default --int4 --out .tmp/default-int4

SRC is any directory capwatch loads: an Optimum VisionEncoderDecoder export (`encoder_model.onnx` +
`decoder_model_merged.onnx`, or `decoder_model.onnx` [+ `decoder_with_past_model.onnx`]) or a
`tools/export_blip.py` export (`vision_model.onnx` + `text_decoder.onnx`, either BLIP layout) or a
`tools/export_vit_gpt2.py` export (`vit-gpt2+cross-cache`).
Everything but the ONNX files is copied unchanged; every `*.onnx` is rewritten with
`onnxruntime.quantization.quantize_dynamic` (int8 weights, activations quantized at run time),
as `tools/export_blip.py --int8` does, with two differences:

- `EnableSubgraph`: Optimum's merged decoder is one `If` node whose two branches hold every layer.
  Without this option quantize_dynamic leaves the branches alone and the "int8" decoder is fp32.
  (quantize_dynamic rewrites GPT-2's Gemm layers as MatMul + Add, so they are quantized as MatMuls.)
- Only `MatMul` is quantized by default (`--op-types`): embeddings (Gather) and the patch
  convolution stay fp32. Measured on the bundled default model through `capwatch serve` +
  tools/eval_server.py (500 scenes, seed 99000001; fp32: 97.8 % exact, 99.45 % keyword recall):
  MatMul only 98.0 % / 99.5 %; `--op-types all` (quantize_dynamic's list, what export_blip.py --int8
  quantizes: also Conv and Gather) 97.6 % / 99.4 %; MatMul `--per-channel` 97.0 % / 99.24 %.
  (Those figures are for the bundled model before issue 11's retraining; the retrained one is
  100 % / 100 % on 1,000 scenes both fp32 and int8 MatMul-only.)
  `all` gives smaller files where the embeddings are large (BLIP-base text decoder: 147 MB vs 219 MB).

`--int4`: the decoder's MatMul weights become 4-bit blocks (onnxruntime's MatMulNBitsQuantizer: symmetric,
`--block-size` weights per fp32 scale, `--accuracy-level 4`: activations quantized to int8 and the products
computed in int8, on VNNI/AMX where the CPU has them); Gemm layers (GPT-2's Conv1D) are first rewritten as
MatMul + Add so that they are quantized too. The encoder gets int8 (`--encoder`). Measured on this project's
2-vCPU Xeon (AVX-512 VNNI, AMX), BLIP-base cross-cache, onnxruntime 1.31.1, 2 threads, interleaved
(`make bench-quant-choices`): decoder step fp32 30.3 ms, int8 14.8, int4 block 16 16.7, 32 13.6, 64 12.6,
128 10.8 ms, block 32 at accuracy level 0 (fp32 compute) 15.9 ms; encoder dynamic int8 205 ms, static QDQ
(per-channel, calibrated on 32 images) 304 ms, dynamic with the attention's activation MatMuls quantized too
245 ms (fp32 640 ms). So: block 128, accuracy level 4, dynamic encoder. The bundled model keeps every caption
with block 32 and 128 alike (1,000 held-out scenes through the server, `tools/eval_server.py
--reference-url`: 100 % agreement with fp32, 100 % exact).

Before an encoder is quantized, its self-attention is fused into ONNX Runtime's `MultiHeadAttention`
(`tools/fuse_attention.py`, checked against the unfused graph; `--no-fuse-attention` keeps the exporter's nodes,
and the other `--encoder` methods do not fuse): the traced encoders spell attention out as about 15 nodes a layer,
which ONNX Runtime's optimizer does not fuse on its own. Measured on a 2-vCPU AMD EPYC (Zen 4, AVX-512 VNNI),
2 threads, interleaved: BLIP-base's int8 vision encoder fastest of 8 271 -> 257 ms (in the profiler: attention
108 -> 90 ms, operators 299 -> 277 ms, about -7 %); through the server, BLIP-base int4 with and without it,
interleaved, 12 and 30 rounds: encoder medians 308 vs 315 and 323 vs 335 ms; ViT-GPT2-base's int8 encoder
113.9 -> 112.2 ms and the bundled model's about 1 ms: no measurable change, no loss. Decoders are not fused (see
fuse_attention.py).

Each written file is checked: the number of quantized nodes per graph *and per subgraph* is counted
(a graph that had quantizable weights but got no quantized node is an error), the file is loaded
in onnxruntime, and a short greedy decode on random images is run with the fp32 and the int8 files
side by side (the token agreement and the largest logit difference are printed).

`capwatch_export.json` in DST gets "precision": "int8" or "int4" and how each file was quantized (capwatch
reads the precision from it; /health and capwatch_model_info show it). Its "layout" is kept from SRC's record, or named from the files when SRC has none.
A SRC that is already quantized (by its record, or because its graphs hold quantized nodes) is refused.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

import fuse_attention

EXPORT_RECORD = "capwatch_export.json"
REPO = Path(__file__).resolve().parent.parent
# ONNX Runtime 1.31 refuses the IR version recent `onnx` writes by default; 10 is safe (as export_blip.py).
MAX_IR_VERSION = 10
# The default op types: see the module docstring. "all" = quantize_dynamic's own default list.
DEFAULT_OP_TYPES = ("MatMul",)
# --int4's block size and the int8 encoder's method: chosen by measurement (see the module docstring).
DEFAULT_BLOCK_SIZE = 128
DEFAULT_ENCODER = "dynamic"
# Node types quantize_dynamic writes: their presence means a graph is already quantized.
QUANTIZED_OPS = {
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeLinear",
    "DequantizeLinear",
    "QuantizeLinear",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "DynamicQuantizeLSTM",
    "QAttention",
    "QEmbedLayerNormalization",
    "QLinearMatMul",
    "QLinearConv",
    "QGemm",
    "MatMulNBits",
}
# The graphs that encode the image; every other ONNX file of a model directory is a decoder.
ENCODER_FILES = {"vision_model.onnx", "encoder_model.onnx"}
# Source ops whose constant weight quantize_dynamic can quantize (Gemm is rewritten as MatMul first).
WEIGHT_OPS = {"MatMul": (1,), "Gemm": (1,), "Conv": (1,), "Gather": (0,)}


class QuantizeError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- graphs


def walk_graphs(graph: onnx.GraphProto, path: str = "main"):
    """(path, graph) for the graph and every subgraph (If/Loop/Scan bodies), depth first."""
    yield path, graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from walk_graphs(attr.g, f"{path}/{node.name or node.op_type}.{attr.name}")
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for i, sub in enumerate(attr.graphs):
                    yield from walk_graphs(sub, f"{path}/{node.name or node.op_type}.{attr.name}[{i}]")


def quantized_node_count(graph: onnx.GraphProto) -> int:
    return sum(node.op_type in QUANTIZED_OPS for node in graph.node)


def quantizable_weight_count(model: onnx.ModelProto, op_types: set[str]) -> dict[str, int]:
    """Per graph path: nodes of the chosen op types whose weight input is an initializer (of this graph or of
    an enclosing one: the merged decoder's branches read the weights from the main graph)."""
    wanted = set(op_types) or set(WEIGHT_OPS)  # empty = quantize_dynamic's own list
    if "MatMul" in wanted:
        wanted.add("Gemm")
    counts: dict[str, int] = {}

    def visit(graph: onnx.GraphProto, path: str, outer: set[str]) -> None:
        names = outer | {init.name for init in graph.initializer}
        counts[path] = sum(
            1
            for node in graph.node
            if node.op_type in wanted
            and any(i < len(node.input) and node.input[i] in names for i in WEIGHT_OPS.get(node.op_type, ()))
        )
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g, f"{path}/{node.name or node.op_type}.{attr.name}", names)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for i, sub in enumerate(attr.graphs):
                        visit(sub, f"{path}/{node.name or node.op_type}.{attr.name}[{i}]", names)

    visit(model.graph, "main", set())
    return counts


def external_data_files(model_path: Path) -> set[str]:
    """File names an ONNX file keeps its weights in (beside it), if any."""
    model = onnx.load(str(model_path), load_external_data=False)
    names = set()
    for _, graph in walk_graphs(model.graph):
        for init in graph.initializer:
            if init.data_location == onnx.TensorProto.EXTERNAL:
                for entry in init.external_data:
                    if entry.key == "location":
                        names.add(Path(entry.value).name)
    return names


# ----------------------------------------------------------------------------- the directory


def read_record(src: Path) -> dict | None:
    path = src / EXPORT_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise QuantizeError(f"{path} is not valid JSON: {e}") from e


def layout_from_files(src: Path) -> str:
    """The layout as capwatch names it (src/engine/model_dir.rs `ModelLayout::name`, `layout_name`)."""
    if (src / "vision_model.onnx").is_file() and (src / "text_decoder.onnx").is_file():
        decoder = onnx.load(str(src / "text_decoder.onnx"), load_external_data=False)
        cross = any(i.name.startswith("cross_key_values.") for i in decoder.graph.input)
        return "blip+cross-cache" if cross else "blip"
    if (src / "encoder_model.onnx").is_file():
        if (src / "decoder_model_merged.onnx").is_file():
            decoder = onnx.load(str(src / "decoder_model_merged.onnx"), load_external_data=False)
            if any(i.name.startswith("cross_key_values.") for i in decoder.graph.input):
                return "vit-gpt2+cross-cache"  # tools/export_vit_gpt2.py's name for it
            return "vision-encoder-decoder/merged"
        if (src / "decoder_model.onnx").is_file() and (src / "decoder_with_past_model.onnx").is_file():
            return "vision-encoder-decoder/split"
        if (src / "decoder_model.onnx").is_file():
            return "vision-encoder-decoder/no-cache"
    raise QuantizeError(
        f"{src} is not a model directory capwatch loads: expected encoder_model.onnx + decoder_model_merged.onnx "
        "(or decoder_model.onnx [+ decoder_with_past_model.onnx]), or vision_model.onnx + text_decoder.onnx"
    )


def _size(path: Path) -> int:
    """Bytes of an ONNX file and of the external-data files it reads."""
    return path.stat().st_size + sum((path.parent / n).stat().st_size for n in external_data_files(path))


def onnx_files(src: Path) -> list[Path]:
    return sorted(p for p in src.iterdir() if p.is_file() and p.suffix == ".onnx")


def refuse_if_int8(src: Path, record: dict | None, files: list[Path]) -> None:
    if record is not None and record.get("precision") in ("int8", "int4"):
        precision = record["precision"]
        raise QuantizeError(f"{src} is already {precision} ({EXPORT_RECORD} says \"precision\": \"{precision}\"); quantize the fp32 directory")
    for path in files:
        model = onnx.load(str(path), load_external_data=False)
        found = collections.Counter(
            node.op_type for _, graph in walk_graphs(model.graph) for node in graph.node if node.op_type in QUANTIZED_OPS
        )
        if found:
            raise QuantizeError(
                f"{path} already holds quantized nodes ({dict(found)}) although {EXPORT_RECORD} "
                f"{'says ' + repr(record.get('precision')) if record else 'is missing'}; refusing to quantize it twice"
            )


# ----------------------------------------------------------------------------- quantizing


def quantized_per_graph(model: onnx.ModelProto, expected: dict[str, int], dst: Path, weights_are: str, node_is: str) -> dict:
    """Per graph path: the weights that could be quantized and the quantized nodes written. Raises when a
    graph that had such weights got no quantized node (a quantizer that silently skipped a subgraph)."""
    counts = {path: quantized_node_count(graph) for path, graph in walk_graphs(model.graph)}
    report = {}
    for path, weights in expected.items():
        got = counts.get(path, 0)
        report[path] = {"quantizable_weights": weights, "quantized_nodes": got}
        if weights and not got:
            raise QuantizeError(f"{dst.name}: graph {path} has {weights} {weights_are} but no {node_is}")
    return report


def quantize_file(src: Path, dst: Path, settings: dict) -> dict:
    """quantize_dynamic src -> dst (subgraphs included); returns per-graph counts. Raises when a graph with
    quantizable weights got no quantized node."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = onnx.load(str(src), load_external_data=False)
    expected = quantizable_weight_count(source, set(settings["op_types"]))
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        scratch = Path(tmp) / dst.name
        quantize_dynamic(
            str(src),
            str(scratch),
            op_types_to_quantize=list(settings["op_types"]) or None,
            per_channel=settings["per_channel"],
            reduce_range=settings["reduce_range"],
            weight_type=QuantType.QInt8,
            # Weights beside the graph when SRC had them there (it is > 2 GB or was written so).
            use_external_data_format=bool(external_data_files(src)),
            # "dynamic+attention": also the attention's activation x activation MatMuls (scores, weighted sum).
            extra_options={"EnableSubgraph": True, "MatMulConstBOnly": settings.get("encoder") != "dynamic+attention"},
        )
        # One self-contained file unless the result is still too large for a single protobuf.
        big = sum(p.stat().st_size for p in Path(tmp).iterdir()) > 1.9e9
        onnx.checker.check_model(str(scratch))
        model = onnx.load(str(scratch))
        if model.ir_version > MAX_IR_VERSION:
            model.ir_version = MAX_IR_VERSION
        if big:
            onnx.save(model, str(dst), save_as_external_data=True, location=dst.name + ".data")
        else:
            onnx.save(model, str(dst))

    return quantized_per_graph(model, expected, dst, "quantizable weights", "quantized node")


def _save(model: onnx.ModelProto, dst: Path, big: bool) -> None:
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    if big:
        onnx.save(model, str(dst), save_as_external_data=True, location=dst.name + ".data")
    else:
        onnx.save(model, str(dst))


def gemm_as_matmul(model: onnx.ModelProto) -> int:
    """Rewrites every Gemm with a constant weight (alpha = beta = 1, no transA) as MatMul + Add, in every
    (sub)graph, transposing a transB weight once: MatMulNBits replaces MatMuls only, and GPT-2's Conv1D layers
    export as Gemm (quantize_dynamic does the same rewrite for int8). Returns how many were rewritten."""
    from onnx import numpy_helper

    main = model.graph
    inits = {init.name: init for init in main.initializer}
    transposed: dict[str, str] = {}
    rewritten = 0

    def weight(name: str, trans_b: int) -> str | None:
        if name not in inits:
            return None
        if not trans_b:
            return name
        if name not in transposed:
            array = numpy_helper.to_array(inits[name]).T.copy()
            transposed[name] = f"{name}_transposed_for_matmul"
            main.initializer.append(numpy_helper.from_array(array, transposed[name]))
        return transposed[name]

    for _, graph in walk_graphs(main):
        local = {init.name for init in graph.initializer}
        nodes = []
        for node in graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
            b = weight(node.input[1], attrs.get("transB", 0)) if node.op_type == "Gemm" and plain else None
            if b is None or (node.input[1] in local and graph is not main):
                nodes.append(node)
                continue
            name = node.name or f"gemm{rewritten}"
            product = node.output[0] + "_matmul" if len(node.input) > 2 and node.input[2] else node.output[0]
            nodes.append(onnx.helper.make_node("MatMul", [node.input[0], b], [product], name=f"{name}_MatMul"))
            if product != node.output[0]:
                nodes.append(onnx.helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{name}_Add"))
            rewritten += 1
        del graph.node[:]
        graph.node.extend(nodes)
    # Weights only the rewritten Gemms read in their untransposed form are now unused.
    used = {i for _, graph in walk_graphs(main) for node in graph.node for i in node.input}
    keep = [init for init in main.initializer if init.name in used]
    del main.initializer[:]
    main.initializer.extend(keep)
    return rewritten


def quantize_file_int4(src: Path, dst: Path, settings: dict) -> dict:
    """4-bit blockwise weights for every MatMul with a constant weight (subgraphs included), with onnxruntime's
    MatMulNBitsQuantizer: symmetric, `block_size` weights per scale, `accuracy_level` (4: the activations are
    quantized to int8 and the product is computed in int8, VNNI/AMX where the CPU has them)."""
    level = logging.getLogger().level
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger().setLevel(level)  # its import sets the root logger to INFO (logging.basicConfig)
    source = onnx.load(str(src))
    gemm_as_matmul(source)
    expected = quantizable_weight_count(source, {"MatMul"})
    quantizer = MatMulNBitsQuantizer(
        source,
        bits=4,
        block_size=settings["block_size"],
        is_symmetric=True,
        accuracy_level=settings["accuracy_level"],
        op_types_to_quantize=("MatMul",),
    )
    quantizer.process()
    model = quantizer.model.model
    onnx.checker.check_model(model, full_check=False)
    _save(model, dst, model.ByteSize() > 1.9e9)
    return quantized_per_graph(model, expected, dst, "MatMul weights", "MatMulNBits node")


def preprocess(image, config: dict) -> np.ndarray:
    """pixel_values as the model's image processor makes them (resize, rescale, normalize; RGB, NCHW)."""
    from PIL import Image

    size = config.get("size", 224)
    if isinstance(size, dict):
        height, width = size.get("height", size.get("shortest_edge", 224)), size.get("width", size.get("shortest_edge", 224))
    else:
        height = width = int(size)
    resample = {2: Image.BILINEAR, 3: Image.BICUBIC}.get(config.get("resample", 3), Image.BICUBIC)
    image = image.convert("RGB").resize((width, height), resample)
    pixels = np.asarray(image, np.float32) * float(config.get("rescale_factor", 1 / 255))
    mean = np.array(config.get("image_mean", [0.5, 0.5, 0.5]), np.float32)
    std = np.array(config.get("image_std", [0.5, 0.5, 0.5]), np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)


def calibration_images(count: int) -> list:
    """The repository's test images, flipped and cropped into `count` variations (nothing downloaded)."""
    from PIL import Image, ImageOps

    base = [Image.open(p) for p in sorted((REPO / "test_images").iterdir()) if p.suffix in (".png", ".jpg")]
    rng = np.random.default_rng(7)
    images = []
    while len(images) < count:
        image = base[len(images) % len(base)].convert("RGB")
        if len(images) >= len(base):
            w, h = image.size
            left, top = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
            image = image.crop((left, top, left + 3 * w // 4, top + 3 * h // 4))
            if rng.random() < 0.5:
                image = ImageOps.mirror(image)
        images.append(image)
    return images


def quantize_file_static(src: Path, dst: Path, settings: dict) -> dict:
    """int8 encoder with activations calibrated on images (quantize_static, QDQ, per-channel int8 weights,
    uint8 activations): ONNX Runtime fuses the QDQ pairs into int8 kernels, so no activation is quantized at
    run time. Only MatMul is quantized (as for the dynamic int8 default)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    processor = json.loads((src.parent / "preprocessor_config.json").read_text())
    input_name = session(src).get_inputs()[0].name
    batches = [preprocess(image, processor) for image in calibration_images(settings["calibration_images"])]

    class Images(CalibrationDataReader):
        def __init__(self):
            self.items = iter(batches)

        def get_next(self):
            pixels = next(self.items, None)
            return None if pixels is None else {input_name: pixels}

    source = onnx.load(str(src), load_external_data=False)
    expected = quantizable_weight_count(source, {"MatMul"})
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        scratch = Path(tmp) / dst.name
        quantize_static(
            str(src),
            str(scratch),
            Images(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            use_external_data_format=bool(external_data_files(src)),
            extra_options={"MatMulConstBOnly": False},
        )
        model = onnx.load(str(scratch))
        _save(model, dst, model.ByteSize() > 1.9e9)
    return quantized_per_graph(model, expected, dst, "MatMul weights", "QDQ node")


def quantize_any(src: Path, dst: Path, settings: dict) -> tuple[dict, str]:
    """Quantizes one file as `settings` say for its role; returns the counts and what was done. An encoder's
    attention is first fused into MultiHeadAttention nodes (tools/fuse_attention.py) where it matches, for the
    dynamic encoder only: `dynamic+attention` quantizes the very MatMuls fusion removes, and the static encoder's
    calibration and QDQ placement were measured on the graph as exported."""
    fuse = settings.get("fuse_attention", True) and settings.get("encoder", DEFAULT_ENCODER) == "dynamic"
    if src.name in ENCODER_FILES and fuse and not external_data_files(src):
        with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
            fused = Path(tmp) / src.name
            shutil.copyfile(src, fused)
            try:
                result = fuse_attention.fuse_file(fused, fuse_attention.pixel_shape(src.parent))
            except ValueError as e:  # the fused graph did not match the original: quantize the original
                counts, method = _quantize_one(src, dst, settings)
                return counts, f"{method}, attention not fused ({e})"
            if result["fused"]:
                counts, method = _quantize_one(fused, dst, settings)
                return counts, f"{method}, attention fused ({result['fused']} MultiHeadAttention nodes)"
    return _quantize_one(src, dst, settings)


def _quantize_one(src: Path, dst: Path, settings: dict) -> tuple[dict, str]:
    if src.name not in ENCODER_FILES and settings["precision"] == "int4":
        return quantize_file_int4(src, dst, settings), f"int4 (MatMulNBits, block {settings['block_size']}, accuracy level {settings['accuracy_level']})"
    if src.name in ENCODER_FILES and settings["encoder"] == "static":
        return quantize_file_static(src, dst, settings), "int8 static (QDQ, per-channel, calibrated on images)"
    if src.name in ENCODER_FILES and settings["encoder"] == "dynamic+attention":
        return quantize_file(src, dst, settings), "int8 dynamic (quantize_dynamic), attention MatMuls included"
    return quantize_file(src, dst, {**settings, "encoder": "dynamic"}), "int8 dynamic (quantize_dynamic)"


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- checking


def _lookup(sources: list[dict], *keys: str):
    for key in keys:
        for source in sources:
            if isinstance(source, dict) and source.get(key) is not None:
                return source[key]
    return None


class Decoder:
    """Greedy decoding over a model directory's ONNX files, for the fp32-vs-int8 check."""

    def __init__(self, directory: Path, config: dict, generation: dict):
        blip = (directory / "vision_model.onnx").is_file()
        self.encoder = session(directory / ("vision_model.onnx" if blip else "encoder_model.onnx"))
        # The decoder files as capwatch picks them (src/engine/model_dir.rs `detect_decoder_files`).
        if blip:
            self.first = self.later = session(directory / "text_decoder.onnx")
        elif (directory / "decoder_model_merged.onnx").is_file():
            self.first = self.later = session(directory / "decoder_model_merged.onnx")
        elif (directory / "decoder_with_past_model.onnx").is_file():
            self.first = session(directory / "decoder_model.onnx")
            self.later = session(directory / "decoder_with_past_model.onnx")
        else:
            self.first = self.later = session(directory / "decoder_model.onnx")
        sub = config.get("text_config") if blip else config.get("decoder")
        # BLIP's generate() starts from text_config's bos_token_id (see tools/export_blip.py).
        sources = [sub or {}, generation, config] if blip else [generation, config, sub or {}]
        start = _lookup(sources, "decoder_start_token_id", "bos_token_id")
        self.start = int(start[0] if isinstance(start, list) else (start or 0))
        self.heads = _lookup([sub or {}], "num_attention_heads", "n_head", "decoder_attention_heads")
        hidden = _lookup([sub or {}], "hidden_size", "n_embd", "d_model")
        self.head_dim = hidden // self.heads if self.heads and hidden else None

        encoder_config = config.get("vision_config" if blip else "encoder") or {}
        size = _lookup([encoder_config, config], "image_size") or 224
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.channels = _lookup([encoder_config], "num_channels") or 3

    def pixel_shape(self) -> list[int]:
        dims = self.encoder.get_inputs()[0].shape
        default = [1, self.channels, *self.image_size]
        return [d if isinstance(d, int) and i > 0 else default[i] for i, d in enumerate(dims)]

    def _past(self, meta) -> np.ndarray:
        dims = meta.shape
        heads = dims[1] if isinstance(dims[1], int) else self.heads
        head_dim = dims[3] if isinstance(dims[3], int) else self.head_dim
        return np.zeros((1, heads, 0, head_dim), np.float32)

    def run(self, pixel_values: np.ndarray, steps: int) -> tuple[list[int], list[np.ndarray]]:
        names = [o.name for o in self.encoder.get_outputs()]
        encoded = dict(zip(names, self.encoder.run(names, {self.encoder.get_inputs()[0].name: pixel_values})))
        states = encoded.get("last_hidden_state", encoded.get("image_embeds"))
        ids = [self.start]
        presents: dict[str, np.ndarray] = {}
        logits_seen = []
        for step in range(steps):
            decoder = self.first if step == 0 else self.later
            cached = bool(presents) and any(i.name.startswith("past_key_values.") for i in decoder.get_inputs())
            feeds = {}
            for meta in decoder.get_inputs():
                name = meta.name
                if name == "input_ids":
                    feeds[name] = np.array([ids[-1:] if cached else ids], np.int64)
                elif name == "attention_mask":
                    feeds[name] = np.ones((1, len(ids)), np.int64)
                elif name == "position_ids":
                    feeds[name] = np.array([[len(ids) - 1]] if cached else [list(range(len(ids)))], np.int64)
                elif name == "encoder_attention_mask":
                    feeds[name] = np.ones((1, states.shape[1]), np.int64)
                elif name == "encoder_hidden_states":
                    feeds[name] = states
                elif name == "use_cache_branch":
                    feeds[name] = np.array([cached])
                elif name.startswith("past_key_values."):
                    present = name.replace("past_key_values.", "present.")
                    feeds[name] = presents[present] if cached else self._past(meta)
                elif name in encoded:
                    feeds[name] = encoded[name]
                else:
                    raise QuantizeError(f"check: no value for decoder input {name}")
            out_names = [o.name for o in decoder.get_outputs()]
            outputs = dict(zip(out_names, decoder.run(out_names, feeds)))
            presents = {k: v for k, v in outputs.items() if k.startswith("present.")}
            last = outputs["logits"][0, -1]
            logits_seen.append(last)
            ids.append(int(last.argmax()))
        return ids, logits_seen


def compare(src: Path, dst: Path, images: int = 4, steps: int = 6) -> dict:
    config = json.loads((src / "config.json").read_text())
    gen_path = src / "generation_config.json"
    generation = json.loads(gen_path.read_text()) if gen_path.is_file() else {}
    fp32, int8 = Decoder(src, config, generation), Decoder(dst, config, generation)
    rng = np.random.default_rng(0)
    same, worst = 0, 0.0
    for _ in range(images):
        pixels = rng.uniform(-1, 1, fp32.pixel_shape()).astype(np.float32)
        ids32, logits32 = fp32.run(pixels, steps)
        ids8, logits8 = int8.run(pixels, steps)
        same += ids32 == ids8
        # Logits are compared while both runs still follow the same tokens.
        for a, b, x, y in zip(logits32, logits8, ids32[1:], ids8[1:]):
            worst = max(worst, float(np.abs(a - b).max()))
            if x != y:
                break
    return {"random_images": images, "steps": steps, "same_tokens": same, "max_abs_logit_diff": round(worst, 4)}


# ----------------------------------------------------------------------------- main


def quantize_directory(src: Path, dst: Path, settings: dict, force: bool = False) -> dict:
    given = str(src)
    src, dst = src.resolve(), dst.resolve()
    if not src.is_dir():
        raise QuantizeError(f"{src} is not a directory")
    if dst == src or src in dst.parents:
        raise QuantizeError(f"--out {dst} must not be SRC or inside it")
    record = read_record(src)
    named = layout_from_files(src)  # also checks that SRC is a model directory capwatch loads
    layout = (record or {}).get("layout") or named
    files = onnx_files(src)
    refuse_if_int8(src, record, files)
    if dst.exists() and any(dst.iterdir()) and not force:
        raise QuantizeError(f"{dst} exists and is not empty (--force replaces it)")
    # Everything is written to a staging folder beside DST and moved into place only once checked:
    # a failed run leaves no directory that capwatch would load as a (wrongly labelled) model.
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        result = _write(src, staging, record, layout, files, settings, given)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if dst.exists():
        shutil.rmtree(dst)
    staging.chmod(0o755)
    staging.rename(dst)
    return result


def int4_settings(encoder: str = DEFAULT_ENCODER) -> dict:
    """What `--int4` means with every other option at its default (for the exporters' own --int4)."""
    return {
        "op_types": list(DEFAULT_OP_TYPES),
        "per_channel": False,
        "reduce_range": False,
        "precision": "int4",
        "block_size": DEFAULT_BLOCK_SIZE,
        "accuracy_level": 4,
        "encoder": encoder,
        "calibration_images": 32,
        "fuse_attention": True,
    }


def quantize_in_place(directory: Path, settings: dict) -> dict:
    """Replaces the fp32 model in `directory` with its quantized copy (an exporter's --int4)."""
    directory = directory.resolve()
    quantized = directory.with_name(directory.name + ".quantized")
    result = quantize_directory(directory, quantized, settings, force=True)
    shutil.rmtree(directory)
    quantized.rename(directory)
    return result


def _write(
    src: Path, dst: Path, record: dict | None, layout: str, files: list[Path], settings: dict, given: str
) -> dict:
    skip = {p.name for p in files}
    for path in files:
        skip |= external_data_files(path)
    for item in sorted(src.iterdir()):
        if item.name in skip or item.name == EXPORT_RECORD:
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name)
        else:
            shutil.copy2(item, dst / item.name)

    per_file, methods = {}, {}
    for path in files:
        per_file[path.name], methods[path.name] = quantize_any(path, dst / path.name, settings)
        session(dst / path.name)  # loads in onnxruntime
        before, after = _size(path), _size(dst / path.name)
        graphs = ", ".join(
            f"{g}: {c['quantized_nodes']} quantized nodes ({c['quantizable_weights']} weights)"
            for g, c in per_file[path.name].items()
        )
        print(f"{path.name}: {methods[path.name]}: {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB; {graphs}")

    # The copies an exporter's traced graph makes at every step go too (tools/onnx_cleanup.py): no result changes.
    import onnx_cleanup

    for name, removed in onnx_cleanup.clean_directory(dst).items():
        if removed:
            print(f"{name}: {removed} copying Concat node(s) removed (tools/onnx_cleanup.py)")
    check = compare(src, dst)
    print(
        f"check (fp32 vs {settings['precision']}, greedy, {check['random_images']} random images x {check['steps']} steps): "
        f"same tokens on {check['same_tokens']}/{check['random_images']}, "
        f"max |logit diff| {check['max_abs_logit_diff']}"
    )

    new_record = dict(record or {})
    new_record.update(
        {
            "layout": layout,
            "precision": settings["precision"],
            "quantized_by": "tools/quantize_export.py",
            "quantized_from": given,
            "quantization": {
                "onnxruntime": ort.__version__,
                "files": methods,
                "op_types": list(settings["op_types"]) or "all",
                "per_channel": settings["per_channel"],
                "reduce_range": settings["reduce_range"],
                "subgraphs": True,
                **(
                    {"block_size": settings["block_size"], "accuracy_level": settings["accuracy_level"]}
                    if settings["precision"] == "int4"
                    else {}
                ),
            },
        }
    )
    new_record.setdefault("exported_by", None)
    if new_record["exported_by"] is None:
        del new_record["exported_by"]
    (dst / EXPORT_RECORD).write_text(json.dumps(new_record, indent=2) + "\n")
    return {"layout": layout, "files": per_file, "check": check}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", type=Path, metavar="SRC_DIR", help="fp32 model directory capwatch loads")
    parser.add_argument("--out", type=Path, required=True, metavar="DST_DIR", help="where the int8 copy goes")
    parser.add_argument(
        "--op-types",
        default=",".join(DEFAULT_OP_TYPES),
        help="comma-separated op types to quantize, or `all` for quantize_dynamic's own list "
        "(Conv, MatMul, Gather, Attention, ...); default: %(default)s",
    )
    parser.add_argument("--per-channel", action="store_true", help="one scale per output channel")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights (for non-VNNI CPUs)")
    parser.add_argument(
        "--int4",
        action="store_true",
        help="4-bit decoder weights (MatMulNBits); the encoder gets int8 as --encoder says",
    )
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE, help="--int4: weights per scale (%(default)s)")
    parser.add_argument(
        "--accuracy-level", type=int, default=4, choices=(0, 1, 2, 3, 4), help="--int4: MatMulNBits accuracy level (%(default)s: int8 compute)"
    )
    parser.add_argument(
        "--encoder",
        choices=("dynamic", "dynamic+attention", "static"),
        default=DEFAULT_ENCODER,
        help="int8 encoder: quantize_dynamic of the weights' MatMuls, the same plus the attention's activation "
        "MatMuls (dynamic+attention), or static QDQ calibrated on images (default: %(default)s)",
    )
    parser.add_argument("--calibration-images", type=int, default=32, help="--encoder static: images (%(default)s)")
    parser.add_argument(
        "--no-fuse-attention",
        action="store_true",
        help="keep the encoder's attention as the exporter wrote it (default with --encoder dynamic: fused, "
        "tools/fuse_attention.py)",
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty DST_DIR")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's "consider pre-processing" advice
    op_types = [] if args.op_types.strip() == "all" else [t.strip() for t in args.op_types.split(",") if t.strip()]
    settings = {
        "op_types": op_types,
        "per_channel": args.per_channel,
        "reduce_range": args.reduce_range,
        "precision": "int4" if args.int4 else "int8",
        "block_size": args.block_size,
        "accuracy_level": args.accuracy_level,
        "encoder": args.encoder,
        "calibration_images": args.calibration_images,
        "fuse_attention": not args.no_fuse_attention,
    }
    try:
        quantize_directory(args.src, args.out, settings, force=args.force)
    except (QuantizeError, FileNotFoundError) as e:
        print(f"quantize_export: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({EXPORT_RECORD}: precision {settings['precision']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
