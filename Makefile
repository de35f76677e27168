# capwatch — the two commands: `make run` and `make test`. Everything else they need is set up here.
SHELL := /bin/bash
PYTHON ?= python3
ORT_LIB := .ort/libonnxruntime.so
CARGO ?= cargo
ARGS ?=

.PHONY: all setup run serve demo test lint unit bench bench-drift bench-drift-calibration bench-plan bench-scale bench-roofline bench-fleet bench-quant-choices docs screenshots bench-beams bench-container drill soak fixtures clean-ort

all: test

## setup: fetch the ONNX Runtime library (from the onnxruntime wheel on PyPI) and test tools
setup: $(ORT_LIB) .ort/test-tools .ort/prometheus/promtool .ort/chromium

$(ORT_LIB): tools/fetch_onnxruntime.py
	$(PYTHON) tools/fetch_onnxruntime.py

# openapi-spec-validator checks /openapi.json; prometheus_client parses /metrics (OpenMetrics);
# kubernetes-validate, cloudcoil-models-prometheus-operator and jsonschema check `capwatch export kubernetes`.
# They go in a venv of their own (.ort/test-venv), never the system Python; where Python has no
# venv module (Debian without python3-venv), pip installs them into .ort/test-pylib instead.
.ort/test-tools: tools/requirements-test.txt
	@mkdir -p .ort
	if $(PYTHON) -m venv .ort/test-venv 2>/dev/null; then \
	  .ort/test-venv/bin/python -m pip install -q --disable-pip-version-check -r tools/requirements-test.txt; \
	else \
	  rm -rf .ort/test-venv; \
	  $(PYTHON) -m pip install -q --disable-pip-version-check --target .ort/test-pylib -r tools/requirements-test.txt; \
	fi
	@touch $@

# promtool and prometheus, unpacked from Debian's package (checks the exported rules).
.ort/prometheus/promtool: tools/fetch_prometheus.sh
	tools/fetch_prometheus.sh

# Chromium renders the HTML session report in a test: Debian's chromium package (root, or sudo).
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
.ort/chromium:
	@mkdir -p .ort
	command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }
	command -v chromium > $@

## run: the dashboard: launches `capwatch serve` on the bundled model and watches it
run: $(ORT_LIB)
	$(CARGO) run --release -- $(ARGS)

## demo: a two-minute tour: the dashboard on the bundled model through a latency spike, failing requests,
## a crash, a bad canary and drift, with a banner saying what to look at (ARGS="--headless" for log lines)
demo: $(ORT_LIB)
	$(CARGO) run --release -- demo $(ARGS)

## serve: the captioning server alone
serve: $(ORT_LIB)
	$(CARGO) run --release -- serve $(ARGS)

## lint: format check, clippy with -D warnings, and the import graph (no cycle, arrows point down)
lint:
	$(CARGO) fmt --check
	$(PYTHON) tools/check_layers.py
	$(CARGO) clippy --all-targets -- -D warnings

## test: lint, then every test (unit tests and the one integration-test binary, tests/it)
test: setup lint
	$(CARGO) test --lib --tests

## bench: HTTP load benchmark of the server (see docs/src/benchmarks.md)
bench: $(ORT_LIB)
	$(CARGO) build --release
	$(CARGO) run --release --example loadbench -- $(ARGS)

## bench-drift: what profiling a request for drift costs, against decoding its image
bench-drift:
	$(CARGO) run --release --example drift_cost

## bench-drift-calibration: false alarms of the drift verdict on stable windows and requests until each shift
## is detected, through a real server on loopback (~6 min; .tmp/drift-calibration/results.md; ARGS="--windows 40")
bench-drift-calibration: $(ORT_LIB)
	$(CARGO) run --release --example drift_calibration -- $(ARGS)

## bench-plan: capwatch plan's queueing model against a real server at three open-loop Poisson rates (~30 s;
## .tmp/plan-validation/results.md; ARGS="--workers 2 --requests 800 --loads 0.3,0.6,0.85")
bench-plan: $(ORT_LIB)
	$(CARGO) run --release --example plan_validation -- $(ARGS)

## bench-scale: real-size BLIP-base and ViT-GPT2-base (random weights, built locally) in every export layout
## against generate() in PyTorch and the FastAPI peer (../shared/peers, venv /tmp/peervenv), concurrency 1 and 8,
## server memory; tables in .tmp/bench-scale/results.md (needs tools/.venv; ~10 min, exports cached;
## flags: ARGS="--rounds 8 --threads 2 --skip-blip-c8 --skip-peer", see tools/bench_scale.py --help)
bench-scale: $(ORT_LIB) tools/.venv/bin/python
	$(CARGO) build --release
	tools/.venv/bin/python tools/bench_scale.py $(ARGS)

