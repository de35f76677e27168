#!/usr/bin/env python3
"""Procedural scene world for the bundled default captioning model.

Importable (the trainer uses exactly this code) and a CLI:

    python tools/draw_scenes.py --count 20 --seed 7 --out /tmp/scenes

The world:
  * square RGB canvas (128x128 when saved), uniform background, each channel in [200, 255];
  * shapes: circle, square (axis-aligned), triangle (equilateral, pointing up);
  * colours (each channel jittered by up to +-20): red, green, blue, yellow, purple, orange;
  * sizes: small = bounding-box side 18-28 % of the canvas side, large = 38-50 %;
  * one-object scenes: ``a {size} {colour} {shape}``;
  * two-object scenes: two non-overlapping shapes that do not share both colour and shape,
    sizes random and unnamed, centres differing along the dominant axis by at least 1.5x
    their difference along the other axis; the first-named object is the leftmost
    (``left of``) or topmost (``above``) one;
  * half the scenes have one object, half two; anti-aliased (drawn at 4x, LANCZOS down).

``draw_scene(rng)`` takes a ``random.Random`` and returns ``(PIL.Image, caption, objects)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from typing import Any

from PIL import Image, ImageDraw

CANVAS_PX = 128
SUPERSAMPLE = 4

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 130, 30),
}
SIZES: dict[str, tuple[float, float]] = {"small": (0.18, 0.28), "large": (0.38, 0.50)}
RELATIONS = ("left of", "above")
COLOUR_JITTER = 20
BACKGROUND_RANGE = (200, 255)
DOMINANCE_RATIO = 1.5
# Gap (in canvas pixels) kept between the bounding boxes of two objects.
MIN_GAP_PX = 2.0
# Keep every object at least this far (canvas pixels) from the canvas edge.
EDGE_MARGIN_PX = 1.0

#: Words a quality check looks for: colours, shapes, sizes and relation words.
KEYWORD_VOCAB = frozenset(
    list(COLOURS) + list(SHAPES) + list(SIZES) + ["left", "above"]
)

#: Every word a caption can contain (the tokenizer's vocabulary, besides specials).
CAPTION_WORDS = (
    ["a", "an"] + list(SIZES) + list(COLOURS) + list(SHAPES) + ["left", "of", "above"]
)


def article(word: str) -> str:
    """English indefinite article for the word that follows it."""
    return "an" if word[0] in "aeiou" else "a"


def caption_keywords(caption: str) -> list[str]:
    """Colour/shape/size/relation words of a caption, in order."""
    return [w for w in caption.split() if w in KEYWORD_VOCAB]


def caption_type(caption: str) -> str:
    """The kind of scene a caption describes: "one object", "left of" or "above"."""
    if " left of " in caption:
        return "left of"
    if " above " in caption:
        return "above"
    return "one object"


def keyword_recall(expected_caption: str, predicted_caption: str) -> tuple[int, int]:
    """(expected keywords found in the prediction, expected keywords), multiset-aware."""
    expected = caption_keywords(expected_caption)
    predicted = predicted_caption.split()
    hits = 0
    for word in set(expected):
        hits += min(expected.count(word), predicted.count(word))
    return hits, len(expected)


def _jitter(rgb: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    return tuple(
        max(0, min(255, c + rng.randint(-COLOUR_JITTER, COLOUR_JITTER))) for c in rgb
    )  # type: ignore[return-value]


def _extent(shape: str, side: float) -> tuple[float, float]:
    """(width, height) of a shape's bounding box whose side (width) is `side`."""
    if shape == "triangle":
        return side, side * math.sqrt(3.0) / 2.0
    return side, side


def _make_object(
    rng: random.Random, shape: str, colour: str, size_name: str, canvas: int
) -> dict[str, Any]:
    lo, hi = SIZES[size_name]
    side = rng.uniform(lo, hi) * canvas
    w, h = _extent(shape, side)
    return {
        "shape": shape,
        "colour": colour,
        "size": size_name,
        "side_frac": side / canvas,
        "w": w,
        "h": h,
        "rgb": _jitter(COLOURS[colour], rng),
    }


def _place(obj: dict[str, Any], rng: random.Random, canvas: int) -> None:
    m = EDGE_MARGIN_PX
    obj["cx"] = rng.uniform(obj["w"] / 2 + m, canvas - obj["w"] / 2 - m)
    obj["cy"] = rng.uniform(obj["h"] / 2 + m, canvas - obj["h"] / 2 - m)


def _bbox(obj: dict[str, Any]) -> tuple[float, float, float, float]:
    return (
        obj["cx"] - obj["w"] / 2,
        obj["cy"] - obj["h"] / 2,
        obj["cx"] + obj["w"] / 2,
        obj["cy"] + obj["h"] / 2,
    )


def _boxes_apart(a: dict[str, Any], b: dict[str, Any], gap: float) -> bool:
    ax0, ay0, ax1, ay1 = _bbox(a)
    bx0, by0, bx1, by1 = _bbox(b)
    return ax1 + gap <= bx0 or bx1 + gap <= ax0 or ay1 + gap <= by0 or by1 + gap <= ay0


