"""The workflow as a user runs it: lint, config errors, the whole DAG on a tiny config, re-runs, resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

TINY = {
    "dataset": "tiny",
    "structures": {
        "source": "synthetic",
        "synthetic": {"space_groups": [2, 14, 62, 139, 166, 194, 225], "per_group": 3, "max_atoms": 16},
    },
    "simulate": {"chunks": 3, "d_min_A": 0.5},
    "split": {"fractions": [0.6, 0.2, 0.2]},
    "instrument": {"preset": "mars", "n_points": 1024},
    "augment": {"enabled": True},
    "model": {"stem_channels": 8, "stage_channels": [8, 16], "hidden": 32},
    "train": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 16},
    "mixture_probe": {"patterns": 16},
    "mixture_detector": {"enabled": True, "train": {"steps": 2, "batch_size": 8, "reuse": 2, "eval_patterns": 4}},
    "vae": {
        "prototypes": False,
        "novelty_patterns": 8,
        "model": {"stem_channels": 8, "stage_channels": [8, 16], "hidden": 16, "latent": 4, "classifier_hidden": 16},
        "train": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 16, "calibration_draws": 1, "holdout_space_groups": [139]},
    },
}


def make_project(path: Path, config: dict) -> Path:
    """A copy of the workflow (not of results) with ``config`` as its config.yaml."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", path / "Snakefile")
    for folder in ("workflow", "envs"):
        shutil.copytree(ROOT / folder, path / folder, dirs_exist_ok=True)
    (path / "config").mkdir(exist_ok=True)
    shutil.copy(ROOT / "config" / "schema.yaml", path / "config" / "schema.yaml")
    write_config(path, config)
    return path