## bench-roofline: this machine's floors through ONNX Runtime: weight streaming at batch 1 (fp32, int8, int4
## chains over >= 500 MB) and fp32/int8 GEMM throughput (~30 s; .tmp/bench-roofline/roofline.md; bench-scale
## measures them again in its own run for its floor ratios)
bench-roofline: tools/.venv/bin/python
	tools/.venv/bin/python tools/bench_roofline.py $(ARGS)

## docs: the book (docs/, mdBook) built offline into target/book; mdbook itself is built once from crates.io
## into .tmp/mdbook (5-10 minutes on 2 cores, the first time only)
MDBOOK := .tmp/mdbook/bin/mdbook
docs: $(MDBOOK)
	$(MDBOOK) build docs
	@echo "open target/book/index.html"

$(MDBOOK):
	$(CARGO) install mdbook --version 0.5.4 --locked --root .tmp/mdbook

## screenshots: the pictures of the README and docs (docs/src/images/dashboard.svg, demo.svg) from real runs of the
## dashboard and of the demo in a pseudo-terminal
screenshots: $(ORT_LIB)
	$(CARGO) build --release
	$(CARGO) run --release --example screenshot
	$(CARGO) run --release --example screenshot -- --demo

## bench-fleet: the monitor's own CPU and memory watching 1 and 50 discovered servers (file_sd, the shipped
## config's intervals; ~6 min, 51 servers of the bundled model), and how soon a replica added to the list is probed
bench-fleet: $(ORT_LIB)
	$(CARGO) build --release
	$(PYTHON) tools/bench_fleet.py $(ARGS)

## bench-quant-choices: what tools/quantize_export.py's defaults rest on: int4 block sizes and accuracy levels,
## dynamic vs static int8 encoders, timed side by side on bench-scale's BLIP-base (~8 min once it exists;
## .tmp/quant-choices/*.md; ARGS="SRC_DIR --rounds 5")
bench-quant-choices: tools/.venv/bin/python
	tools/.venv/bin/python tools/bench_quant_choices.py $(ARGS)

## bench-beams: beam search at real sizes (bench-scale's BLIP-base and ViT-GPT2-base, cross-cache exports):
## capwatch num_beams 1 and 4 against generate(num_beams=1, 4), same captions checked; .tmp/bench-scale/beams.md
## (~5 min once bench-scale's exports exist; flags: ARGS="--beams 4 --rounds 3 --threads 2")
bench-beams: $(ORT_LIB) tools/.venv/bin/python
	$(CARGO) build --release
	tools/.venv/bin/python tools/bench_beams.py $(ARGS)

## drill: fire drill of every alert against the bundled model with config/monitoring_config.yaml (its sinks get
## drill-marked notifications); report in logs/drill/report.md. ARGS="--faults errors,crash" for a subset
drill: $(ORT_LIB)
	$(CARGO) build --release
	target/release/capwatch drill --report logs/drill/report.md $(ARGS)

## soak: dashboard + child under a bounded load of valid and invalid images, kill -9 every 3 min, chaos faults
## in between; RSS, fds, lost requests and metrics lines (SOAK_MIN=30; report in .tmp/soak/report.md)
SOAK_MIN ?= 30
soak: $(ORT_LIB)
	$(CARGO) build --release
	$(PYTHON) tools/soak.py --minutes $(SOAK_MIN) $(ARGS)

tools/.venv/bin/python: tools/requirements.txt
	$(PYTHON) -m venv tools/.venv
	tools/.venv/bin/pip install -q -r tools/requirements.txt

## fixtures: rebuild tests/fixtures with the pinned Python tools (needs tools/.venv)
fixtures:
	tools/.venv/bin/python tools/make_parity_fixtures.py
	tools/.venv/bin/python tools/make_ab_fixtures.py
	tools/.venv/bin/python tools/make_drift_fixtures.py
	tools/.venv/bin/python tools/quantize_export.py models/default --int4 --out tests/fixtures/default_int4 --force
	for m in blip_cross vit_gpt2_cross; do rm -rf tests/fixtures/$${m}_fused && cp -r tests/fixtures/$$m tests/fixtures/$${m}_fused \
		&& tools/.venv/bin/python tools/fuse_attention.py tests/fixtures/$${m}_fused || exit 1; done

clean-ort:
	rm -rf .ort

## bench-container: build the container image (Dockerfile) with podman and check it the way the Kubernetes manifests
## run it: read-only root, user 10001, /ready, a real caption, the HEALTHCHECK, graceful stop; size and times in
## .tmp/container/results.md. Where no registry answers, local stand-ins of the base images are made once (debootstrap,
## this machine's Rust toolchain; see tools/container/). First build ~20+ min at CARGO_BUILD_JOBS=1 (nice 19).
bench-container:
	tools/container/bench_container.sh
