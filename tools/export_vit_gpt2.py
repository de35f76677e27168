#!/usr/bin/env python3
"""Export a ViT + GPT-2 VisionEncoderDecoder checkpoint to capwatch's cross-attention-cache layout.

For nlpconnect/vit-gpt2-image-captioning and its fine-tunes (any VisionEncoderDecoderModel whose decoder is
GPT-2 with add_cross_attention; the encoder only has to take pixel_values and return last_hidden_state).
Export on a machine with the checkpoint, then copy OUTDIR wherever capwatch runs:

    huggingface-cli download nlpconnect/vit-gpt2-image-captioning --local-dir vit-gpt2
    tools/.venv/bin/python tools/export_vit_gpt2.py --checkpoint vit-gpt2 --out models/vit-gpt2 [--int8]

Optimum's export recomputes every layer's cross-attention keys/values from the encoder states at every
decoding step. Here the encoder graph computes them once per image and the decoder reads them. Layout
(also described in tools/VIT_GPT2_LAYOUT.md; capwatch reads it as `vision-encoder-decoder/merged`, and
sees the cross cache from the declared tensor names):

  encoder_model.onnx
      in   pixel_values                float32 [batch, 3, image_size, image_size]   (only batch is dynamic)
      out  last_hidden_state           float32 [batch, enc_seq, encoder_hidden]     (what Optimum's encoder gives)
           cross_key_values.{i}.key    float32 [batch, heads, enc_seq, head_dim]    for i in 0..n_layer
           cross_key_values.{i}.value  float32 [batch, heads, enc_seq, head_dim]
  decoder_model_merged.onnx   one graph for every step, no use_cache_branch
      in   input_ids                   int64   [batch, seq]
           attention_mask              int64   [batch, past + seq]   1 = token, 0 = (left) padding
           position_ids                int64   [batch, seq]          positions of the new tokens
           past_key_values.{i}.key     float32 [batch, heads, past, head_dim]   (past = 0 on the first step)
           past_key_values.{i}.value   float32 [batch, heads, past, head_dim]
           cross_key_values.{i}.key    float32 [batch, heads, enc_seq, head_dim]  (from the encoder)
           cross_key_values.{i}.value  float32 [batch, heads, enc_seq, head_dim]
      out  logits                      float32 [batch, seq, vocab]
           present.{i}.key             float32 [batch, heads, past + seq, head_dim]
           present.{i}.value           float32 [batch, heads, past + seq, head_dim]
  config.json, generation_config.json, preprocessor_config.json, tokenizer.json (+ tokenizer_config.json,
  special_tokens_map.json, vocab.json, merges.txt, added_tokens.json when present): copied unchanged
  (generation_config.json is written from config.json when the checkpoint has none, as transformers does).
  capwatch_export.json: {"exported_by", "layout": "vit-gpt2+cross-cache", "precision": "fp32" | "int8"}.

Greedy decoding (what VisionEncoderDecoderModel.generate() does, transformers 4.57):
  1. encoder outputs = encoder_model(pixel_values)
  2. prompt = [decoder_start_token_id]; step 1 feeds the prompt, attention_mask of ones, position_ids
     0..len-1 and zero-length past tensors [batch, heads, 0, head_dim]; later steps feed only the last token,
     the mask grown by one, position_ids = [[past]] and the previous present.* as past_key_values.*;
     cross_key_values.* are the encoder's outputs at every step.
  3. next = argmax(logits[:, -1, :]); stop on eos_token_id (kept in the output) or after max_new_tokens.
  Batched with left padding: attention_mask 0 on the padding, position_ids = cumsum(mask) - 1 with padded
  positions set to 1 (what GPT-2's generate() does), sliced to the new tokens.

Every graph is loaded back with onnxruntime (IR version <= 10 so ONNX Runtime 1.31 loads it) and checked
against PyTorch: logits, and greedy token ids equal to model.generate() for batch 1, batch 2, and a
left-padded batch 2 with prompts of different lengths. The decoder is checked to have no
encoder_hidden_states input and no cross-attention key/value projection weights.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from transformers import VisionEncoderDecoderModel
from transformers.pytorch_utils import Conv1D

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_blip import (  # noqa: E402
    OPSET,
    _finalize_onnx,
    _session,
    cross_cached,
    cross_names,
    quantize,
    self_attention_presents,
    write_record,
)

LAYOUT = "vit-gpt2+cross-cache"
COPIED_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)
REQUIRED_FILES = ("config.json", "preprocessor_config.json")


@contextlib.contextmanager
def conv1d_as_matmul():
    """GPT-2's Conv1D is `addmm`, which exports as Gemm; onnxruntime's dynamic int8 quantization only
    rewrites MatMul. Export it as MatMul + Add (the same function) so --int8 quantizes the decoder."""
    original = Conv1D.forward

    def forward(self, x):
        return torch.matmul(x, self.weight) + self.bias

    Conv1D.forward = forward
    try:
        yield
    finally:
        Conv1D.forward = original


def _projected(model: VisionEncoderDecoderModel, hidden: torch.Tensor) -> torch.Tensor:
    """The encoder states the decoder sees (VisionEncoderDecoderModel.forward's optional projection)."""
    if (
        model.encoder.config.hidden_size != model.decoder.config.hidden_size
        and model.decoder.config.cross_attention_hidden_size is None
    ):
        return model.enc_to_dec_proj(hidden)
    return hidden


class EncoderWithCross(nn.Module):
    """pixel_values -> last_hidden_state and every GPT-2 layer's cross-attention keys and values, computed once
    per image exactly as GPT2Attention does (`c_attn(encoder_states).split(...)`, `.view(..., -1, head_dim)
    .transpose(1, 2)`)."""

    def __init__(self, model: VisionEncoderDecoderModel):
        super().__init__()
        self.model = model
        self.cross = nn.ModuleList(block.crossattention for block in model.decoder.transformer.h)

    def forward(self, pixel_values: torch.Tensor):
        hidden = self.model.encoder(pixel_values=pixel_values, return_dict=True).last_hidden_state
        states = _projected(self.model, hidden)
        outputs = [hidden]
        for attention in self.cross:
            key, value = attention.c_attn(states).split(attention.split_size, dim=2)
            for kv in (key, value):
                outputs.append(kv.view(*kv.shape[:-1], -1, attention.head_dim).transpose(1, 2))
        return tuple(outputs)


def additive_mask(attention_mask: torch.Tensor, seq: int, dtype: torch.dtype) -> torch.Tensor:
    """The [batch, 1, seq, past + seq] float mask transformers' eager path builds from a 2D mask
    (masking_utils.eager_mask: causal AND not padding -> 0, else finfo.min), written with shape-free ops
    so that the traced graph stays valid for every past / seq length."""
    key_index = torch.ones_like(attention_mask).cumsum(-1) - 1  # [batch, past + seq]: 0, 1, 2, ...
    query_index = key_index[:, -seq:]  # [batch, seq]: past, ..., past + seq - 1
    allowed = key_index[:, None, None, :] <= query_index[:, None, :, None]
    allowed = allowed & attention_mask.bool()[:, None, None, :]
    zero = torch.zeros((), dtype=dtype)
    return torch.where(allowed, zero, torch.full((), torch.finfo(dtype).min, dtype=dtype))


class DecoderCrossCached(nn.Module):
    """One GPT-2 decoding step with HF's own EncoderDecoderCache: the self-attention cache holds the past
    tensors, the cross-attention cache holds the encoder's keys/values and is marked as already computed
    (`is_updated`), so GPT2Attention reads them instead of projecting the encoder states."""

    def __init__(self, model: VisionEncoderDecoderModel):
        super().__init__()
        self.decoder = model.decoder
        self.num_layers = model.decoder.config.n_layer
        self.hidden_size = model.decoder.config.n_embd

    def forward(self, input_ids, attention_mask, position_ids, *flat):
        # GPT-2 runs its cross-attention blocks only when encoder_hidden_states is given, and reads nothing but
        # its shape (for the all-ones encoder mask): the keys and values come from the cache.
        cache, encoder_hidden_states = cross_cached(flat, self.num_layers, self.hidden_size)
        out = self.decoder(
            input_ids=input_ids,
            attention_mask=additive_mask(attention_mask, input_ids.shape[1], encoder_hidden_states.dtype),
            position_ids=position_ids,
            encoder_hidden_states=encoder_hidden_states,
            past_key_values=cache,
            use_cache=True,
            return_dict=True,
        )
        return (out.logits, *self_attention_presents(out))


def _geometry(model: VisionEncoderDecoderModel) -> tuple[int, int, int]:
    cfg = model.decoder.config
    return cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head


def export_encoder(model, out_dir: Path, image_size: int, enc_seq: int) -> Path:
    path = out_dir / "encoder_model.onnx"
    layers, heads, head_dim = _geometry(model)
    cross = cross_names(layers)
    dummy = torch.randn(1, 3, image_size, image_size)
    # A fresh wrapper is in training mode, and torch.onnx.export restores that mode afterwards, recursively:
    # without .eval() the checkpoint's dropout would be on for the checks that follow.
    torch.onnx.export(
        EncoderWithCross(model).eval(),
        (dummy,),
        str(path),
        input_names=["pixel_values"],
        output_names=["last_hidden_state", *cross],
        dynamic_axes={name: {0: "batch"} for name in ("pixel_values", "last_hidden_state", *cross)},
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    dims = {"last_hidden_state": ["batch", enc_seq, model.encoder.config.hidden_size]}
    dims.update({n: ["batch", heads, enc_seq, head_dim] for n in cross})
    _finalize_onnx(path, dims)
    return path


def export_decoder(model, out_dir: Path, enc_seq: int) -> Path:
    layers, heads, head_dim = _geometry(model)
    vocab = model.decoder.config.vocab_size
    # Trace with past > 0 and seq > 1 so both the cache concat and the causal mask are in the graph; the
    # dynamic axes make past = 0 (first step) and seq = 1 work too (verified below).
    batch, seq, past = 2, 3, 4
    input_ids = torch.randint(0, vocab, (batch, seq), dtype=torch.long)
    attention_mask = torch.ones(batch, past + seq, dtype=torch.long)
    position_ids = torch.arange(past, past + seq).expand(batch, -1).contiguous()
    past_flat = [torch.randn(batch, heads, past, head_dim) for _ in range(2 * layers)]
    cross_flat = [torch.randn(batch, heads, enc_seq, head_dim) for _ in range(2 * layers)]

    input_names = ["input_ids", "attention_mask", "position_ids"]
    output_names = ["logits"]
    dynamic_axes = {
        "input_ids": {0: "batch", 1: "seq"},
        "attention_mask": {0: "batch", 1: "past_plus_seq"},
        "position_ids": {0: "batch", 1: "seq"},
        "logits": {0: "batch", 1: "seq"},
    }
    for i in range(layers):
        for kind in ("key", "value"):
            name_in, name_out = f"past_key_values.{i}.{kind}", f"present.{i}.{kind}"
            input_names.append(name_in)
            output_names.append(name_out)
            dynamic_axes[name_in] = {0: "batch", 2: "past"}
            dynamic_axes[name_out] = {0: "batch", 2: "past_plus_seq"}
    for name in cross_names(layers):
        input_names.append(name)
        dynamic_axes[name] = {0: "batch", 2: "enc_seq"}

    path = out_dir / "decoder_model_merged.onnx"
    torch.onnx.export(
        DecoderCrossCached(model).eval(),
        (input_ids, attention_mask, position_ids, *past_flat, *cross_flat),
        str(path),
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    _finalize_onnx(path)
    return path


# ------------------------------------------------------------------------------------------- checks


def graph_facts(path: Path, model) -> dict:
    """Inputs, outputs, node counts, and the cross-attention K/V projection weights the graph holds."""
    graph = onnx.load(str(path)).graph
    init_shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    ops: dict[str, int] = {}
    for node in graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    hidden = model.decoder.config.n_embd
    # GPT-2's cross c_attn weight is [n_embd, 2 * n_embd] (the self-attention one is [n_embd, 3 * n_embd]).
    cross_kv_weights = [
        node
        for node in graph.node
        if node.op_type in ("MatMul", "Gemm") and any(init_shapes.get(i) == (hidden, 2 * hidden) for i in node.input)
    ]
    return {
        "inputs": [i.name for i in graph.input],
        "outputs": [o.name for o in graph.output],
        "nodes": len(graph.node),
        "MatMul": ops.get("MatMul", 0),
        "Gemm": ops.get("Gemm", 0),
        "cross_kv_projections": len(cross_kv_weights),
    }


def check_decoder_graph(path: Path, model) -> dict:
    facts = graph_facts(path, model)
    layers = model.decoder.config.n_layer
    assert "encoder_hidden_states" not in facts["inputs"], facts["inputs"]
    assert "use_cache_branch" not in facts["inputs"], facts["inputs"]
    assert facts["cross_kv_projections"] == 0, "the decoder still projects encoder states to keys/values"
    # Per layer: self c_attn, self c_proj, cross q_attn, cross c_proj, mlp c_fc, mlp c_proj (6 projections) and
    # 4 attention products (QK^T and AV, self and cross); plus lm_head. Projecting cross K/V would add one per layer.
    assert facts["MatMul"] + facts["Gemm"] == 10 * layers + 1, facts
    return facts


def _pad_prompts(prompts: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(p) for p in prompts)
    ids = np.array([[pad_id] * (width - len(p)) + p for p in prompts], np.int64)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts], np.int64)
    return ids, mask


def greedy_onnx(out_dir: Path, pixel_values: np.ndarray, prompts: list[list[int]], max_new_tokens: int,
                stop_id: int, pad_id: int) -> list[list[int]]:  # fmt: skip
    """Batched greedy decode over the exported graphs, left padding the prompts. Returns per row
    prompt + generated ids, stopping after stop_id (kept) or max_new_tokens."""
    encoder = _session(out_dir / "encoder_model.onnx")
    decoder = _session(out_dir / "decoder_model_merged.onnx")
    enc_names = [o.name for o in encoder.get_outputs()]
    encoded = dict(zip(enc_names, encoder.run(enc_names, {"pixel_values": pixel_values})))
    cross = {k: v for k, v in encoded.items() if k.startswith("cross_key_values.")}
    heads, head_dim = next(iter(cross.values())).shape[1], next(iter(cross.values())).shape[3]
    batch = pixel_values.shape[0]
    past_inputs = [i.name for i in decoder.get_inputs() if i.name.startswith("past_key_values.")]
    out_names = [o.name for o in decoder.get_outputs()]

    step_ids, mask = _pad_prompts(prompts, pad_id)
    past = {name: np.zeros((batch, heads, 0, head_dim), np.float32) for name in past_inputs}
    results = [list(p) for p in prompts]
    finished = [False] * batch
    for _ in range(max_new_tokens):
        position_ids = np.cumsum(mask, axis=-1) - 1
        position_ids[mask == 0] = 1
        position_ids = position_ids[:, -step_ids.shape[1] :]
        feeds = {"input_ids": step_ids, "attention_mask": mask, "position_ids": position_ids, **past, **cross}
        outs = dict(zip(out_names, decoder.run(out_names, feeds)))
        next_ids = outs["logits"][:, -1, :].argmax(-1).astype(np.int64)
        for row in range(batch):
            if finished[row]:
                next_ids[row] = pad_id  # what generate() feeds a finished row
            else:
                results[row].append(int(next_ids[row]))
                finished[row] = int(next_ids[row]) == stop_id
        if all(finished):
            break
        past = {name: outs[name.replace("past_key_values.", "present.", 1)] for name in past_inputs}
        step_ids = next_ids[:, None]
        mask = np.concatenate([mask, np.ones((batch, 1), np.int64)], axis=1)
    return results


def _strip_after_stop(seq: list[int], prompt_len: int, stop_id: int) -> list[int]:
    """generate()'s batched output, padded after a row stops, cut back to prompt + ids up to the stop token."""
    gen = seq[prompt_len:]
    if stop_id in gen:
        gen = gen[: gen.index(stop_id) + 1]
    return seq[:prompt_len] + gen


@torch.no_grad()
def hf_generate(model, pixel_values: np.ndarray, max_new_tokens: int, prompt: list[int] | None = None):
    """model.generate() greedy; the sequences (prompt included) as lists."""
    kwargs = {}
    if prompt is not None:
        kwargs["decoder_input_ids"] = torch.tensor([prompt] * pixel_values.shape[0], dtype=torch.long)
    pixels = torch.from_numpy(pixel_values)
    out = model.generate(pixel_values=pixels, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, **kwargs)
    return out.tolist()


@torch.no_grad()
def verify(model, out_dir: Path, image_size: int, max_new_tokens: int = 8, log=print) -> dict:
    """ORT against PyTorch: encoder outputs, decoder logits on a first (past = 0) and a cached step, and greedy
    token ids identical to model.generate() for batch 1, batch 2 and a left-padded batch 2."""
    gen_cfg = model.generation_config
    # As generate() (_prepare_special_tokens): the decoder starts on decoder_start_token_id, else bos_token_id.
    start_id = gen_cfg.decoder_start_token_id if gen_cfg.decoder_start_token_id is not None else gen_cfg.bos_token_id
    if start_id is None:
        raise ValueError("generation config has neither decoder_start_token_id nor bos_token_id (generate() refuses)")
    eos = gen_cfg.eos_token_id
    stop_id = eos if isinstance(eos, int) else eos[0]
    pad_id = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else stop_id
    rng = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(3, 3, image_size, image_size, generator=rng).numpy()

    # 1. encoder outputs
    encoder = _session(out_dir / "encoder_model.onnx")
    enc_names = [o.name for o in encoder.get_outputs()]
    encoded = dict(zip(enc_names, encoder.run(enc_names, {"pixel_values": pixel_values[:2]})))
    ref = EncoderWithCross(model)(torch.from_numpy(pixel_values[:2]))
    for name, expected in zip(enc_names, ref):
        np.testing.assert_allclose(encoded[name], expected.numpy(), rtol=1e-3, atol=1e-4, err_msg=name)

    # 2. logits of a first step (zero-length past, 2 tokens) and of a cached step against HF's full forward
    decoder = _session(out_dir / "decoder_model_merged.onnx")
    layers, heads, head_dim = _geometry(model)
    out_names = [o.name for o in decoder.get_outputs()]
    cross = {k: v for k, v in encoded.items() if k.startswith("cross_key_values.")}
    ids = np.array([[start_id, 7 % model.decoder.config.vocab_size]] * 2, np.int64)
    empty = np.zeros((2, heads, 0, head_dim), np.float32)
    past = {f"past_key_values.{i}.{k}": empty for i in range(layers) for k in ("key", "value")}
    first = dict(zip(out_names, decoder.run(out_names, {
        "input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.tile(np.arange(2), (2, 1)),
        **past, **cross,
    })))  # fmt: skip
    nxt = first["logits"][:, -1].argmax(-1)[:, None].astype(np.int64)
    second = dict(zip(out_names, decoder.run(out_names, {
        "input_ids": nxt, "attention_mask": np.ones((2, 3), np.int64), "position_ids": np.full((2, 1), 2, np.int64),
        **{k: first[k.replace("past_key_values.", "present.", 1)] for k in past}, **cross,
    })))  # fmt: skip
    full = np.concatenate([ids, nxt], axis=1)
    ref_logits = model(pixel_values=torch.from_numpy(pixel_values[:2]), decoder_input_ids=torch.from_numpy(full)).logits
    np.testing.assert_allclose(first["logits"], ref_logits[:, :2].numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(second["logits"][:, 0], ref_logits[:, 2].numpy(), rtol=1e-3, atol=1e-3)

    # 3. greedy ids == model.generate()
    report = {}
    for i in range(pixel_values.shape[0]):  # batch 1
        pv = pixel_values[i : i + 1]
        hf = hf_generate(model, pv, max_new_tokens)
        ours = greedy_onnx(out_dir, pv, [[start_id]], max_new_tokens, stop_id, pad_id)
        assert ours == hf, ("batch 1", i, ours, hf)
        report[f"batch1[{i}]"] = ours[0]
    pv = pixel_values[:2]  # batch 2, same prompt: generate() pads finished rows
    hf = [_strip_after_stop(s, 1, stop_id) for s in hf_generate(model, pv, max_new_tokens)]
    ours = greedy_onnx(out_dir, pv, [[start_id]] * 2, max_new_tokens, stop_id, pad_id)
    assert ours == hf, ("batch 2", ours, hf)
    report["batch2"] = ours
    # Left padding: row 1 continues a 3-token prompt (two ids generate() produced for another image, or
    # fixed ids when that caption stopped at once), row 0 starts from [start] padded on the left. Each row must
    # equal generate() on that row alone (VisionEncoderDecoder's generate() does not derive decoder
    # position ids from a decoder mask, so a padded batch is compared row by row).
    other = [t for t in report["batch1[2]"][1:] if t != stop_id][:2]
    other += [t for t in (5, 9) if t != stop_id][: 2 - len(other)]
    prompts = [[start_id], [start_id, *other]]
    ours = greedy_onnx(out_dir, pv, prompts, max_new_tokens, stop_id, pad_id)
    for row, prompt in enumerate(prompts):
        hf = hf_generate(model, pv[row : row + 1], max_new_tokens, prompt=prompt)[0]
        assert ours[row] == hf, ("left-padded batch 2", row, ours[row], hf)
    report["batch2_left_padded"] = ours
    for name, value in report.items():
        log(f"  {name}: token ids identical to generate(): {value}")
    return report


def load_checkpoint(checkpoint: Path) -> VisionEncoderDecoderModel:
    for name in REQUIRED_FILES:
        if not (checkpoint / name).is_file():
            raise FileNotFoundError(f"{checkpoint / name} is missing; is this a VisionEncoderDecoder checkpoint?")
    config = json.loads((checkpoint / "config.json").read_text())
    decoder = config.get("decoder", {})
    if config.get("model_type") != "vision-encoder-decoder" or decoder.get("model_type") != "gpt2":
        raise ValueError(f"{checkpoint}: expected model_type vision-encoder-decoder with a gpt2 decoder")
    if not decoder.get("add_cross_attention"):
        raise ValueError(f"{checkpoint}: the GPT-2 decoder has no cross-attention (add_cross_attention)")
    model = VisionEncoderDecoderModel.from_pretrained(str(checkpoint), attn_implementation="eager")
    return model.eval()


def export(
    checkpoint: Path, out_dir: Path, int8: bool = False, verify_tokens: int = 8, log=print, int4: bool = False
) -> dict:
    model = load_checkpoint(checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_size = model.encoder.config.image_size
    with torch.no_grad():
        enc_seq = model.encoder(pixel_values=torch.zeros(1, 3, image_size, image_size)).last_hidden_state.shape[1]
        with conv1d_as_matmul():
            export_encoder(model, out_dir, image_size, enc_seq)
            export_decoder(model, out_dir, enc_seq)
    model.eval()
    for name in COPIED_FILES:
        src = checkpoint / name
        if src.is_file():
            shutil.copyfile(src, out_dir / name)
    if not (out_dir / "generation_config.json").is_file():
        model.generation_config.save_pretrained(str(out_dir))
    if not (out_dir / "tokenizer.json").is_file():
        # Checkpoints with only vocab.json + merges.txt: let transformers build the fast tokenizer.
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(checkpoint), use_fast=True).save_pretrained(str(out_dir))
        if not (out_dir / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{checkpoint} has no tokenizer.json and none could be built from it")
    # One-input Concats copy the cross-attention cache at every step; dropping them changes no result.
    import onnx_cleanup

    onnx_cleanup.clean_directory(out_dir)
    facts = {
        "encoder": graph_facts(out_dir / "encoder_model.onnx", model),
        "decoder": check_decoder_graph(out_dir / "decoder_model_merged.onnx", model),
    }
    facts["tokens"] = verify(model, out_dir, image_size, verify_tokens, log=log)
    if int8:
        quantize(out_dir, ("encoder_model.onnx", "decoder_model_merged.onnx"))
    write_record(out_dir, LAYOUT, int8, exported_by="tools/export_vit_gpt2.py")
    if int4:
        # 4-bit decoder weights and an int8 encoder, as tools/quantize_export.py --int4 writes them.
        import quantize_export

        quantize_export.quantize_in_place(out_dir, quantize_export.int4_settings())
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="VisionEncoderDecoder checkpoint directory")
    parser.add_argument("--out", type=Path, required=True, help="output model directory")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--int8", action="store_true", help="dynamically quantized int8 weights (same layout)")
    precision.add_argument(
        "--int4", action="store_true", help="4-bit decoder weights (MatMulNBits) and an int8 encoder (same layout)"
    )
    parser.add_argument("--verify-tokens", type=int, default=8, help="max_new_tokens of the generate() comparison")
    args = parser.parse_args(argv)
    facts = export(args.checkpoint, args.out, int8=args.int8, verify_tokens=args.verify_tokens, int4=args.int4)
    dec = facts["decoder"]
    print(f"decoder inputs: {dec['inputs']}")
    print(f"decoder: {dec['nodes']} nodes, {dec['MatMul']} MatMul, {dec['Gemm']} Gemm, 0 cross K/V projections")
    print(f"exported ViT-GPT2 from {args.checkpoint} to {args.out} ({LAYOUT}, {'int4' if args.int4 else 'int8' if args.int8 else 'fp32'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
