# Two entry points: `make repro` (the pipeline on the embedded default) and `make test`.
# mer is tested on CPython 3.11 (Linux x86_64); python3.11 is used when it is on PATH.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
PYTHON_NEEDED := 3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# Versions the lock was tested with: pip that installs it, uv that writes it.
PIP_VERSION := 26.3
UV_VERSION := 0.13.8
UV := $(CURDIR)/$(VENV)/uv-tool/bin/uv
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: repro test lint setup lock check-python clean-venv review mediapipe-models
REV ?= main

setup: $(STAMP) mediapipe-models

# "3.X" of the interpreter $(1), empty when it does not run
pyver = $$($(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)

check-python:
	@found=$(call pyver,$(PYTHON)); if [ "$$found" != "$(PYTHON_NEEDED)" ]; then \
	  echo "mer needs Python $(PYTHON_NEEDED) (found $${found:-no Python at '$(PYTHON)'}); set PYTHON=python$(PYTHON_NEEDED)" >&2; \
	  exit 1; fi
	@found=$(call pyver,$(BIN)/python); if [ -x $(BIN)/python ] && [ "$$found" != "$(PYTHON_NEEDED)" ]; then \
	  echo "$(VENV) runs Python $$found but mer needs $(PYTHON_NEEDED); run 'make clean-venv setup'" >&2; \
	  exit 1; fi

# Install the exact, tested environment (requirements.lock: every package, torch's nvidia-* CUDA
# wheels included, pinned and hashed), then mer itself without touching those pins. Reinstalls
# only when the lock or pyproject.toml changes.
$(STAMP): requirements.lock pyproject.toml
	@$(MAKE) --no-print-directory check-python
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Regenerate requirements.lock from pyproject.toml's dependencies + the dev extra, for CPython 3.11
# on Linux x86_64. Re-run whenever a dependency is added, removed or its specifier changes in
# pyproject.toml, then `make setup` and the tests. uv keeps every pin already in the lock that
# still satisfies pyproject (so the lock stays what was tested); to move pins on purpose:
# `make lock LOCK_ARGS=--upgrade` (all) or `make lock LOCK_ARGS="--upgrade-package NAME"`.
LOCK_ARGS ?=
lock: $(UV)
	$(UV) pip compile pyproject.toml --extra dev \
	  --python-version $(PYTHON_NEEDED) --python-platform x86_64-unknown-linux-gnu \
	  --generate-hashes --custom-compile-command "make lock" --quiet \
	  --output-file requirements.lock $(LOCK_ARGS)

# uv in its own small venv under .venv/ (outside mer's environment, so it never enters the lock).
$(UV):
	@$(MAKE) --no-print-directory check-python
	$(PYTHON) -m venv $(VENV)/uv-tool
	$(VENV)/uv-tool/bin/python -m pip install --quiet uv==$(UV_VERSION)

# MediaPipe's face detector (BlazeFace short range) and 468-point FaceMesh models, run with LiteRT
# by the facemesh-65 video encoder (seed 002). Only the mediapipe 0.10.21 wheel ships them (later
# releases drop these legacy models) and that release needs numpy < 2, so the wheel is downloaded,
# never installed: the two .tflite files are taken out of it and checked against these sha256
# (also pinned in src/mer/encoders/facemesh.py; tests/test_facemesh.py checks both agree). Runs on
# every setup but downloads only when a file is missing or differs. The code finds the files in
# MER_MEDIAPIPE_DIR if set, else in $(VENV)/share/mer/mediapipe (sys.prefix/share/mer/mediapipe).
MEDIAPIPE_VERSION := 0.10.21
MEDIAPIPE_DIR := $(or $(MER_MEDIAPIPE_DIR),$(VENV)/share/mer/mediapipe)
MEDIAPIPE_MODELS := \
  face_detection/face_detection_short_range.tflite=bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8 \
  face_landmark/face_landmark.tflite=1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814

mediapipe-models: | $(STAMP)
	@mkdir -p $(MEDIAPIPE_DIR)
	@for entry in $(MEDIAPIPE_MODELS); do \
	  echo "$${entry#*=}  $$(basename $${entry%=*})"; done > $(MEDIAPIPE_DIR)/SHA256SUMS
	@if (cd $(MEDIAPIPE_DIR) && sha256sum --check --status SHA256SUMS 2>/dev/null); then \
	  echo "MediaPipe models in $(MEDIAPIPE_DIR): sha256 ok"; \
	else \
	  set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  echo "fetching the MediaPipe models from the mediapipe==$(MEDIAPIPE_VERSION) wheel"; \
	  $(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
	    --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 --dest "$$tmp" \
	    mediapipe==$(MEDIAPIPE_VERSION); \
	  $(BIN)/python -c 'import pathlib, sys, zipfile; wheel = zipfile.ZipFile(sys.argv[1]); \
	    [pathlib.Path(sys.argv[2], pathlib.Path(m).name).write_bytes(wheel.read("mediapipe/modules/" + m)) \
	     for m in sys.argv[3:]]' "$$tmp"/mediapipe-$(MEDIAPIPE_VERSION)-*.whl $(MEDIAPIPE_DIR) \
	    $(foreach entry,$(MEDIAPIPE_MODELS),$(firstword $(subst =, ,$(entry)))); \
	  (cd $(MEDIAPIPE_DIR) && sha256sum --check SHA256SUMS) || { \
	    echo "the models in the mediapipe $(MEDIAPIPE_VERSION) wheel do not match the pinned sha256" >&2; exit 1; }; \
	fi

repro: setup
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest

# PR comment: metrics/params diff against $(REV) + PNGs of changed plots in reports/review/
review: $(STAMP)
	$(BIN)/python -m mer.review --rev $(REV) --out reports/review

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean-venv:
	rm -rf $(VENV)
