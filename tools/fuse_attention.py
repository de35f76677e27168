#!/usr/bin/env python3
"""Replace each self-attention core of a ViT-style image encoder with one ONNX Runtime `MultiHeadAttention` node.

    tools/.venv/bin/python tools/fuse_attention.py MODEL_DIR     # rewrites its encoder file in place

The traced encoders of BLIP and ViT spell attention out as ≈ 15 nodes a layer: the head split (`Reshape` +
`Transpose`, for BLIP a packed `[B, S, 3, N, H]` tensor and three `Gather`s), the key's transpose, the score
`MatMul`, the scale, `Softmax`, the weighted sum and the head merge. ONNX Runtime's CPU provider has a fused kernel
for all of it (`com.microsoft.MultiHeadAttention`: query, key and value as `[B, S, N·H]`), which reads the
projections where they are instead of transposing them. The projections themselves (`MatMul` + `Add`) are left
alone, so `quantize_dynamic` still turns them into int8.

A layer is fused only when it has exactly the shape described above (no mask, one scalar scale); anything else
is left as it was and counted. The fused file is checked against the original on a random image (the largest
relative difference of its outputs and of every fused layer's own output) before it replaces it. Shapes of the
heads (N) are read by running the original once.

Decoders are not fused: a cross-cache decoder's cross-attention (the same pattern over cached `[B, N, S, H]` keys
and values) was fused and measured on BLIP-base's int4 decoder — 360 of its 1,610 nodes fewer, and no faster a step
through the server (docs/src/benchmarks.md, "Attention, fused").
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ENCODER_FILES = ("vision_model.onnx", "encoder_model.onnx")
MS_DOMAIN = "com.microsoft"


class Graph:
    """Producers, consumers and constants of one ONNX graph."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.inits = {init.name: init for init in graph.initializer}
        self.outputs = {o.name for o in graph.output}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def op(self, name: str, op_type: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None


def _attr(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _strip_scale(g: Graph, name: str) -> tuple[str, float] | None:
    """Follows Mul/Div by a scalar constant back; returns (the unscaled tensor, the product of the scales)."""
    scale = 1.0
    while True:
        node = g.producer.get(name)
        if node is None or node.op_type not in ("Mul", "Div"):
            return name, scale
        a, b = node.input
        cb, ca = g.const(b), g.const(a)
        if cb is not None and cb.size == 1:
            value, name = float(cb.reshape(())), a
        elif ca is not None and ca.size == 1 and node.op_type == "Mul":
            value, name = float(ca.reshape(())), b
        else:
            return None
        scale *= value if node.op_type == "Mul" else 1.0 / value


def _heads_source(g: Graph, name: str) -> tuple[str, int | None] | None:
    """The [B, S, N·H] tensor a [B, N, S, H] heads tensor was split from: (name, None) for its own projection,
    (name, i) for part i of a packed [B, S, 3·N·H] projection (BLIP's qkv)."""
    transpose = g.op(name, "Transpose")
    if transpose is not None and list(_attr(transpose, "perm")) == [0, 2, 1, 3]:
        reshape = g.op(transpose.input[0], "Reshape")
        return (reshape.input[0], None) if reshape is not None else None
    gather = g.op(name, "Gather")
    if gather is None or _attr(gather, "axis", 0) != 0:
        return None
    index = g.const(gather.input[1])
    transpose = g.op(gather.input[0], "Transpose")
    if index is None or index.size != 1 or transpose is None or list(_attr(transpose, "perm")) != [2, 0, 3, 1, 4]:
        return None
    reshape = g.op(transpose.input[0], "Reshape")
    return (reshape.input[0], int(index.reshape(()))) if reshape is not None else None


def _transposed_key_source(g: Graph, name: str) -> tuple[str, int | None] | None:
    """Like _heads_source, for the key as the score MatMul reads it ([B, N, H, S]): the transpose of the key
    heads (eager attention), or one transpose straight from the [B, S, N, H] reshape (SDPA-style exports)."""
    transpose = g.op(name, "Transpose")
    if transpose is None:
        return None
    perm = list(_attr(transpose, "perm"))
    if perm == [0, 1, 3, 2]:
        stripped = _strip_scale(g, transpose.input[0])
        return _heads_source(g, stripped[0]) if stripped is not None and stripped[1] == 1.0 else None
    if perm == [0, 2, 3, 1]:
        reshape = g.op(transpose.input[0], "Reshape")
        return (reshape.input[0], None) if reshape is not None else None
    return None


def find_layers(g: Graph) -> tuple[list[dict], int]:
    """Every attention core that has the expected shape, and how many Softmax nodes did not."""
    found, other = [], 0
    for softmax in [n for n in g.graph.node if n.op_type == "Softmax"]:
        layer = _match(g, softmax)
        if layer is None:
            other += 1
        else:
            found.append(layer)
    return found, other


def _match(g: Graph, softmax: onnx.NodeProto) -> dict | None:
    probs = softmax.output[0]
    weighted = g.only_consumer(probs)
    # ViT's eager attention casts the probabilities to float (they already are): no-op Casts are skipped.
    while weighted is not None and weighted.op_type == "Cast" and _attr(weighted, "to") == onnx.TensorProto.FLOAT:
        probs = weighted.output[0]
        weighted = g.only_consumer(probs)
    if weighted is None or weighted.op_type != "MatMul" or weighted.input[0] != probs:
        return None
    stripped = _strip_scale(g, softmax.input[0])
    if stripped is None:
        return None
    scores_name, scale = stripped
    scores = g.op(scores_name, "MatMul")
    if scores is None:
        return None
    q = _strip_scale(g, scores.input[0])
    k = _strip_scale(g, scores.input[1])
    if q is None or k is None:
        return None
    key_source = _transposed_key_source(g, k[0])
    sources = [_heads_source(g, q[0]), key_source, _heads_source(g, weighted.input[1])]
    if any(s is None for s in sources):
        return None
    output = _head_merge_output(g, weighted)
    if output is None:
        return None
    packed = {s[0] for s in sources if s[1] is not None}
    if packed and (len(packed) != 1 or [s[1] for s in sources] != [0, 1, 2]):
        return None
    if not packed and any(s[1] is not None for s in sources):
        return None
    return {
        "heads": q[0],
        "sources": [s[0] for s in sources],
        "packed": packed.pop() if packed else None,
        "scale": scale * q[1] * k[1],
        "output": output,
        "name": softmax.name or softmax.output[0],
    }


def _head_merge_output(g: Graph, weighted: onnx.NodeProto) -> str | None:
    """The [B, S, N·H] tensor the weighted sum's heads are merged into (Transpose, then Reshape); traced graphs
    also read the transpose's shape (Shape nodes) to compute the Reshape's target."""
    merge = g.only_consumer(weighted.output[0])
    if merge is None or merge.op_type != "Transpose" or list(_attr(merge, "perm")) != [0, 2, 1, 3]:
        return None
    users = g.consumers.get(merge.output[0], [])
    reshapes = [n for n in users if n.op_type == "Reshape"]
    if len(reshapes) != 1 or any(n.op_type not in ("Reshape", "Shape") for n in users):
        return None
    return reshapes[0].output[0]


def _heads_count(model: onnx.ModelProto, layers: list[dict], feed: dict[str, np.ndarray]) -> dict[str, int]:
    """N of each layer's [B, N, S, H] query heads, read by running the original with those tensors exposed."""
    names = [layer["heads"] for layer in layers]
    with tempfile.TemporaryDirectory() as tmp:
        values = _run_exposing(model, names, feed, Path(tmp))[-len(names):]
    return {name: int(value.shape[1]) for name, value in zip(names, values)}


def _remove_dead(graph: onnx.GraphProto) -> None:
    """Drops the nodes and initializers no graph output depends on (the unfused layers' leftovers)."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def pixel_shape(directory: Path) -> list[int]:
    """[1, 3, H, W] of the model directory's images (preprocessor_config.json)."""
    size = json.loads((directory / "preprocessor_config.json").read_text()).get("size", 224)
    if isinstance(size, dict):
        height, width = size.get("height", size.get("shortest_edge")), size.get("width", size.get("shortest_edge"))
    else:
        height = width = int(size)
    return [1, 3, int(height), int(width)]


def random_feed(model: onnx.ModelProto, shape: list[int]) -> dict[str, np.ndarray]:
    """A random image for the encoder's one input."""
    return {model.graph.input[0].name: np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)}


def fuse(model: onnx.ModelProto, shape: list[int]) -> tuple[list[str], int]:
    """Fuses every matching attention core of the encoder `model` (images of `shape`) in place; returns the fused
    layers' outputs (the names they had before) and how many cores were left as they were."""
    g = Graph(model.graph)
    layers, other = find_layers(g)
    if not layers:
        return [], other
    heads = _heads_count(model, layers, random_feed(model, shape))
    replaced = {layer["output"] for layer in layers}
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    nodes = []
    for node in model.graph.node:
        if node.op_type == "Reshape" and node.output[0] in replaced:
            continue  # the head merge: the fused node writes its output instead
        nodes.append(node)
    for layer in layers:
        inputs = layer["sources"]
        if layer["packed"] is not None:
            thirds = [f"{layer['name']}/{part}" for part in ("query", "key", "value")]
            # Opset 18 names the number of equal parts; before, the outputs do.
            extra = {"num_outputs": 3} if opset >= 18 else {}
            nodes.append(helper.make_node("Split", [layer["packed"]], thirds, name=f"{layer['name']}/split_qkv", axis=-1,
                                          **extra))
            inputs = thirds
        nodes.append(
            helper.make_node(
                "MultiHeadAttention",
                inputs,
                [layer["output"]],
                name=f"{layer['name']}/MultiHeadAttention",
                domain=MS_DOMAIN,
                num_heads=heads[layer["heads"]],
                scale=float(layer["scale"]),
            )
        )
    # ONNX's shape inference does not know the contrib op: say what it writes, for the quantizer's benefit.
    for layer in layers:
        model.graph.value_info.append(helper.make_tensor_value_info(layer["output"], onnx.TensorProto.FLOAT, None))
    del model.graph.node[:]
    model.graph.node.extend(_topological(nodes, model.graph))
    _remove_dead(model.graph)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return [layer["output"] for layer in layers], other


def _topological(nodes: list[onnx.NodeProto], graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(nodes), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("fuse_attention: the rewritten graph has a cycle or a missing input")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    return ordered


def _run_exposing(model: onnx.ModelProto, names: list[str], feed: dict[str, np.ndarray], where: Path) -> list:
    """The model's outputs and the tensors `names`, on `feed`."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in names)
    path = where / "probe.onnx"
    onnx.save(probe, str(path))
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)
    finally:
        path.unlink()


def fuse_file(path: Path, shape: list[int], tolerance: float = 1e-3) -> dict:
    """Fuses one encoder file in place (images of `shape`) when its outputs and every fused layer's own output
    stay within `tolerance` of the original, relative to the tensor's largest value; returns counts and the
    largest difference. A fused graph that differs more is a ValueError, and the file is left as it was."""
    model = onnx.load(str(path))
    if any(n.op_type == "MultiHeadAttention" for n in model.graph.node):
        return {"fused": 0, "other": 0, "already": True}
    original = onnx.ModelProto()
    original.CopyFrom(model)
    outputs, other = fuse(model, shape)
    if not outputs:
        return {"fused": 0, "other": other}
    feed = random_feed(model, shape)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        before = _run_exposing(original, outputs, feed, Path(tmp))
        del original
        after = _run_exposing(model, outputs, feed, Path(tmp))
        worst = max(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-6)) for a, b in zip(before, after))
        if worst > tolerance:
            raise ValueError(f"{path}: the fused graph differs from the original by {worst:.2e} (relative)")
        scratch = Path(tmp) / path.name
        onnx.save(model, str(scratch))
        scratch.replace(path)
    return {"fused": len(outputs), "other": other, "max_rel_diff": worst}


def fuse_directory(directory: Path) -> dict[str, dict]:
    files = [name for name in ENCODER_FILES if (directory / name).is_file()]
    return {name: fuse_file(directory / name, pixel_shape(directory)) for name in files}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a model directory capwatch loads")
    args = parser.parse_args()
    found = fuse_directory(args.model)
    if not found:
        print(f"fuse_attention: {args.model} has no encoder file ({', '.join(ENCODER_FILES)})", file=sys.stderr)
        return 2
    for name, result in found.items():
        print(f"{name}: {result}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
