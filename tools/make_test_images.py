#!/usr/bin/env python3
"""Write test_images/: seven scenes drawn by tools/draw_scenes.py plus one noise image,
and test_images/expected.json (file, exact expected caption or null, keywords).

    tools/.venv/bin/python tools/make_test_images.py [--model models/default]

With a model (default: models/default if it exists) every scene is captioned from the
file on disk (so JPEGs are checked after compression) through the ONNX greedy loop of
tools/train_default_model.py; a scene the model gets wrong is reported and replaced by
the next seed's scene of the same kind.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import draw_scenes  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRST_SEED = 4242
JPEG_QUALITY = 90
NOISE_SEED = 1234

# (description, predicate on (caption, objects), file extension)
SLOTS = [
    ("one small object", lambda c, o: len(o) == 1 and o[0]["size"] == "small", "png"),
    ("one large object", lambda c, o: len(o) == 1 and o[0]["size"] == "large", "png"),
    ("one object, jpeg", lambda c, o: len(o) == 1, "jpg"),
    ("left of", lambda c, o: " left of " in c, "png"),
    ("above", lambda c, o: " above " in c, "jpg"),
    ("an orange ...", lambda c, o: len(o) == 2 and c.startswith("an orange "), "png"),
    ("left of, jpeg", lambda c, o: " left of " in c, "jpg"),
]


def save(image: Image.Image, path: Path) -> None:
    if path.suffix == ".jpg":
        image.save(path, quality=JPEG_QUALITY)
    else:
        image.save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "test_images")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "default")
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args()

    captioner = None
    if not args.no_verify and (args.model / "decoder_model_merged.onnx").exists():
        from train_default_model import OnnxCaptioner

        captioner = OnnxCaptioner(args.model)
    args.out.mkdir(parents=True, exist_ok=True)

    records = []
    used_captions: set[str] = set()
    seen_words: set[str] = set()  # colours and shapes shown so far, for variety
    seed = FIRST_SEED
    for description, wanted, ext in SLOTS:
        while True:
            seed += 1
            image, caption, objects = draw_scenes.draw_scene(random.Random(seed))
            if caption in used_captions or not wanted(caption, objects):
                continue
            words = {o["colour"] for o in objects} | {o["shape"] for o in objects}
            # Variety: show every shape, then every colour, as early as possible.
            unseen = set(draw_scenes.SHAPES) - seen_words or set(draw_scenes.COLOURS) - seen_words
            if unseen and not words & unseen:
                continue
            path = args.out / f"{draw_scenes.caption_to_filename(caption)}.{ext}"
            save(image, path)
            if captioner is not None:
                predicted = captioner.caption(Image.open(path))
                if predicted != caption:
                    print(f"seed {seed} ({description}): model says {predicted!r}, "
                          f"expected {caption!r}; redrawing", file=sys.stderr)
                    path.unlink()
                    continue
            used_captions.add(caption)
            seen_words |= words
            records.append(
                {
                    "file": path.name,
                    "caption": caption,
                    "keywords": draw_scenes.caption_keywords(caption),
                }
            )
            print(f"{path.name}: seed {seed}"
                  + (" (model agrees)" if captioner is not None else ""), file=sys.stderr)
            break

    noise = np.random.default_rng(NOISE_SEED).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(noise, "RGB").save(args.out / "noise.png")
    noise_record = {
        "file": "noise.png",
        "caption": None,
        # Keywords of a real scene, so a quality check on noise scores low.
        "keywords": records[3]["keywords"],
    }
    if captioner is not None:
        print(f"noise.png: model says {captioner.caption(Image.open(args.out / 'noise.png'))!r}",
              file=sys.stderr)
    records.append(noise_record)
    (args.out / "expected.json").write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {len(records)} images and expected.json to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