def write_config(path: Path, config: dict) -> None:
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def snakemake(path: Path, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--workflow-profile", "workflow/profiles/default", *args]
    proc = subprocess.run(cmd, cwd=path, check=False, capture_output=True, text=True, timeout=900, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def planned_jobs(path: Path) -> dict[str, int]:
    """Rules a dry run would execute, with their job counts."""
    out = snakemake(path, "-n").stdout
    if "Nothing to be done" in out:
        return {}
    jobs, in_table = {}, False
    for line in out.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if not parts or parts[0].startswith("-"):
                continue
            if parts[0] == "total":
                break
            jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    path = make_project(tmp_path_factory.mktemp("tiny"), TINY)
    snakemake(path)
    return path


def test_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "good condition" in proc.stdout + proc.stderr


def test_bad_config_fails_before_any_job_naming_the_key(tmp_path):
    bad = json.loads(json.dumps(TINY))
    bad["train"]["epochs"] = "many"
    bad["train"]["learning_rate"] = 0.1
    path = make_project(tmp_path, bad)
    proc = snakemake(path, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "train.epochs: 'many' is not of type 'integer'" in text
    assert "unknown key(s) 'learning_rate' in train" in text
    assert not (path / "results").exists() and not (path / "resources").exists()


def test_the_novelty_benchmark_runs_after_the_mixture_scores_it_reads(tmp_path):
    # The benchmark scores the probe and the detector beside the CNN: each must be an input (an edge of the
    # rule graph), or it would read whatever file is there, or none, depending on the job order.
    for detector in (False, True):
        config = json.loads(json.dumps(TINY))
        config["mixture_detector"]["enabled"] = detector
        path = make_project(tmp_path / f"detector_{detector}", config)
        graph = snakemake(path, "--rulegraph", "--quiet", "all").stdout
        label = {m.group(2): m.group(1) for m in re.finditer(r'\s(\d+)\[label = "(\w+)"', graph)}
        edges = set(re.findall(r"(\d+) -> (\d+)", graph))
        assert (label["fit_mixture_probe"], label["evaluate_novelty"]) in edges, graph
        assert ((label.get("train_mixture_detector"), label["evaluate_novelty"]) in edges) == detector


def test_a_detector_continued_from_a_file_does_not_start_from_the_probe(tmp_path):
    # mixture_detector.train.init_from: the detector starts from that file, so the probe is no input of it.
    for start in (None, "start.pt"):
        config = json.loads(json.dumps(TINY))
        config["mixture_detector"]["train"]["init_from"] = start
        path = make_project(tmp_path / str(start), config)
        graph = snakemake(path, "--rulegraph", "--quiet", "all").stdout
        label = {m.group(2): m.group(1) for m in re.finditer(r'\s(\d+)\[label = "(\w+)"', graph)}
        edges = set(re.findall(r"(\d+) -> (\d+)", graph))
        assert ((label["fit_mixture_probe"], label["train_mixture_detector"]) in edges) == (start is None), graph


def test_whole_dag_produces_every_output(tiny_run):
    res = tiny_run / "results" / "tiny"
    for rel in ("train/model/model.json", "train/model/weights.pt", "train/history.csv", "evaluate/metrics.json",
                "plots/curves.png", "plots/confusion_crystal_system.png", "plots/confusion_space_group.png",
                "plots/augmentations.png", "evaluate/indexing.json", "train/mixture_probe.json", "train/mixture_detector.pt"):
        assert (res / rel).is_file(), rel
    metrics = json.loads((res / "evaluate" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n_structures"] > 0
    # xrdid predict uses the probe the workflow wrote beside the checkpoint.
    from xrdid.mixture_probe import probe_for

    assert probe_for(res / "train" / "model") is not None
    # ... and the mixture detector, in its place.
    from xrdid.mixture_detector import detector_for

    assert detector_for(res / "train" / "model") is not None
    indexing = json.loads((res / "evaluate" / "indexing.json").read_text())
    assert indexing["n_patterns"] > 0 and 0 <= indexing["success"]["all"]["top3"] <= 1
    assert "right cell in the top 3" in (res / "evaluate" / "metrics.html").read_text()
    for rule in ("generate_structures/synthetic", "simulate_chunk/0", "train_cnn", "evaluate_cnn", "evaluate_indexing",
                 "fit_mixture_probe", "train_mixture_detector"):
        assert (res / "logs" / f"{rule}.log").is_file()
        assert (res / "benchmarks" / f"{rule}.tsv").is_file()
    assert (tiny_run / "resources" / "structures" / "tiny" / "synthetic.failed.parquet").is_file()


MIXED = {
    **TINY,
    "dataset": "mixed",
    "structures": {
        "source": ["synthetic", "prototypes", "derived"],
        "synthetic": {"space_groups": [2, 14, 225], "per_group": 2, "max_atoms": 16},
        "prototypes": {"collections": ["pymatgen"]},
        "derived": {"from": ["prototypes"], "per_structure": 1},
    },
    "split": {"group_by": "prototype", "fractions": [0.6, 0.2, 0.2]},
    "instrument": {"preset": "cu", "n_points": 1024},
    "train": {**TINY["train"], "source_weights": {"synthetic": 1, "prototypes": 1, "derived": 2}},
    "evaluate": {"real": {"instruments": ["cu"], "draws": 1}},
}


def test_real_sources_are_split_by_type_and_evaluated(tmp_path):
    import polars as pl

    path = make_project(tmp_path, MIXED)
    snakemake(path)
    res = path / "results" / "mixed"
    for rel in ("plots/scaling.png", "plots/real_val_recall.png", "plots/real_test_recall.png",
                "evaluate/real_val_predictions.csv", "logs/derive_structures.log", "benchmarks/derive_structures.tsv"):
        assert (res / rel).is_file(), rel
    real = json.loads((res / "evaluate" / "real_val.json").read_text())
    cu = real["instruments"]["cu"]
    assert real["n_structures"] > 0 and cu["n_patterns"] > 0
    for weighting in ("plain", "materials_project_weighted"):
        assert 0 <= cu["with_prior"][weighting]["space_group_top1"] <= 1
    sticks = pl.read_parquet(res / "sticks.parquet")
    assert set(sticks["source"]) == {"synthetic", "prototypes", "derived"}
    derived = pl.read_parquet(path / "resources" / "structures" / "mixed" / "derived.parquet")
    # Every derived crystal sits in its parent's split.
    split_of = dict(zip(sticks["id"], sticks["split"], strict=True))
    assert all(split_of[c] == split_of[p] for c, p in zip(derived["id"], derived["parent_id"], strict=True) if c in split_of)
    assert planned_jobs(path) == {}


def test_rerun_right_away_does_nothing(tiny_run):
    assert planned_jobs(tiny_run) == {}


def _edited(path: Path, edit) -> Path:
    config = yaml.safe_load((path / "config" / "config.yaml").read_text())
    edit(config)
    write_config(path, config)
    return path


@pytest.fixture
def restore_config(tiny_run):
    original = (tiny_run / "config" / "config.yaml").read_text()
    yield tiny_run
    (tiny_run / "config" / "config.yaml").write_text(original)


def test_training_hyperparameter_reruns_only_train_evaluate_plot(restore_config):
    path = _edited(restore_config, lambda c: c["train"].update(lr=0.001))
    chunk = path / "results" / "tiny" / "sticks" / "chunk-0.parquet"
    before = chunk.stat().st_mtime_ns
    assert set(planned_jobs(path)) == {"train_cnn", "evaluate_cnn", "tabulate_metrics", "plot_curves", "plot_confusion",
                                       "compare_cnn_vae", "evaluate_novelty", "fit_mixture_probe", "train_mixture_detector",
                                       "all"}
    snakemake(path)
    assert chunk.stat().st_mtime_ns == before
    assert planned_jobs(path) == {}


def test_number_of_structures_reruns_everything_downstream(restore_config):
    path = _edited(restore_config, lambda c: c["structures"]["synthetic"].update(per_group=4))
    jobs = planned_jobs(path)
    assert jobs["generate_structures"] == 1 and jobs["simulate_chunk"] == 3
    assert {"merge_sticks", "train_cnn", "evaluate_cnn", "plot_curves", "plot_confusion"} <= set(jobs)


def test_instrument_change_does_not_resimulate(restore_config):
    path = _edited(restore_config, lambda c: c["instrument"].update(preset="cu"))
    jobs = planned_jobs(path)
    assert "train_cnn" in jobs
    assert not {"generate_structures", "simulate_chunk", "merge_sticks"} & set(jobs)


def test_a_second_detector_sitting_continues_its_file_and_reruns_when_the_file_changes(restore_config):
    from xrdid.mixture_detector import read_detector

    snakemake(restore_config)  # up to date with the restored config, whatever the tests before changed
    train = restore_config / "results" / "tiny" / "train"
    start = restore_config / "start.pt"
    shutil.copy(train / "mixture_detector.pt", start)
    path = _edited(restore_config, lambda c: c["mixture_detector"]["train"].update(init_from=str(start)))
    assert set(planned_jobs(path)) == {"train_mixture_detector", "evaluate_novelty", "all"}
    snakemake(path)
    assert read_detector(train / "mixture_detector.pt").meta["trained_on"]["train"]["init_from"] == str(start)
    assert planned_jobs(path) == {}
    # Another detector under the same name re-runs the sitting.
    shutil.copy(train / "mixture_detector.pt", start)
    assert "train_mixture_detector" in planned_jobs(path)


def _wait_until_ended(group: int, timeout: float) -> None:
    """Wait until no live process (zombies aside: they have run their last line) of process group ``group``
    is left."""
    deadline = time.time() + timeout
    while _live_members(group):
        assert time.time() < deadline, f"a process of the interrupted run was still alive after {timeout} s"
        time.sleep(0.05)


def _live_members(group: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command)": state, ppid, pgrp
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == group and fields[0] not in "ZX":
            members.append(int(stat.parent.name))
    return members


def _finished_chunks(log_text: str) -> set[str]:
    """Chunk files whose simulate_chunk job Snakemake reported as finished, from its console output."""
    outputs, current = {}, None
    for line in log_text.splitlines():
        line = line.strip()
        if line.startswith("output: results/tiny/sticks/chunk-"):
            current = line.split("/")[-1]
        elif line.startswith("jobid:") and current:
            outputs[line.split()[1]] = current
            current = None
    finished = set()
    for line in log_text.splitlines():
        if "Finished jobid:" in line and "simulate_chunk" in line:
            jobid = line.split("Finished jobid:")[1].split()[0]
            finished.add(outputs[jobid])
    return finished


def test_killed_mid_simulation_resumes_without_redoing_finished_chunks(tmp_path):
    config = json.loads(json.dumps(TINY))
    config["simulate"]["chunks"] = 6
    path = make_project(tmp_path / "project", config)
    sticks = path / "results" / "tiny" / "sticks"
    console = tmp_path / "console.txt"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--workflow-profile", "workflow/profiles/default",
           "results/tiny/sticks.parquet"]
    with open(console, "w") as out:
        proc = subprocess.Popen(cmd, cwd=path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 600
        while not _finished_chunks(console.read_text()):
            assert proc.poll() is None and time.time() < deadline, "the run ended before any chunk finished"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        proc.wait(timeout=120)
        # Snakemake can exit before its job's own process has finished unwinding (removing its
        # temporary file); the files are judged once every process of the run has ended.
        _wait_until_ended(proc.pid, timeout=120)
    finished = _finished_chunks(console.read_text())
    assert 1 <= len(finished) < 6, f"expected to stop mid-simulation, finished {sorted(finished)}"
    # A chunk whose atomic write completed as the interrupt arrived is on disk though Snakemake had no
    # time to report it; Snakemake keeps it or, when it had not recorded the job as done, redoes it.
    # Every chunk missing is planned again, and no chunk reported finished is.
    on_disk = {p.name for p in sticks.glob("chunk-*.parquet")}
    assert finished <= on_disk, f"reported finished but missing: {sorted(finished - on_disk)}"
    done = {name: (sticks / name).stat().st_mtime_ns for name in finished}
    assert not list(sticks.glob(".*.part")), "a partial chunk was left behind"
    jobs = planned_jobs_for(path, "results/tiny/sticks.parquet")
    assert 6 - len(on_disk) <= jobs.get("simulate_chunk", 0) <= 6 - len(finished)
    snakemake(path, "results/tiny/sticks.parquet")
    for name, mtime in done.items():
        assert (sticks / name).stat().st_mtime_ns == mtime, f"{name} was redone"
    assert len(list(sticks.glob("chunk-*.parquet"))) == 6


def planned_jobs_for(path: Path, target: str) -> dict[str, int]:
    out = snakemake(path, "-n", target).stdout
    jobs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total",):
            jobs[parts[0]] = int(parts[1])
    return jobs
