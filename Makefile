# The two commands: `make demo` (the main job) and `make test`. Both create .venv and install on first use;
# re-running is fast because the install is stamped and redone only when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pxr-installed

.PHONY: demo test toy toy448 grounding toy448_lone test-unit test-notebooks lint strip install clean-smoke

demo: $(STAMP)
	$(BIN)/pxr pipeline smoke
	@echo; $(BIN)/pxr runs --run smoke

# Unit, property and model tests, every notebook under nbval (its smoke defaults, temp folders), then the smoke
# pipeline for real through papermill into outputs/*/smoke (--force: a test must run it, not find it done).
test: $(STAMP)
	$(BIN)/python -m pytest -q tests notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=600
	$(BIN)/pxr pipeline smoke --force
	@echo; $(BIN)/pxr runs --run smoke

# The toy reproduction (SPEC §6): the main line (`pxr pipeline toy`: data, perception base, SFT, RL, evaluation,
# demo; under an hour on 2 CPU cores), then its controls and ablations, each a pipeline of the stages that have its
# params file, then the ablation tables. Finished runs with unchanged params and outputs are skipped.
TOY_RUNS := toy_text toy_blank toy_rl toy_no_curiosity toy_no_correction toy_seed1 toy_rl_seed1 toy_no_curiosity_seed1
toy: $(STAMP)
	$(BIN)/pxr pipeline toy
	set -e; for run in $(TOY_RUNS); do $(BIN)/pxr pipeline $$run; done
	$(BIN)/pxr run 50_ablations toy
	@echo; $(BIN)/pxr runs

# Beside the main line (outputs/LOG.md, 2026-11-24): the reading and grounding bases, then the easier toy448 line
# (448x320 scenes, stages 10, 20, 40) on the reading base, with its controls. ~55 min on 2 CPU cores.
toy448: $(STAMP)
	$(BIN)/pxr run 15_perception_base toy_read_b98
	$(BIN)/pxr run 15_perception_base toy_ground
	$(BIN)/pxr pipeline toy448
	$(BIN)/pxr run 40_evaluate toy448_text
	$(BIN)/pxr run 40_evaluate toy448_blank

# The grounding curriculum (outputs/LOG.md, 2026-11-24): the reading base, then notebook 15's stages, each from the
# one before: a warm-up on flat squares, then the lone target at 56 px, at 28 px, at toy448's view (~30 min on 2 CPU
# cores). It grounds a lone target; the later stages toy_pick56/3/7 (the named target among others) did not learn.
GROUNDING_STAGES := toy_locate toy_lone56 toy_lone28 toy_lone448
grounding: $(STAMP)
	$(BIN)/pxr run 15_perception_base toy_read_b98
	set -e; for run in $(GROUNDING_STAGES); do $(BIN)/pxr run 15_perception_base $$run; done

# The toy448 line with the target alone in its read scenes, SFT from the curriculum's last stage (outputs/LOG.md,
# 2026-11-25), with its controls: ~15 min after `make grounding`.
toy448_lone: grounding
	$(BIN)/pxr pipeline toy448_lone
	$(BIN)/pxr run 40_evaluate toy448_lone_text
	$(BIN)/pxr run 40_evaluate toy448_lone_blank

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

# torch goes first, pinned, so nothing later pulls a CUDA build onto a CPU machine.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,notebooks,video]"
	touch $(STAMP)

clean-smoke:
	rm -rf outputs/*/smoke
