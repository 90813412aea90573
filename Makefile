# `make help` lists the targets. Every target that needs the environment builds it first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
COMFYUI_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' custom_nodes.lock | head -1)
COMFYUI_DIR := .cache/comfyui-$(COMFYUI_VERSION)
COMFY_CLI_VENV := .cache/comfy-cli-venv
PORT ?= 5000
# `make gateway` gets its own port, so it and `make serve` run side by side; both bind 127.0.0.1 unless HOST=0.0.0.0
# (the container and Kubernetes processes bind 0.0.0.0 themselves).
GATEWAY_PORT ?= 5001
prompt ?= a red fox running through fresh snow, cinematic
# The prompt reaches the CLI through the environment, unexpanded ($(value)), not pasted into the shell
# line: quotes, $, backticks and $(...) in it arrive as typed, and nothing in it runs.
prompt_verbatim := $(value prompt)
export prompt_verbatim
# Every other input too: each variable given on make's command line that is not one of the Makefile's own
# (`make predict num_frames=49 steps=20`) reaches the CLI as `--num-frames 49 --steps 20`, verbatim through the
# environment like the prompt. The CLI knows the inputs (job/params.py) and refuses a name it does not know.
MAKE_OWN := PY PYTHON VENV PORT GATEWAY_PORT HOST IMAGE model runs rounds prompt
given := $(filter-out $(MAKE_OWN),$(foreach word,$(value -*-command-variables-*-),$(firstword $(subst =, ,$(word)))))
given := $(sort $(foreach name,$(given),$(if $(filter command line,$(origin $(name))),$(name))))
$(foreach name,$(given),$(eval export input_$(name) := $$(value $(name))))
input_flags := $(foreach name,$(given),--$(subst _,-,$(name)) "$$input_$(name)")

.DEFAULT_GOAL := help
.PHONY: help setup comfyui schema test lint serve demo predict clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(VENV)/.installed $(COMFYUI_DIR)/.provisioned-from .cog/openapi_schema.json $(COMFY_CLI_VENV)/.installed ## venv with pinned deps + the pinned ComfyUI + the Cog input schema + comfy-cli

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==24.3.1
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

.PHONY: comfy-cli
comfy-cli: $(COMFY_CLI_VENV)/.installed ## comfy-cli (what cog.yaml installs ComfyUI with) in a venv of its own: its pins clash with the runtime's
$(COMFY_CLI_VENV)/.installed: requirements-comfy-cli.txt
	rm -rf $(COMFY_CLI_VENV)
	$(PYTHON) -m venv $(COMFY_CLI_VENV)
	$(COMFY_CLI_VENV)/bin/pip install --quiet --no-deps -r requirements-comfy-cli.txt
	touch $@

comfyui: $(COMFYUI_DIR)/.provisioned-from ## download, verify and extract the pinned ComfyUI
$(COMFYUI_DIR)/.provisioned-from: custom_nodes.lock | $(VENV)/.installed
	$(PY) -m comfy_runtime comfyui provision

schema: $(VENV)/.installed ## write .cog/openapi_schema.json from predict.py
	$(PY) -m comfy_runtime schema
.cog/openapi_schema.json: predict.py $(shell find comfy_runtime -name "*.py") | $(VENV)/.installed
	$(PY) -m comfy_runtime schema

test: setup ## run the test suite (CPU, real ComfyUI, real Cog server)
	$(PY) -m pytest

.PHONY: test-tiny-dit
test-tiny-dit: setup ## a tiny real HunyuanVideo DiT through the Predictor: every input changes the output (-s prints the figures)
	$(PY) -m pytest tests/test_tiny_dit.py -s

.PHONY: test-hardening soak
test-hardening: setup ## bad input and injected faults (OOM, time limit, cancel, traversal), in-process and over HTTP; 100-run soak with figures
	$(PY) -m pytest tests/test_input_hardening.py tests/test_faults.py tests/test_hardening_http.py tests/test_soak.py -s

