#!/usr/bin/env python3
"""Measure the bundled default model through a running capwatch server.

Draws scenes with tools/draw_scenes.py (seed never used in training), sends each one as a
PNG (or, with ``--format jpeg``, a JPEG of ``--jpeg-quality``, default 90) to
``POST /caption`` and compares the caption with the scene's true caption:

    cargo run --release -- serve --model models/default --port 8000 &
    tools/.venv/bin/python tools/eval_server.py --url http://127.0.0.1:8000 --count 1000
    tools/.venv/bin/python tools/eval_server.py --url http://127.0.0.1:8000 --count 1000 --format jpeg

Prints and writes (``--out``) exact-match accuracy, keyword recall (same definition as the
training script's evaluation), accuracy per caption type, the confusion of caption types
(true type -> predicted type: one object / left of / above), and the server-reported and
client-measured latencies. Needs only Pillow (for drawing) and the standard library.

With ``--reference-url`` every scene also goes to a second server (e.g. the fp32 model while
``--url`` serves its int8 or int4 copy), interleaved scene by scene, and the report adds how
often both captioned alike (``agreement_with_reference``), the reference's own exact-match
accuracy, and both servers' model time::

    tools/.venv/bin/python tools/eval_server.py --url http://127.0.0.1:8001 \
        --reference-url http://127.0.0.1:8000 --count 1000
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import draw_scenes  # noqa: E402

DEFAULT_SEED = 99_000_001  # the training script's EVAL_SEED: never used for training



def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


CAPTION_TYPES = ("one object", "left of", "above")


def post_image(url: str, data: bytes, content_type: str) -> tuple[dict, float]:
    request = urllib.request.Request(f"{url}/caption", data=data, headers={"content-type": content_type}, method="POST")
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    return body, (time.perf_counter() - started) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--format", choices=("png", "jpeg"), default="png", help="how scenes are sent")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="Pillow JPEG quality for --format jpeg")
    parser.add_argument("--reference-url", help="a second server to compare every caption with (e.g. fp32)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    agree = reference_exact = 0
    reference_model_ms: list[float] = []
    disagreements = []
    content_type = "image/png" if args.format == "png" else "image/jpeg"
    confusion = {t: {p: 0 for p in CAPTION_TYPES} for t in CAPTION_TYPES}

    rng = random.Random(args.seed)
    exact = 0
    hits = expected = 0
    per_type: dict[str, list[int]] = {}
    client_ms: list[float] = []
    server_total_ms: list[float] = []
    model_ms: list[float] = []
    mistakes = []
    for _ in range(args.count):
        image, truth, _objects = draw_scenes.draw_scene(rng)
        buffer = io.BytesIO()
        if args.format == "png":
            image.save(buffer, format="PNG")
        else:
            image.save(buffer, format="JPEG", quality=args.jpeg_quality)
        body, latency = post_image(args.url, buffer.getvalue(), content_type)
        predicted = body["caption"]
        if args.reference_url:
            reference, _ = post_image(args.reference_url, buffer.getvalue(), content_type)
            agree += reference["caption"] == predicted
            reference_exact += reference["caption"] == truth
            reference_model_ms.append(reference["timings_ms"]["encoder"] + reference["timings_ms"]["decoder"])
            if reference["caption"] != predicted and len(disagreements) < 20:
                disagreements.append({"truth": truth, "reference": reference["caption"], "predicted": predicted})
        ok = predicted == truth
        exact += ok
        h, e = draw_scenes.keyword_recall(truth, predicted)
        hits, expected = hits + h, expected + e
        per_type.setdefault(draw_scenes.caption_type(truth), []).append(int(ok))
        confusion[draw_scenes.caption_type(truth)][draw_scenes.caption_type(predicted)] += 1
        client_ms.append(latency)
        timings = body["timings_ms"]
        server_total_ms.append(timings["total"])
        model_ms.append(timings["encoder"] + timings["decoder"])
        if not ok and len(mistakes) < 20:
            mistakes.append({"truth": truth, "predicted": predicted})

    report = {
        "url": args.url,
        "seed": args.seed,
        "count": args.count,
        "format": args.format if args.format == "png" else f"jpeg q{args.jpeg_quality}",
        "exact_match": exact / args.count,
        "keyword_recall": hits / expected if expected else 1.0,
        "exact_match_by_type": {k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(per_type.items())},
        "type_confusion": {"rows": "true caption type", "columns": "predicted caption type", **confusion},
        "client_latency_ms": {
            "p50": percentile(client_ms, 0.50),
            "p95": percentile(client_ms, 0.95),
            "mean": statistics.fmean(client_ms),
        },
        "server_total_ms": {"p50": percentile(server_total_ms, 0.50), "p95": percentile(server_total_ms, 0.95)},
        "model_ms": {"p50": percentile(model_ms, 0.50), "p95": percentile(model_ms, 0.95)},
        "mistakes": mistakes,
    }
    if args.reference_url:
        report["reference"] = {
            "url": args.reference_url,
            "agreement_with_reference": agree / args.count,
            "reference_exact_match": reference_exact / args.count,
            "exact_match_minus_reference_points": round(100 * (exact - reference_exact) / args.count, 2),
            "reference_model_ms": {
                "p50": percentile(reference_model_ms, 0.50),
                "p95": percentile(reference_model_ms, 0.95),
            },
            "disagreements": disagreements,
        }
    text = json.dumps(report, indent=2)
    print(text)
    print(f"\nconfusion of caption types ({report['format']}; rows: truth, columns: prediction)", file=sys.stderr)
    print(f"{'':>12}" + "".join(f"{p:>12}" for p in CAPTION_TYPES), file=sys.stderr)
    for t in CAPTION_TYPES:
        print(f"{t:>12}" + "".join(f"{confusion[t][p]:>12}" for p in CAPTION_TYPES), file=sys.stderr)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
