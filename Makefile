# cifar-hpo developer and user targets. `make test` on a fresh clone installs everything first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
DATASET ?= ../shared/datasets/cifar10-jpeg.tar.gz
STUDY  ?= baseline
# pytest processes for `make test` (pytest-xdist; each runs torch on one thread). Tests marked
# xdist_group("wall-clock") share one process: budgets and worker processes never overlap.
TEST_WORKERS ?= 2
# extra pytest arguments, e.g. PYTEST_ARGS="--durations=20" or PYTEST_ARGS="-k budget"
PYTEST_ARGS ?=
BUDGET ?= 30m

.PHONY: install test lint data train recipe-check sweep best reproduce-readme-table bench clean \
	ui-screenshots \
	delete-studies-and-mlflow-runs

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check cifar_hpo tests bench
	$(BIN)/ruff format --check cifar_hpo tests bench

CACHE := data/cache/cifar10.npz

data: $(CACHE)

$(CACHE): | $(STAMP)
	$(BIN)/cifar-hpo data import $(DATASET)

RECIPE ?= airbench94
SEEDS ?= 0 1

# One run of a recipe of sweeps/recipes.yaml (default airbench94: ~50 min on a 2-core AVX2
# CPU in fp32; a GPU takes seconds).
train: data
	$(BIN)/cifar-hpo train --recipe $(RECIPE)

# Train RECIPE for each of SEEDS, print mean/min test accuracy, minutes and images/s, and rewrite
# docs/results.md's RESULTS:recipe-check block (stamped with commit, date, machine and versions).
recipe-check: data
	$(BIN)/python bench/recipe_check.py --recipe $(RECIPE) --seeds $(SEEDS) --readme docs/results.md

# One study within BUDGET on this machine (planned from its measured speed; re-running
# continues with the budget left). `cifar-hpo sweep --study S --trials N` counts trials instead.
sweep: data
	$(BIN)/cifar-hpo sweep --study $(STUDY) --budget $(BUDGET)

best: install
	$(BIN)/cifar-hpo best --study $(STUDY) --export model.pt

# Retrain the seeds' recipes (sweeps/recipes.yaml) plus the best `baseline` trial, then rewrite
# docs/results.md's results table and docs/*.png from the MLflow runs (experiment `readme-table`).
# Default: each recipe's CPU budget, about 65-75 minutes on 2 cores. EPOCHS=N: every recipe N
# epochs; FULL=1: the seeds' own epoch counts (GPU); TRAIN_FRACTION=F: share of the training
# split; ONLY="seed000-cnn airbench-guide": just those recipes.
EPOCHS ?=
FULL ?=
TRAIN_FRACTION ?=
ONLY ?=
REPRODUCE_ARGS := $(if $(EPOCHS), EPOCHS=$(EPOCHS))$(if $(filter 1 yes true,$(FULL)), FULL=1)$(if $(TRAIN_FRACTION), TRAIN_FRACTION=$(TRAIN_FRACTION))$(if $(ONLY), ONLY="$(ONLY)")

reproduce-readme-table: data
	CIFAR_HPO_COMMAND='make reproduce-readme-table$(REPRODUCE_ARGS)' $(BIN)/cifar-hpo reproduce --readme docs/results.md --docs docs$(if $(EPOCHS), --epochs $(EPOCHS))$(if $(filter 1 yes true,$(FULL)), --full)$(if $(TRAIN_FRACTION), --train-fraction $(TRAIN_FRACTION))$(if $(ONLY), $(addprefix --only ,$(ONLY)))

bench: install
	$(BIN)/python bench/throughput.py

# What a user sees in `mlflow ui` and optuna-dashboard for study STUDY, as PNGs in docs/ui/STUDY
# (headless Debian chromium; `pip install '.[ui]'`), as docs/tracking.md shows them.
ui-screenshots: install
	$(BIN)/python bench/ui_screenshots.py --study $(STUDY) --out docs/ui/$(STUDY)

# The venv and caches only: studies, MLflow runs, registered models and run folders stay.
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Deletes every Optuna study, the MLflow database (runs, Model Registry) and all artifacts, run
# folders and the exported model: what `make clean` used to do. Cannot be undone.
delete-studies-and-mlflow-runs:
	rm -rf runs studies/*.db studies/*.log mlflow.db mlruns/[0-9]* mlruns/models model.pt
