# The two commands: `make demo` (the main job) and `make test`. Both create .venv and install on first use;
# re-running is fast because the install is stamped and redone only when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pxr-installed

.PHONY: demo test test-fast toy trap test-unit test-notebooks lint strip install clean-smoke gpu-deps-check

demo: $(STAMP)
	$(BIN)/pxr pipeline smoke
	@echo; $(BIN)/pxr runs --run smoke

# Unit, property and model tests, every notebook under nbval (its smoke defaults, temp folders), then the smoke
# pipeline for real through papermill into outputs/*/smoke (--force: a test must run it, not find it done).
test: $(STAMP)
	$(BIN)/python -m pytest -q tests notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=600
	$(BIN)/pxr pipeline smoke --force
	@echo; $(BIN)/pxr runs --run smoke

# The unit tier (under 30 s on 2 cores): every test not marked `slow` (model training, launched processes, notebooks
# and papermill runs are slow). `make test` stays the CI contract.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

# The toy reproduction (outputs/LOG.md, 2026-12-04): the main line (`pxr pipeline toy`: data, perception base, SFT,
# RL, evaluation, demo; tile grids addressed by position words), then its controls and ablations, each a pipeline of
# the stages that have its params file (toy_named: the hard held-out suite of named objects), then the ablation
# tables. Finished runs with unchanged params and outputs are skipped.
TOY_RUNS := toy_text toy_blank toy_named toy_rl toy_no_curiosity toy_no_correction toy_seed1 toy_rl_seed1 \
	toy_no_curiosity_seed1
toy: $(STAMP)
	$(BIN)/pxr pipeline toy
	set -e; for run in $(TOY_RUNS); do $(BIN)/pxr pipeline $$run; done
	$(BIN)/pxr run 50_ablations toy
	@echo; $(BIN)/pxr runs

# The learning-trap map (after `make toy`): for each declared value of the knob (the query budget: trap_k0 is the
# toy line's, trap_k1 and trap_k2 show the digit larger) a perception base and an SFT model, then RL with and
# without curiosity at two seeds from that model (params/30_train_rl/grid_trap_k*.yaml). Each point writes its
# record when it finishes; a rerun skips finished points.
TRAP_KNOBS := trap_k1 trap_k2
trap: $(STAMP)
	set -e; for run in $(TRAP_KNOBS); do $(BIN)/pxr run 15_perception_base $$run; $(BIN)/pxr run 20_train_sft $$run; done
	set -e; for grid in trap_k0 $(TRAP_KNOBS); do $(BIN)/pxr grid 30_train_rl $$grid; done
	$(BIN)/pxr run 50_ablations toy

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-notebooks: $(STAMP)
	$(BIN)/python -m pytest -q notebooks --nbval-lax --nbval-current-env

lint: $(STAMP)
	$(BIN)/ruff check pxr tests benchmarks

# Notebooks are committed without outputs (nbstripout keeps the `parameters` tag); checks are asserts in the cells.
strip: $(STAMP)
	$(BIN)/nbstripout --keep-id notebooks/*.ipynb

install: $(STAMP)

# Does the GPU install (pyproject's gpu extra with constraints-gpu.txt) resolve on PyPI for Linux x86_64, CPython 3.11
# and 3.12? A pip dry run that downloads metadata only (a few minutes; needs the index, so not part of `make test`).
# Any Python 3.11+ with pip 23.3+ runs it: .venv's when it exists, no install needed.
gpu-deps-check:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) .ci/gpu_deps_check.py

# torch goes first, pinned, so nothing later pulls a CUDA build onto a CPU machine.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,notebooks,video]"
	touch $(STAMP)

clean-smoke:
	rm -rf outputs/*/smoke