soak: setup ## soak figures: N plumbing predictions in a row, RSS and disk every few runs (make soak runs=300)
	$(PY) bench/soak_figures.py $(or $(runs),300)

.PHONY: fault-figures
fault-figures: setup ## inject each fault into a real prediction and print the outcome table
	$(PY) bench/fault_figures.py

.PHONY: test-previews preview-figures
test-previews: setup ## live previews, ETA and streamed outputs: tiny v1/1.5 t2v/i2v, coglet, the farm (-s prints the figures)
	$(PY) -m pytest tests/test_previews.py tests/test_eta.py tests/test_farm_previews.py -s

preview-figures: setup ## what one live preview costs, as a ratio to a sampling step (tiny render; 720p latent on this CPU)
	$(PY) bench/preview_cost.py

.PHONY: test-delivery delivery-figures
test-delivery: setup ## formats, S3 delivery (moto server) and the Cog HTTP contract: async, webhooks, progress, cancel
	$(PY) -m pytest tests/test_encode.py tests/test_storage.py tests/test_cog_delivery.py -s

delivery-figures: setup ## cancel latency over HTTP and S3 upload throughput against a plain file copy
	$(PY) bench/cancel_latency.py $(or $(runs),15)
	$(PY) bench/upload_throughput.py $(or $(runs),5)

.PHONY: speed-figures
speed-figures: setup ## EasyCache levels (DiT calls, time, pixel distance) and warm start on the tiny DiT
	$(PY) bench/cache_levels.py

.PHONY: bench
bench: setup ## embedded ComfyUI vs ComfyUI as a subprocess server (READY, overhead, RSS); lean boot vs HV_BOOT=full (make bench runs=20 rounds=3)
	$(PY) bench/embedded_vs_remote.py $(or $(runs),20) --rounds $(or $(rounds),3)
	$(PY) bench/boot_lean_vs_full.py --rounds $(or $(rounds),3)

.PHONY: worker gateway test-farm farm-figures
worker: setup ## render-farm GPU worker: render queued jobs one at a time (HV_FARM_DATABASE_URL, HV_S3_BUCKET; docs/farm.md)
	$(PY) -m comfy_runtime worker

gateway: $(VENV)/.installed ## render-farm HTTP gateway on 127.0.0.1:$(GATEWAY_PORT): Cog's prediction API in front of the queue (HV_FARM_DATABASE_URL)
	$(PY) -m comfy_runtime gateway --host $${HOST:-127.0.0.1} --port $(GATEWAY_PORT)

test-farm: setup ## the render farm: real PostgreSQL, worker processes, the gateway; SIGKILL, SIGTERM, DB restart, cancel
	$(PY) -m pytest tests/test_farm.py tests/test_farm_webhook.py tests/test_farm_config.py tests/test_farm_tokens.py tests/test_farm_metrics.py tests/test_farm_previews.py

.PHONY: farm-demo
farm-demo: setup ## the farm on this machine: PostgreSQL, S3 (moto), a gateway, 2 CPU workers; prints the jobs page and a token, submits 3 jobs; Ctrl-C stops it all
	$(PY) -m local_servers.farm_demo $(if $(filter command line environment,$(origin GATEWAY_PORT)),--port $(GATEWAY_PORT))

farm-figures: setup ## farm queue overhead against a direct Cog server, jobs/min with 1 vs 2 workers (make farm-figures runs=10)
	$(PY) bench/farm_overhead.py $(or $(runs),10)

.PHONY: gpu-kit gpu-kit-payload
gpu-kit: setup ## GPU figures from full-size models with random weights: make gpu-kit scale=full on a GPU (tiny: the CPU check CI runs); docs/gpu-kit.md
	$(PY) -m bench.gpu_kit --scale $(or $(scale),tiny) $(if $(families),--families $(families))

