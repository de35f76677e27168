#!/usr/bin/env python3
"""Export a BLIP captioning checkpoint (BlipForConditionalGeneration) to the ONNX layout capwatch serves.

Neither Optimum nor Transformers.js exports BLIP, so capwatch ships this exporter. Export the real
model on a machine with internet access, then copy OUTDIR wherever capwatch runs:

    huggingface-cli download Salesforce/blip-image-captioning-base --local-dir blip-base
    tools/.venv/bin/python tools/export_blip.py --checkpoint blip-base --out models/blip-base

(`Salesforce/blip-image-captioning-large` works the same way.)

Layout written to OUTDIR (also described in tools/BLIP_LAYOUT.md):

  vision_model.onnx
      in   pixel_values   float32 [batch, 3, image_size, image_size]   (preprocessed as preprocessor_config.json
                                                                       says; only batch is dynamic)
      out  image_embeds   float32 [batch, enc_seq, hidden]   enc_seq = (image_size / patch_size)^2 + 1; the vision
                                                              last_hidden_state, exactly what BLIP's generate()
                                                              feeds the text decoder
  text_decoder.onnx       one graph with a self-attention KV cache
      in   input_ids                 int64   [batch, seq]
           attention_mask            int64   [batch, past + seq]   (1 = real token, 0 = padding)
           encoder_hidden_states     float32 [batch, enc_seq, hidden]  (= image_embeds)
           past_key_values.{i}.key   float32 [batch, heads, past, head_dim]   for i in 0..num_layers
           past_key_values.{i}.value float32 [batch, heads, past, head_dim]
      out  logits                    float32 [batch, seq, vocab]
           present.{i}.key           float32 [batch, heads, past + seq, head_dim]
           present.{i}.value         float32 [batch, heads, past + seq, head_dim]
      Cross-attention keys/values are recomputed from encoder_hidden_states at every step (no cross cache).
      Position ids are derived inside the graph from attention_mask exactly as HF generate() does
      (cumsum(attention_mask) - 1, padding positions set to 1), so left-padded batches work.
  config.json, preprocessor_config.json, tokenizer.json (+ tokenizer_config.json, special_tokens_map.json,
  vocab.txt, generation_config.json when present): copied unchanged.

Greedy decoding (what HF `BlipForConditionalGeneration.generate()` does in transformers 4.57):
  1. image_embeds = vision_model(pixel_values)
  2. prompt = [text_config.bos_token_id]  (generate() builds [bos, eos] and drops the last token)
  3. step 1: feed the whole prompt, attention_mask of ones, and zero-length past tensors
     [batch, heads, 0, head_dim]; later steps: only the last token, the attention mask grown by one,
     and the previous step's present.* as past_key_values.*.
  4. next = argmax(logits[:, -1, :]); stop when next == text_config.sep_token_id (that token is still
     appended to the output) or after max_new_tokens. pad_token_id = text_config.pad_token_id.
     generation_config.json's eos_token_id is NOT used by BLIP's generate(); read bos/sep/pad from
     config.json["text_config"] and never hard-code 30522 / 102.
  5. caption = tokenizer.decode(generated ids, skip_special_tokens=True).strip()

Every .onnx written is loaded back with onnxruntime (IR version kept <= 10 so ONNX Runtime 1.31 loads
it) and checked against PyTorch, including a first step with zero-length past tensors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from transformers import BlipForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

OPSET = 17
# ONNX Runtime 1.31 refuses IR version 14 (what recent `onnx` writes by default); 10 is safe.
MAX_IR_VERSION = 10
COPIED_FILES = (
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "generation_config.json",
)
REQUIRED_FILES = ("config.json", "preprocessor_config.json")


class VisionModel(nn.Module):
    """pixel_values -> image_embeds (the vision last_hidden_state)."""

    def __init__(self, blip: BlipForConditionalGeneration):
        super().__init__()
        self.vision_model = blip.vision_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state


class VisionModelWithCross(nn.Module):
    """pixel_values -> image_embeds and every text layer's cross-attention keys and values, computed once
    per image exactly as BlipTextSelfAttention does (`key(embeds).view(b, -1, heads, head_dim).transpose(1, 2)`)."""

    def __init__(self, blip: BlipForConditionalGeneration):
        super().__init__()
        self.vision_model = blip.vision_model
        self.cross = nn.ModuleList(layer.crossattention.self for layer in blip.text_decoder.bert.encoder.layer)

    def forward(self, pixel_values: torch.Tensor):
        embeds = self.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state
        batch = embeds.shape[0]
        outputs = [embeds]
        for attention in self.cross:
            for projection in (attention.key, attention.value):
                kv = projection(embeds).view(batch, -1, attention.num_attention_heads, attention.attention_head_size)
                outputs.append(kv.transpose(1, 2))
        return tuple(outputs)


def _filled_cache(flat, layers: int) -> DynamicCache:
    """A DynamicCache holding `flat` = [layer0 key, layer0 value, layer1 key, ...]."""
    cache = DynamicCache()
    for layer in range(layers):
        cache.update(flat[2 * layer], flat[2 * layer + 1], layer)
    return cache


def cross_cached(flat, layers: int, encoder_hidden_size: int) -> tuple[EncoderDecoderCache, torch.Tensor]:
    """The cache of one step of a cross-cache layout, from `flat` = self-attention past, then cross keys/values
    (each [layer0 key, layer0 value, ...]): HF's EncoderDecoderCache with every cross layer marked as already
    computed, so the decoder reads them instead of projecting the encoder states; and zero encoder states of the
    right shape, which the decoder only reads for their shape (its all-ones encoder attention mask)."""
    past_flat, cross_flat = flat[: 2 * layers], flat[2 * layers :]
    cache = EncoderDecoderCache(_filled_cache(past_flat, layers), _filled_cache(cross_flat, layers))
    for layer in range(layers):
        cache.is_updated[layer] = True
    cross_key = cross_flat[0]
    return cache, cross_key.new_zeros(cross_key.shape[0], cross_key.shape[2], encoder_hidden_size)


def self_attention_presents(out) -> list[torch.Tensor]:
    """[present.0.key, present.0.value, ...] of a decoder output's self-attention cache."""
    presents = []
    for layer in out.past_key_values.self_attention_cache.layers:
        presents += [layer.keys, layer.values]
    return presents