def _draw_object(draw: ImageDraw.ImageDraw, obj: dict[str, Any], scale: int) -> None:
    cx, cy = obj["cx"] * scale, obj["cy"] * scale
    w, h = obj["w"] * scale, obj["h"] * scale
    fill = tuple(obj["rgb"])
    if obj["shape"] == "circle":
        draw.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=fill)
    elif obj["shape"] == "square":
        draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=fill)
    else:  # equilateral triangle pointing up
        draw.polygon(
            [(cx, cy - h / 2), (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)],
            fill=fill,
        )


def _one_object(rng: random.Random, canvas: int) -> tuple[list[dict[str, Any]], str]:
    shape = rng.choice(SHAPES)
    colour = rng.choice(list(COLOURS))
    size_name = rng.choice(list(SIZES))
    obj = _make_object(rng, shape, colour, size_name, canvas)
    _place(obj, rng, canvas)
    caption = f"a {size_name} {colour} {shape}"
    return [obj], caption


def _two_objects(rng: random.Random, canvas: int) -> tuple[list[dict[str, Any]], str]:
    # The relation is chosen first (uniformly), so both relations are equally common.
    relation = rng.choice(RELATIONS)
    while True:
        kinds: list[tuple[str, str]] = []
        while len(kinds) < 2:
            kind = (rng.choice(list(COLOURS)), rng.choice(SHAPES))
            if kind not in kinds:
                kinds.append(kind)
        objs = [
            _make_object(rng, shape, colour, rng.choice(list(SIZES)), canvas)
            for colour, shape in kinds
        ]
        for _ in range(200):
            for obj in objs:
                _place(obj, rng, canvas)
            a, b = objs
            if not _boxes_apart(a, b, MIN_GAP_PX):
                continue
            dx, dy = b["cx"] - a["cx"], b["cy"] - a["cy"]
            if relation == "left of" and abs(dx) >= DOMINANCE_RATIO * abs(dy):
                # first-named = leftmost (smaller x)
                first, second = (a, b) if dx > 0 else (b, a)
            elif relation == "above" and abs(dy) >= DOMINANCE_RATIO * abs(dx):
                # first-named = topmost (smaller y; image y grows downwards)
                first, second = (a, b) if dy > 0 else (b, a)
            else:
                continue
            caption = (
                f"{article(first['colour'])} {first['colour']} {first['shape']} "
                f"{relation} "
                f"{article(second['colour'])} {second['colour']} {second['shape']}"
            )
            for obj in objs:
                obj["size"] = None  # sizes are not named in two-object scenes
            return [first, second], caption
        # Sizes too large to satisfy the constraints: draw new objects.


def draw_scene(
    rng: random.Random, n_objects: int | None = None, canvas: int = CANVAS_PX
) -> tuple[Image.Image, str, list[dict[str, Any]]]:
    """Draw one scene: (RGB image canvas x canvas, caption, objects).

    `n_objects` is 1 or 2; by default each is chosen with probability 1/2.
    Objects carry shape, colour, size (None in two-object scenes), centre and bounding
    box in canvas pixels, and the jittered RGB fill.
    """
    if n_objects is None:
        n_objects = 1 if rng.random() < 0.5 else 2
    background = tuple(rng.randint(*BACKGROUND_RANGE) for _ in range(3))
    if n_objects == 1:
        objs, caption = _one_object(rng, canvas)
    elif n_objects == 2:
        objs, caption = _two_objects(rng, canvas)
    else:
        raise ValueError(f"n_objects must be 1 or 2, got {n_objects}")
    big = canvas * SUPERSAMPLE
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)
    for obj in objs:
        _draw_object(draw, obj, SUPERSAMPLE)
    image = image.resize((canvas, canvas), Image.Resampling.LANCZOS)
    objects = [
        {
            "shape": o["shape"],
            "colour": o["colour"],
            "size": o["size"],
            "side_frac": round(o["side_frac"], 4),
            "center": [round(o["cx"], 2), round(o["cy"], 2)],
            "bbox": [round(v, 2) for v in _bbox(o)],
            "rgb": list(o["rgb"]),
        }
        for o in objs
    ]
    return image, caption, objects


def caption_to_filename(caption: str) -> str:
    return caption.replace(" ", "_")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--format", choices=("png", "jpg"), default="png")
    args = parser.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)
    records = []
    for index in range(args.count):
        image, caption, objects = draw_scene(rng)
        name = f"{index:05d}_{caption_to_filename(caption)}.{args.format}"
        if args.format == "jpg":
            image.save(os.path.join(args.out, name), quality=90)
        else:
            image.save(os.path.join(args.out, name))
        records.append(
            {
                "file": name,
                "caption": caption,
                "keywords": caption_keywords(caption),
                "objects": objects,
            }
        )
    with open(os.path.join(args.out, "captions.jsonl"), "w") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    with open(os.path.join(args.out, "captions.json"), "w") as fh:
        json.dump(records, fh, indent=1)
    print(f"wrote {len(records)} scenes to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
