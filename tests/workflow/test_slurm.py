"""The whole DAG on a real SLURM through workflow/profiles/slurm: a chunk job cancelled mid-run is
retried, leaves nothing partial, and a re-run has nothing to do.

Needs a running SLURM whose default partition has a node with one GPU gres (CI starts one with
.ci/install-slurm.sh && .ci/start-slurm.sh) and the `cluster` extra. Skipped, with the reason, where
`sinfo` is absent or does not answer, so developer machines without SLURM still pass; with
XRDID_REQUIRE_SLURM=1 (CI) a missing SLURM fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from test_workflow import ROOT, TINY, make_project

pytestmark = pytest.mark.slow
DATASET = TINY["dataset"]


def _run(*cmd: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)


def _unavailable(reason: str):
    """Skip; but fail where SLURM must be there (CI sets XRDID_REQUIRE_SLURM=1), so CI never skips silently."""
    if os.environ.get("XRDID_REQUIRE_SLURM") == "1":
        pytest.fail(f"XRDID_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


def slurm_cluster() -> dict:
    """The default partition and its first node (CPUs, memory), or a skip with the reason."""
    for tool in ("sinfo", "sbatch", "squeue", "scancel", "scontrol"):
        if shutil.which(tool) is None:
            _unavailable(f"SLURM is not installed ({tool} not found); CI runs .ci/install-slurm.sh")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        _unavailable("snakemake-executor-plugin-slurm is not installed (pip install -e '.[cluster]')")
    try:
        proc = _run("sinfo", "--noheader", "--format=%P|%T|%N|%c|%m|%G")
    except subprocess.TimeoutExpired:
        _unavailable("sinfo does not answer (slurmctld not running?); CI runs .ci/start-slurm.sh")
    if proc.returncode != 0:
        _unavailable(f"sinfo failed (slurmctld not running?): {proc.stderr.strip()}")
    for line in proc.stdout.splitlines():
        partition, state, nodes, cpus, mem, gres = line.split("|")
        if partition.endswith("*") and state in ("idle", "mixed"):
            if "gpu" not in gres:
                _unavailable(f"partition {partition} has no GPU gres ({gres}); see .ci/install-slurm.sh")
            node = _run("scontrol", "show", "hostnames", nodes).stdout.split()[0]
            return {"partition": partition.rstrip("*"), "node": node, "cpus": int(cpus), "mem_mb": int(mem.rstrip("+"))}
    _unavailable(f"no idle default partition in sinfo: {proc.stdout.strip()!r}")


def slurm_test_profile(cluster: dict) -> dict:
    """workflow/profiles/slurm as this machine needs it: the same keys, with sizes capped to the node and
    fast status checks. Partition through XRDID_SLURM_PARTITION, as a user sets it."""
    import yte

    env = dict(os.environ, XRDID_SLURM_PARTITION=cluster["partition"])
    saved = os.environ.copy()
    os.environ.update(env)
    try:
        with open(ROOT / "workflow" / "profiles" / "slurm" / "config.yaml") as fh:
            profile = yte.process_yaml(fh, require_use_yte=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert profile["default-resources"]["slurm_partition"] == cluster["partition"]
    assert profile["set-resources"]["train_cnn"]["gpu"] == 1
    cap = max(256, cluster["mem_mb"] // 4)
    for resources in [profile["default-resources"], *profile["set-resources"].values()]:
        if "mem_mb" in resources:
            resources["mem_mb"] = f"min({resources['mem_mb']}, {cap})"
    profile.update({
        "max-threads": cluster["cpus"],
        # No accounting database on the test cluster: status comes from squeue (MinJobAge=600).
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "seconds-between-status-checks": 2,
        "latency-wait": 5,
    })
    return profile


def jobs_in(workdir: Path) -> list[dict]:
    """SLURM jobs (array tasks separately) whose working directory is ``workdir``."""
    proc = _run("squeue", "--noheader", "--states=all", "--format=%i|%T|%k|%Z")
    jobs = []
    for line in proc.stdout.splitlines():
        job_id, state, comment, cwd = line.split("|", 3)
        if Path(cwd).resolve() == workdir.resolve():
            jobs.append({"id": job_id, "state": state, "comment": comment})
    return jobs


@pytest.fixture(scope="module")
def slurm_run():
    cluster = slurm_cluster()
    path = Path(tempfile.mkdtemp(prefix="xrdid-slurm-"))
    proc = None
    try:
        make_project(path, TINY)
        profile_dir = path / "workflow" / "profiles" / "slurm-test"
        profile_dir.mkdir()
        (profile_dir / "config.yaml").write_text(yaml.safe_dump(slurm_test_profile(cluster)))
        log = path / "snakemake.log"
        cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "workflow/profiles/slurm-test", "--verbose"]
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, cwd=path, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
            cancelled = cancel_one_running_chunk(path, proc)
            print(f"scancelled job {cancelled['job']} while it simulated chunk {cancelled['chunk']}")
            proc.wait(timeout=1200)
        yield {"path": path, "rc": proc.returncode, "log": log.read_text(), "cancelled": cancelled,
               "cluster": cluster, "cmd": cmd}
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()  # Snakemake cancels its SLURM jobs on SIGTERM
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        leftover = [j["id"] for j in jobs_in(path) if j["state"] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")]
        if leftover:
            _run("scancel", *leftover)
        shutil.rmtree(path, ignore_errors=True)


def cancel_one_running_chunk(path: Path, proc: subprocess.Popen) -> dict:
    """scancel a simulate_chunk job while its script runs (its log exists, its output does not)."""
    res = path / "results" / DATASET
    deadline = time.time() + 600
    while time.time() < deadline:
        assert proc.poll() is None, "snakemake ended before any chunk ran"
        for job in jobs_in(path):
            if "simulate_chunk" not in job["comment"] or job["state"] != "RUNNING":
                continue
            chunk = chunk_of(path, job["id"])
            if chunk is None:
                continue
            started = (res / "logs" / "simulate_chunk" / f"{chunk}.log").exists()
            done = (res / "sticks" / f"chunk-{chunk}.parquet").exists()
            if started and not done:
                _run("scancel", job["id"])
                return {"chunk": chunk, "job": job["id"]}
        time.sleep(0.1)
    raise AssertionError("no chunk job was seen running")


def chunk_of(path: Path, job_id: str) -> int | None:
    """The chunk a running SLURM job computes, from its SLURM log."""
    for log in (path / ".snakemake" / "slurm_logs" / "rule_simulate_chunk").rglob(f"{job_id}.log"):
        match = re.search(r"wildcards: dataset=\S+, chunk=(\d+)", log.read_text(errors="replace"))
        if match:
            return int(match.group(1))
    return None


def test_whole_dag_runs_on_slurm(slurm_run):
    assert slurm_run["rc"] == 0, slurm_run["log"][-6000:]
    res = slurm_run["path"] / "results" / DATASET
    for rel in ("train/model/model.json", "evaluate/metrics.json", "evaluate/metrics.html", "plots/curves.png",
                "plots/confusion_space_group.png", "plots/confusion_crystal_system.png"):
        assert (res / rel).is_file(), rel
    for chunk in range(TINY["simulate"]["chunks"]):
        assert (res / "sticks" / f"chunk-{chunk}.parquet").is_file()


def test_jobs_run_in_this_python_with_the_profile_resources(slurm_run):
    text = slurm_run["log"]
    calls = [line for line in text.splitlines() if "sbatch call" in line]
    assert calls, "no sbatch call in the verbose log"
    # Every job runs `<this python> -m snakemake ...` (--export=ALL): the venv with xrdid installed.
    assert all(sys.executable in c and "--export=ALL" in c for c in calls), calls[0]
    assert all(f"-p {slurm_run['cluster']['partition']}" in c for c in calls)
    train = [c for c in calls if "rule_train_cnn" in c]
    assert train and "--gpus=1" in train[0] and "-t 720" in train[0]
    chunks = [c for c in calls if "rule_simulate_chunk" in c]
    assert len(chunks) >= TINY["simulate"]["chunks"] and all("--cpus-per-task=1" in c for c in chunks)


def test_cancelled_chunk_is_retried_and_leaves_nothing_partial(slurm_run):
    assert slurm_run["rc"] == 0
    cancelled = slurm_run["cancelled"]
    assert "Trying to restart job" in slurm_run["log"], f"cancelled {cancelled} but no retry in the log"
    sticks = slurm_run["path"] / "results" / DATASET / "sticks"
    assert (sticks / f"chunk-{cancelled['chunk']}.parquet").is_file()
    assert not list((slurm_run["path"] / "results").rglob("*.part")), "a partial output was left behind"


def test_rerun_on_slurm_has_nothing_to_do(slurm_run):
    assert slurm_run["rc"] == 0
    proc = subprocess.run([*slurm_run["cmd"][:-1], "-n"], cwd=slurm_run["path"], check=False, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_mp_like_structures_to_merged_sticks_on_slurm(tmp_path):
    """benchmarks/mp_scale.py's job, smaller: a table of real crystals with Materials Project's cell sizes,
    simulated in chunk jobs and merged, through the SLURM profile; every job's benchmark file records
    its peak memory."""
    import pyarrow.parquet as pq

    cluster = slurm_cluster()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import mp_scale

    pool = mp_scale.real_pool(["pymatgen"], tmp_path / "cache", max_atoms=200)
    picks = mp_scale.draw(pool, 600, max_atoms=200, seed=0)
    path = tmp_path / "project"
    mp_scale.make_workflow(path, {"pool": pool, "picks": picks, "seed": 0}, chunks=4)
    profile_dir = path / "workflow" / "profiles" / "slurm-test"
    profile_dir.mkdir()
    (profile_dir / "config.yaml").write_text(yaml.safe_dump(slurm_test_profile(cluster)))
    target = f"results/{mp_scale.DATASET}/sticks.parquet"
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "workflow/profiles/slurm-test", target]
    proc = subprocess.run(cmd, cwd=path, check=False, capture_output=True, text=True, timeout=1200)
    try:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        assert pq.read_metadata(path / target).num_rows == 600
        chunks, merge = mp_scale.job_files(path, 4)
        assert sum(c["n"] for c in chunks) == 600
        assert all(c["max_rss_mb"] > 0 for c in chunks) and merge["max_rss_mb"] > 0
    finally:
        leftover = [j["id"] for j in jobs_in(path) if j["state"] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")]
        if leftover:
            _run("scancel", *leftover)