gpu-kit-payload: setup ## pack .gpu-kit/ (ComfyUI + Python 3.12 wheels, under 64 MiB) for a lent GPU machine with no network
	$(PY) -m bench.gpu_kit.payload build

lint: $(VENV)/.installed ## ruff
	$(VENV)/bin/ruff check comfy_runtime tests predict.py bench local_servers

demo: setup ## check the set-up end to end: render noise on the CPU with the weight-free plumbing workflow (no model, the prompt is not used)
	@echo "make demo: the weight-free plumbing workflow renders noise through the real ComfyUI (no model; the prompt is not used). With weights: make predict prompt=\"...\""
	@HV_WORKFLOW=plumbing_video $(PY) -m comfy_runtime render --prompt "$$prompt_verbatim" --width 256 --height 256 --num-frames 25 --fps 12 $(input_flags) --out demo.mp4

predict: setup ## render one video with the configured workflow: make predict prompt="..." num_frames=49 steps=20 (any input)
	$(PY) -m comfy_runtime render --prompt "$$prompt_verbatim" $(input_flags) --out output.mp4

.PHONY: weights weights-verify nodes
weights: $(VENV)/.installed ## fetch the weights in weights.manifest into HV_MODELS_DIR (parallel ranged, resumable, sha256-verified)
	$(PY) -m comfy_runtime weights fetch

weights-verify: $(VENV)/.installed ## full sha256 of every weight against weights.manifest (refreshes the boot-time records)
	$(PY) -m comfy_runtime weights verify

nodes: $(COMFYUI_DIR)/.provisioned-from ## install the custom nodes of custom_nodes.lock at their full commits, then verify them
	$(PY) -m comfy_runtime nodes install
	$(PY) -m comfy_runtime nodes verify

serve: setup ## the Cog HTTP server on 127.0.0.1:$(PORT) with predict.py (HOST=0.0.0.0 to serve other machines)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH COG_PREDICT_TYPE_STUB=predict.py:Predictor PORT=$(PORT) $(PY) -m cog.server.http --host $${HOST:-127.0.0.1}

clean: ## remove outputs and caches (keeps the venv)
	rm -rf outputs .pytest_cache demo.mp4 output.mp4

# Images and deployment. `cog` here is the cog CLI (Go binary, needs Docker), not the Python SDK in the venv.
IMAGE ?= hunyuan-video:$(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
model ?=
COG_CLI = command -v cog >/dev/null || { echo "the cog CLI is not on PATH: install it from the replicate/cog releases (pip's cog package is only the Python SDK)"; exit 1; }

# Weights baked into the image (`make weights` fills ./models, which cog copies to /src/models) go into their own
# layers, so a code change re-pushes the code layer and not ~35 GB of weights (docs/image.md).
BAKED_WEIGHTS ?= $(wildcard models/*/*.safetensors models/*/*.sft models/*/*.pt models/*/*.pth models/*/*.ckpt models/*/*.gguf)
SEPARATE_WEIGHTS = $(if $(strip $(BAKED_WEIGHTS)),--separate-weights,)

.PHONY: build push k8s-validate
build: ## build the image with the cog CLI (Docker): make build IMAGE=name:tag (--separate-weights when ./models holds weights)
	@$(COG_CLI)
	$(MAKE) schema
	cog build -t $(IMAGE) $(SEPARATE_WEIGHTS)

push: ## push to Replicate: make push model=<owner>/<model> (after cog login); see cog-safe-push.yaml for a tested push
	@test -n "$(model)" || { echo "usage: make push model=<owner>/<model>   (pushes r8.im/<owner>/<model>)"; exit 2; }
	@$(COG_CLI)
	$(MAKE) schema
	cog push r8.im/$(model) $(SEPARATE_WEIGHTS)

k8s-validate: $(VENV)/.installed ## validate deploy/k8s offline: kustomize render, Kubernetes + KEDA schemas, env names, probes on a real Cog server
	$(PY) -m pytest tests/test_k8s_manifests.py -q
