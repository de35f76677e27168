#!/usr/bin/env python3
"""Remove copies the exporters' traced graphs make at every decoding step, without changing any result.

    tools/.venv/bin/python tools/onnx_cleanup.py MODEL_DIR     # rewrites the decoder files in place

torch.onnx traces the cross-attention cache through `torch.cat` with a single tensor, which exports as a
`Concat` with one input: a full copy of that layer's cross-attention keys or values at every step (BLIP-base:
24 copies, 42 MB a step, ≈ 4.7 ms of a 17 ms int4 step measured with tools/profile_stages.py). Such a node is
removed and its consumers read its input directly; the key's `Transpose` then meets its `MatMul` and ONNX
Runtime fuses the two. Subgraphs (a merged decoder's `If` branches) are cleaned too; a node whose output is a
graph output is kept. tools/export_blip.py and tools/export_vit_gpt2.py clean what they write, and
tools/quantize_export.py cleans what it quantizes, so this command is for directories exported before.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

DECODER_FILES = ("text_decoder.onnx", "decoder_model_merged.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx")


def _graphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _graphs(sub)


def drop_single_input_concats(model: onnx.ModelProto) -> int:
    """Removes every one-input Concat whose output is not a graph output; returns how many."""
    removed = 0
    for graph in _graphs(model.graph):
        outputs = {o.name for o in graph.output}
        renamed: dict[str, str] = {}
        kept = []
        for node in graph.node:
            inputs = [i for i in node.input if i]
            if node.op_type == "Concat" and len(inputs) == 1 and node.output[0] not in outputs:
                renamed[node.output[0]] = renamed.get(inputs[0], inputs[0])
                removed += 1
                continue
            kept.append(node)
        if not renamed:
            continue
        for node in kept:
            for index, name in enumerate(node.input):
                if name in renamed:
                    node.input[index] = renamed[name]
        # Nested graphs read outer names too.
        for sub in list(_graphs(graph))[1:]:
            for node in sub.node:
                for index, name in enumerate(node.input):
                    if name in renamed:
                        node.input[index] = renamed[name]
        del graph.node[:]
        graph.node.extend(kept)
    return removed


def clean_file(path: Path) -> int:
    """Cleans one ONNX file in place (weights beside it stay where they are); returns the nodes removed."""
    model = onnx.load(str(path), load_external_data=False)
    removed = drop_single_input_concats(model)
    if removed:
        onnx.save(model, str(path))
    return removed


def clean_directory(directory: Path) -> dict[str, int]:
    return {name: clean_file(directory / name) for name in DECODER_FILES if (directory / name).is_file()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a model directory capwatch loads")
    args = parser.parse_args()
    found = clean_directory(args.model)
    if not found:
        print(f"onnx_cleanup: {args.model} has no decoder file ({', '.join(DECODER_FILES)})", file=sys.stderr)
        return 2
    for name, removed in found.items():
        print(f"{name}: {removed} copying Concat node(s) removed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