def _decode_step(text_decoder, input_ids, attention_mask, encoder_hidden_states, cache: EncoderDecoderCache):
    """One step of BLIP's text decoder: (logits, present.0.key, present.0.value, ...) of the self-attention cache."""
    # Same position ids as GenerationMixin.prepare_inputs_for_generation.
    position_ids = attention_mask.long().cumsum(-1) - 1
    position_ids = position_ids.masked_fill(attention_mask == 0, 1)
    position_ids = position_ids[:, -input_ids.shape[1] :]
    out = text_decoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        encoder_hidden_states=encoder_hidden_states,
        past_key_values=cache,
        use_cache=True,
        return_dict=True,
    )
    return (out.logits, *self_attention_presents(out))


class TextDecoderCrossCached(nn.Module):
    """One decoding step that reads the cross-attention keys/values instead of computing them from the image
    embeddings: HF's own EncoderDecoderCache with every cross layer marked as already computed."""

    def __init__(self, blip: BlipForConditionalGeneration):
        super().__init__()
        self.text_decoder = blip.text_decoder
        self.num_layers = blip.config.text_config.num_hidden_layers
        self.encoder_hidden_size = blip.config.text_config.encoder_hidden_size

    def forward(self, input_ids, attention_mask, *flat):
        cache, encoder_hidden_states = cross_cached(flat, self.num_layers, self.encoder_hidden_size)
        return _decode_step(self.text_decoder, input_ids, attention_mask, encoder_hidden_states, cache)


