#!/usr/bin/env python3
"""Check ServiceMonitor and PrometheusRule objects (monitoring.coreos.com/v1) strictly against
prometheus-operator's CRD schemas.

    .ort/test-venv/bin/python tools/validate_crds.py FILE.yaml...   [--dump DIR]

The schemas come from the pydantic models of PyPI's ``cloudcoil-models-prometheus-operator``
(pinned in tools/requirements-test.txt: 0.80.1.0 = prometheus-operator v0.80.1's CRDs). The
API server prunes unknown fields of a CRD object silently, so a misspelled key would pass
``kubectl apply`` and do nothing; here every object schema that lists properties is closed
(``additionalProperties: false``) and checked with jsonschema. Every YAML document of a
listed kind is checked; others are skipped. ``--dump DIR`` writes the strict schemas.

Prints ``OK``/``ERROR`` per object; exit status 0 when every object passed and at least one
was checked, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jsonschema
import yaml
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor

API_VERSION = "monitoring.coreos.com/v1"


def closed(node):
    """The schema with ``additionalProperties: false`` on every object that lists properties."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            closed(value)
    elif isinstance(node, list):
        for value in node:
            closed(value)
    return node


SCHEMAS = {model.__name__: closed(model.model_json_schema(by_alias=True)) for model in (ServiceMonitor, PrometheusRule)}


def most_specific(error):
    """Optional fields are ``anyOf [X, null]``: report the error inside X, not "not valid under any"."""
    while error.context:
        inner = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
        if not inner:
            break
        error = max(inner, key=lambda e: len(e.absolute_path))
    return error


def check(path: Path) -> tuple[int, int]:
    """(objects checked, objects that failed) in one file."""
    checked = failed = 0
    with path.open() as stream:
        documents = [d for d in yaml.safe_load_all(stream) if d]
    for document in documents:
        kind = document.get("kind")
        if document.get("apiVersion") != API_VERSION or kind not in SCHEMAS:
            continue
        checked += 1
        name = f"{kind}/{document.get('metadata', {}).get('name')}"
        errors = list(jsonschema.Draft202012Validator(SCHEMAS[kind]).iter_errors(document))
        for error in errors:
            error = most_specific(error)
            where = ".".join(map(str, error.absolute_path)) or "(root)"
            print(f"ERROR {path} {name}: {where}: {error.message}")
        if errors:
            failed += 1
        else:
            print(f"OK {path} {name}")
    return checked, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--dump", type=Path, help="write the strict schemas here")
    args = parser.parse_args()
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        for kind, schema in SCHEMAS.items():
            (args.dump / f"{kind.lower()}-monitoring-v1.json").write_text(json.dumps(schema, indent=1, sort_keys=True))
    checked = failed = 0
    for path in args.files:
        c, f = check(path)
        checked, failed = checked + c, failed + f
    if args.files and checked == 0:
        print(f"ERROR no {' or '.join(SCHEMAS)} object in {', '.join(map(str, args.files))}")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
