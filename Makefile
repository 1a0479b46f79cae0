# Two commands on a fresh machine: `make train` and `make test`. Each does its own set-up
# (tools/setup.sh: .venv, pinned install, Fashion-MNIST) and reuses it on later runs.
VENV := .venv
BIN := $(VENV)/bin
OUT ?= runs/latest

# tools/setup.sh installs without byte-compiling (pip's compile of every file was 60% of the install) and compiles what
# miniai imports; a module it missed gets its .pyc on first use here instead of being compiled again in every process,
# as it would be where the machine sets PYTHONDONTWRITEBYTECODE.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup train test slowtest sync nbtest nbslow pytest bench clean

setup:
	@bash tools/setup.sh

## Train the conv net on Fashion-MNIST with the defaults; writes metrics, plots and weights to $(OUT).
train: setup
	$(BIN)/miniai fit --out $(OUT)

## The everyday check, about 4 minutes on 2 cores from a fresh clone (203-239 s, set-up included): notebooks and
## package in sync, every notebook's cells through nbdev-test (slow cells skipped) beside pytest on every core
## (pytest-xdist), without the tests marked `slow`: end-to-end runs of ~10 s or more (kill -9, signals, torchrun,
## whole presets) and tests/test_notebooks.py, which runs each notebook in a real Jupyter kernel and also fails a
## figure shown as text. `make slowtest` runs those; CI runs both.
test: setup
	@$(MAKE) --no-print-directory sync
	@# side by side: nbdev-test ends on one long notebook, and pytest fills the core it leaves idle
	@$(MAKE) --no-print-directory -j2 --output-sync=target nbtest pytest

## The tests marked slow, one at a time (they time signals and kill -9, and one keeps every core busy on purpose).
slowtest: setup
	$(BIN)/python -m pytest -q -m slow tests

## Fails when nbdev-clean or nbdev-export would change a file (notebooks and package out of sync).
sync:
	$(BIN)/nbdev-clean
	$(BIN)/nbdev-export
	@if [ -n "$$(git status --porcelain -- nbs miniai)" ]; then \
	  echo "nbdev-clean/nbdev-export changed these files: edit the notebooks, re-export, commit both:"; \
	  git status --porcelain -- nbs miniai; git --no-pager diff --stat -- nbs miniai; exit 1; fi

## The notebooks' cells through nbdev-test (slow cells skipped), in-process: part of `make test`.
nbtest: setup
	$(BIN)/nbdev-test --n-workers 2 --timing

## Every notebook cell, the `#| slow` training runs included (several minutes): what a reader's "Run All" does.
nbslow: setup
	$(BIN)/nbdev-test --n-workers 1 --timing --flags slow

## One torch thread per test process: xdist already runs a process per core, and two threads each would oversubscribe.
pytest:
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto --dist worksteal -m "not slow" tests

## Speed benchmarks, each as a ratio against a reference run side by side (never timed tests).
bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) runs build *.egg-info