class TextDecoderWithPast(nn.Module):
    """One decoding step of BLIP's text decoder with flat self-attention KV-cache tensors."""

    def __init__(self, blip: BlipForConditionalGeneration):
        super().__init__()
        self.text_decoder = blip.text_decoder
        self.num_layers = blip.config.text_config.num_hidden_layers

    def forward(self, input_ids, attention_mask, encoder_hidden_states, *past_flat):
        cache = EncoderDecoderCache(_filled_cache(past_flat, self.num_layers), DynamicCache())
        return _decode_step(self.text_decoder, input_ids, attention_mask, encoder_hidden_states, cache)


def _finalize_onnx(path: Path, output_dims: dict[str, list[int | str]] | None = None) -> None:
    """Keep the IR version ORT 1.31 accepts, name output dims, make sure the model is self-contained, check it."""
    model = onnx.load(str(path))
    for output in model.graph.output:
        for i, dim in enumerate((output_dims or {}).get(output.name, [])):
            proto = output.type.tensor_type.shape.dim[i]
            if isinstance(dim, int):
                proto.dim_value = dim
            else:
                proto.dim_param = dim
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    leftovers = [p for p in path.parent.iterdir() if p.suffix == ".onnx_data" or p.name.endswith(".data")]
    if leftovers:
        raise RuntimeError(f"unexpected external-data files next to {path.name}: {leftovers}")


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def cross_names(layers: int) -> list[str]:
    return [f"cross_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def export_vision(blip, out_dir: Path, image_size: int, enc_seq: int, cross_cache: bool) -> Path:
    path = out_dir / "vision_model.onnx"
    dummy = torch.randn(1, 3, image_size, image_size)
    text_cfg = blip.config.text_config
    heads = text_cfg.num_attention_heads
    cross = cross_names(text_cfg.num_hidden_layers) if cross_cache else []
    # height/width must equal vision_config.image_size (no position-embedding interpolation).
    dynamic_axes = {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}, **{n: {0: "batch"} for n in cross}}
    # .eval() on the wrapper: torch.onnx.export restores a fresh module's (training) mode on the
    # submodules it shares with `blip`, which would switch dropout on for what runs afterwards.
    torch.onnx.export(
        (VisionModelWithCross(blip) if cross_cache else VisionModel(blip)).eval(),
        (dummy,),
        str(path),
        input_names=["pixel_values"],
        output_names=["image_embeds", *cross],
        dynamic_axes=dynamic_axes,
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    dims = {"image_embeds": ["batch", enc_seq, blip.config.vision_config.hidden_size]}
    dims.update({n: ["batch", heads, enc_seq, text_cfg.hidden_size // heads] for n in cross})
    _finalize_onnx(path, dims)
    return path


def export_text_decoder(blip, out_dir: Path, enc_seq: int, cross_cache: bool) -> Path:
    text_cfg = blip.config.text_config
    layers = text_cfg.num_hidden_layers
    heads = text_cfg.num_attention_heads
    head_dim = text_cfg.hidden_size // heads
    enc_hidden = text_cfg.encoder_hidden_size
    # Trace with past > 0 so the cache path (concat with past) is in the graph; dynamic axes make
    # past = 0 work too (verified below).
    batch, seq, past = 2, 3, 4
    input_ids = torch.randint(0, text_cfg.vocab_size, (batch, seq), dtype=torch.long)
    attention_mask = torch.ones(batch, past + seq, dtype=torch.long)
    encoder_hidden_states = torch.randn(batch, enc_seq, enc_hidden)
    past_flat = [torch.randn(batch, heads, past, head_dim) for _ in range(2 * layers)]

    cross_flat = [torch.randn(batch, heads, enc_seq, head_dim) for _ in range(2 * layers)]

    input_names = ["input_ids", "attention_mask"] + ([] if cross_cache else ["encoder_hidden_states"])
    output_names = ["logits"]
    dynamic_axes = {
        "input_ids": {0: "batch", 1: "seq"},
        "attention_mask": {0: "batch", 1: "past_plus_seq"},
        "logits": {0: "batch", 1: "seq"},
    }
    if not cross_cache:
        dynamic_axes["encoder_hidden_states"] = {0: "batch", 1: "enc_seq"}
    for i in range(layers):
        for kind in ("key", "value"):
            name_in, name_out = f"past_key_values.{i}.{kind}", f"present.{i}.{kind}"
            input_names.append(name_in)
            output_names.append(name_out)
            dynamic_axes[name_in] = {0: "batch", 2: "past"}
            dynamic_axes[name_out] = {0: "batch", 2: "past_plus_seq"}

    if cross_cache:
        for name in cross_names(layers):
            input_names.append(name)
            dynamic_axes[name] = {0: "batch", 2: "enc_seq"}
        module, args = TextDecoderCrossCached(blip).eval(), (input_ids, attention_mask, *past_flat, *cross_flat)
    else:
        module, args = TextDecoderWithPast(blip).eval(), (input_ids, attention_mask, encoder_hidden_states, *past_flat)

    path = out_dir / "text_decoder.onnx"
    torch.onnx.export(
        module,
        args,
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


@torch.no_grad()
def verify(blip, out_dir: Path, image_size: int, steps: int = 4) -> None:
    """Compare ORT against PyTorch: vision embeddings and a short greedy decode with the KV cache,
    starting from zero-length past tensors."""
    text_cfg = blip.config.text_config
    vision = _session(out_dir / "vision_model.onnx")
    decoder = _session(out_dir / "text_decoder.onnx")

    gen = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(2, 3, image_size, image_size, generator=gen)
    ref_embeds = blip.vision_model(pixel_values=pixel_values).last_hidden_state
    vision_outputs = [o.name for o in vision.get_outputs()]
    encoded = dict(zip(vision_outputs, vision.run(vision_outputs, {"pixel_values": pixel_values.numpy()})))
    embeds = encoded["image_embeds"]
    np.testing.assert_allclose(embeds, ref_embeds.numpy(), rtol=1e-3, atol=1e-4)
    decoder_inputs = {i.name for i in decoder.get_inputs()}
    # Either the image embeddings or the cross-attention keys/values computed once from them.
    encoder_feeds = (
        {"encoder_hidden_states": embeds}
        if "encoder_hidden_states" in decoder_inputs
        else {name: value for name, value in encoded.items() if name in decoder_inputs}
    )

    heads = text_cfg.num_attention_heads
    head_dim = text_cfg.hidden_size // heads
    batch = embeds.shape[0]
    past_inputs = [i.name for i in decoder.get_inputs() if i.name.startswith("past_key_values.")]
    output_names = [o.name for o in decoder.get_outputs()]
    feeds_past = {name: np.zeros((batch, heads, 0, head_dim), np.float32) for name in past_inputs}
    ids = np.full((batch, 1), text_cfg.bos_token_id, np.int64)
    step_ids = ids
    for _ in range(steps):
        mask = np.ones((batch, ids.shape[1]), np.int64)
        outs = dict(
            zip(
                output_names,
                decoder.run(
                    output_names,
                    {
                        "input_ids": step_ids,
                        "attention_mask": mask,
                        **encoder_feeds,
                        **feeds_past,
                    },
                ),
            )
        )
        ref_logits = blip.text_decoder(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            encoder_hidden_states=torch.from_numpy(embeds),
            use_cache=False,
        ).logits[:, -1, :]
        np.testing.assert_allclose(outs["logits"][:, -1, :], ref_logits.numpy(), rtol=1e-3, atol=1e-3)
        next_ids = outs["logits"][:, -1, :].argmax(-1).astype(np.int64)[:, None]
        feeds_past = {name: outs[name.replace("past_key_values.", "present.")] for name in past_inputs}
        ids = np.concatenate([ids, next_ids], axis=1)
        step_ids = next_ids


def quantize(out_dir: Path, names: tuple[str, ...] = ("vision_model.onnx", "text_decoder.onnx")) -> None:
    """Dynamic int8 weights (onnxruntime.quantization, QInt8) for the graphs `names`, the same layout, the IR
    version ORT accepts; each checked to load."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for name in names:
        path = out_dir / name
        fp32 = out_dir / f"{name}.fp32"
        path.rename(fp32)
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8)
        fp32.unlink()
        model = onnx.load(str(path))
        if model.ir_version > MAX_IR_VERSION:
            model.ir_version = MAX_IR_VERSION
            onnx.save(model, str(path))
        _session(path)


def write_record(out_dir: Path, layout: str, int8: bool, exported_by: str = "tools/export_blip.py") -> None:
    """capwatch_export.json: what an exporter wrote (capwatch reads the precision from it)."""
    record = {"exported_by": exported_by, "layout": layout, "precision": "int8" if int8 else "fp32"}
    (out_dir / "capwatch_export.json").write_text(json.dumps(record, indent=2) + "\n")


def export(checkpoint: Path, out_dir: Path, cross_cache: bool = True, int8: bool = False, int4: bool = False) -> None:
    for name in REQUIRED_FILES:
        if not (checkpoint / name).is_file():
            raise FileNotFoundError(f"{checkpoint / name} is missing; is this a BLIP captioning checkpoint?")
    out_dir.mkdir(parents=True, exist_ok=True)
    blip = BlipForConditionalGeneration.from_pretrained(str(checkpoint), attn_implementation="eager")
    blip.eval()
    vision_cfg = blip.config.vision_config
    image_size = vision_cfg.image_size
    enc_seq = (image_size // vision_cfg.patch_size) ** 2 + 1

    with torch.no_grad():
        export_vision(blip, out_dir, image_size, enc_seq, cross_cache)
        export_text_decoder(blip, out_dir, enc_seq, cross_cache)
    for name in COPIED_FILES:
        src = checkpoint / name
        if src.is_file():
            shutil.copyfile(src, out_dir / name)
    if not (out_dir / "tokenizer.json").is_file():
        # Older checkpoints ship only vocab.txt: let transformers build the fast tokenizer.
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(checkpoint), use_fast=True).save_pretrained(str(out_dir))
        if not (out_dir / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{checkpoint} has no tokenizer.json and none could be built from it")
    # One-input Concats copy the cross-attention cache at every step; dropping them changes no result.
    import onnx_cleanup

    onnx_cleanup.clean_directory(out_dir)
    verify(blip, out_dir, image_size)
    if int8:
        quantize(out_dir)
    write_record(out_dir, "blip+cross-cache" if cross_cache else "blip", int8)
    if int4:
        # 4-bit decoder weights and an int8 encoder, as tools/quantize_export.py --int4 writes them.
        import quantize_export

        quantize_export.quantize_in_place(out_dir, quantize_export.int4_settings())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="BLIP checkpoint directory (save_pretrained)")
    parser.add_argument("--out", type=Path, required=True, help="output model directory")
    parser.add_argument(
        "--no-cross-cache",
        action="store_true",
        help="the older layout: the decoder recomputes cross-attention keys/values from image_embeds every step",
    )
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--int8", action="store_true", help="dynamically quantized int8 weights (same layout)")
    precision.add_argument(
        "--int4", action="store_true", help="4-bit decoder weights (MatMulNBits) and an int8 encoder (same layout)"
    )
    args = parser.parse_args(argv)
    export(args.checkpoint, args.out, cross_cache=not args.no_cross_cache, int8=args.int8, int4=args.int4)
    print(f"exported BLIP from {args.checkpoint} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
