# Two commands for a fresh machine:  make demo   (train + synthesise on the bundled corpus)   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test docs install clean

# The dev extra holds every other one: train (TensorBoard) and plots (matplotlib), which a plain `pip install .`
# (inference only) leaves out, and music and metrics, which tests use.
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

# The README's one test command, which CI runs (.ci/run): the whole suite with 1 intra-op thread, then with 2
# (tests/conftest.py: AUDIODIFF_TEST_THREADS). Float results that two code paths compute (batched and unbatched,
# chunked and whole, fused and eager) differ by rounding that depends on the kernels the BLAS picks for a thread
# count and CPU, so running both thread counts keeps a tolerance from fitting one machine only; bitwise determinism
# checks are what a parallel reduction would break. Should the two runs grow too slow, give the first run
# `-m numerics` (the cross-path float comparisons). pytest's exit status 5 (no test selected) is not a failure.
test: $(BIN)/audiodiff
	AUDIODIFF_TEST_THREADS=1 $(BIN)/python -m pytest || [ $$? -eq 5 ]
	AUDIODIFF_TEST_THREADS=2 $(BIN)/python -m pytest || [ $$? -eq 5 ]

# The API reference, HTML from the docstrings (pdoc, in the dev extra), into the git-ignored build/api/;
# tests/test_docs.py builds it too. Open build/api/index.html.
docs: $(BIN)/audiodiff
	$(BIN)/python docs/build_api.py build/api

clean:
	rm -rf runs/demo demo-out
