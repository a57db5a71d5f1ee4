# Config validation (before any job starts) and the small input helpers.

import os

from xrdid.config import structure_sources, validate_config
from xrdid.structures.sources import REAL_SOURCES, SOURCES as BUILT_SOURCES
from xrdid.weights import file_digest, init_digest

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
        + (
            [f"results/{DATASET}/train/mixture_probe.json"]
            if config["mixture_probe"]["enabled"]
            else []
        )
        + (
            [f"results/{DATASET}/train/mixture_detector.pt"]
            if config["mixture_detector"]["enabled"]
            else []
        )
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


def get_vae_outputs():
    """The VAE's reports and figures (rule all), when vae.enabled."""
    if not config["vae"]["enabled"]:
        return []
    names = ("comparison.html", "comparison.csv", "comparison.md", "novelty.html")
    plots = ("comparison", "latent_map", "reconstructions")
    return [f"results/{DATASET}/vae/{name}" for name in names] + [
        f"results/{DATASET}/plots/vae_{name}.png" for name in plots
    ]


def get_comparison_inputs(wildcards):
    """The CNN the VAE is compared with: this run's, unless vae.compare_with is pretrained."""
    if config["vae"]["compare_with"] == "dataset":
        return {"cnn": f"results/{wildcards.dataset}/train/model"}
    return {}


def get_novelty_inputs(wildcards):
    """The CNN of the novelty benchmark (get_comparison_inputs) and, when fitted, its mixture probe and
    detector (the benchmark scores both, so it runs after them)."""
    files = get_comparison_inputs(wildcards)
    if files and config["mixture_probe"]["enabled"]:
        files["mixture_probe"] = f"results/{wildcards.dataset}/train/mixture_probe.json"
    if files and config["mixture_detector"]["enabled"]:
        files["mixture_detector"] = (
            f"results/{wildcards.dataset}/train/mixture_detector.pt"
        )
    return files


def get_mixture_detector_inputs(wildcards):
    """The mixture probe the detector's output layer starts from, when the probe is fitted and the detector
    does not continue from another (mixture_detector.train.init_from)."""
    if (
        config["mixture_probe"]["enabled"]
        and not config["mixture_detector"]["train"]["init_from"]
    ):
        return {"probe": f"results/{wildcards.dataset}/train/mixture_probe.json"}
    return {}


def get_measured_inputs(wildcards):
    """Folders and label files of the measured sets, so that a changed set re-runs what reads it."""
    files = {}
    for name, spec in config["measured"]["sets"].items():
        files[f"measured_{name}_folder"] = spec["folder"]
        files[f"measured_{name}_labels"] = spec["labels"]
    return files
