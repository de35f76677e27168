#!/usr/bin/env python3
"""Check prometheus-adapter configs held in ConfigMaps against schemas/prometheus-adapter-config.schema.json.

    .ort/test-venv/bin/python tools/validate_adapter_config.py FILE.yaml...

prometheus-adapter reads its config with ``yaml.UnmarshalStrict`` (pkg/config/config.go), so an
unknown key stops it at start; no package ships a schema, so the project keeps a hand-written,
closed one after config.go. Every ``*.yaml`` entry of every ConfigMap's ``data`` is parsed as YAML
and checked with jsonschema.

Prints ``OK``/``ERROR`` per entry; exit status 0 when every entry passed and at least one was
checked, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "prometheus-adapter-config.schema.json"


def main(paths: list[str]) -> int:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    checked = failed = 0
    for path in map(Path, paths):
        with path.open() as stream:
            documents = [d for d in yaml.safe_load_all(stream) if d]
        for document in documents:
            if document.get("kind") != "ConfigMap":
                continue
            name = document.get("metadata", {}).get("name")
            for key, text in (document.get("data") or {}).items():
                if not key.endswith((".yaml", ".yml")):
                    continue
                checked += 1
                errors = list(validator.iter_errors(yaml.safe_load(text)))
                for error in errors:
                    where = ".".join(map(str, error.absolute_path)) or "(root)"
                    print(f"ERROR {path} ConfigMap/{name}[{key}]: {where}: {error.message}")
                if errors:
                    failed += 1
                else:
                    print(f"OK {path} ConfigMap/{name}[{key}]")
    if checked == 0:
        print(f"ERROR no ConfigMap with a YAML entry in {', '.join(paths)}")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
