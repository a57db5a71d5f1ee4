# Config validation (before any job starts) and the small input helpers.

import os

from xrdid.config import validate_config

validate_config(config, os.path.join(workflow.basedir, "config", "schema.yaml"))

DATASET = config["dataset"]
SOURCE = config["structures"]["source"]
N_CHUNKS = config["simulate"]["chunks"]
ENV = "../../envs/xrdid.yaml"


def get_final_outputs():
    return [
        f"results/{DATASET}/evaluate/metrics.json",
        f"results/{DATASET}/plots/curves.png",
        f"results/{DATASET}/plots/confusion_crystal_system.png",
        f"results/{DATASET}/plots/confusion_space_group.png",
    ]


def get_chunks(wildcards):
    return expand("results/{dataset}/sticks/chunk-{chunk}.parquet", dataset=wildcards.dataset, chunk=range(N_CHUNKS))
