# Config validation (before any job starts) and the small input helpers.

import os

from xrdid.config import structure_sources, validate_config
from xrdid.structures.sources import REAL_SOURCES, SOURCES as BUILT_SOURCES
from xrdid.weights import init_digest

validate_config(config, os.path.join(workflow.basedir, "config", "schema.yaml"))

DATASET = config["dataset"]
# The structure sources simulated together (structures.source, one or several).
SOURCES = structure_sources(config)


def auto_chunks(chunks):
    """simulate.chunks as a number: "auto" is one chunk per cluster job slot (--jobs), else 4 per core (--cores)."""
    if chunks != "auto":
        return chunks
    jobs = workflow.nodes  # --jobs N of a cluster run; "unlimited" is sys.maxsize
    if jobs and jobs < 100000:
        return jobs
    return 4 * max(
        int(workflow.cores or 1), 1
    )  # a cluster run without --jobs raises here, asking for it


N_CHUNKS = auto_chunks(config["simulate"]["chunks"])
ENV = "../../envs/xrdid.yaml"


def get_final_outputs():
    return (
        [
            f"results/{DATASET}/evaluate/metrics.json",
            f"results/{DATASET}/evaluate/metrics.html",
            f"results/{DATASET}/plots/curves.png",
            f"results/{DATASET}/plots/confusion_crystal_system.png",
            f"results/{DATASET}/plots/confusion_space_group.png",
            f"results/{DATASET}/plots/augmentations.png",
        ]
        + [
            f"results/{DATASET}/plots/synthetic_vs_measured_{name}.png"
            for name in config["measured"]["sets"]
        ]
        + [
            f"results/{DATASET}/phases/{name}/summary.csv"
            for name in config["phases"]["sets"]
        ]
        + get_real_outputs()
    )


def get_real_outputs():
    """The real-structure evaluation and the scaling curve, when a real source is configured."""
    if not REAL_SOURCES & set(SOURCES):
        return []
    return [
        f"results/{DATASET}/plots/scaling.png",
        f"results/{DATASET}/plots/real_val_recall.png",
        f"results/{DATASET}/plots/real_test_recall.png",
    ]


def get_structure_tables(wildcards):
    return expand(
        "resources/structures/{dataset}/{source}.parquet",
        dataset=wildcards.dataset,
        source=SOURCES,
    )


def get_parent_tables(wildcards):
    return expand(
        "resources/structures/{dataset}/{source}.parquet",
        dataset=wildcards.dataset,
        source=config["structures"]["derived"]["from"],
    )


def get_chunks(wildcards):
    return expand(
        "results/{dataset}/sticks/chunk-{chunk}.parquet",
        dataset=wildcards.dataset,
        chunk=range(N_CHUNKS),
    )
