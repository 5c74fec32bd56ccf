# cifar-hpo developer and user targets. `make test` on a fresh clone installs everything first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
DATASET ?= ../shared/datasets/cifar10-jpeg.tar.gz
STUDY  ?= baseline
TRIALS ?= 50

.PHONY: install test lint data train sweep best reproduce-readme-table bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check cifar_hpo tests bench
	$(BIN)/ruff format --check cifar_hpo tests bench

CACHE := data/cache/cifar10.npz

data: $(CACHE)

$(CACHE): | $(STAMP)
	$(BIN)/cifar-hpo data import $(DATASET)

train: data
	$(BIN)/cifar-hpo train --model airbench --epochs 10 --lr 0.4 --augment flip-translate \
		--set optim.label_smoothing=0.2 --set tta=true

sweep: data
	$(BIN)/cifar-hpo sweep --study $(STUDY) --trials $(TRIALS)

best: install
	$(BIN)/cifar-hpo best --study $(STUDY) --export model.pt

bench: install
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) runs studies/*.db mlflow.db mlruns/[0-9]* model.pt
