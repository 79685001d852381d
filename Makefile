# Two commands for a fresh machine:  make demo   (train + synthesise on the bundled corpus)   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/audiodiff: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/audiodiff

demo: $(BIN)/audiodiff
	$(BIN)/audiodiff train recipes/demo.yaml --run-dir runs/demo
	$(BIN)/audiodiff export runs/demo runs/demo/model
	$(BIN)/python data/demo_synth.py runs/demo/model demo-out

test: $(BIN)/audiodiff
	$(BIN)/python -m pytest

clean:
	rm -rf runs/demo demo-out
