from pathlib import Path

import pytest
import yaml

from xrdid.config import ConfigError, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"


def default_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_defaults_are_filled():
    c = default_config()
    del c["evaluate"]
    validate_config(c, SCHEMA)
    assert c["evaluate"]["seed"] == 12345


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["train"].update(epochs="ten"), r"train\.epochs: 'ten' is not of type 'integer'"),
        (lambda c: c["train"].update(epochz=3), r"unknown key\(s\) 'epochz' in train"),
        (lambda c: c.update(tain={}), r"unknown key\(s\) 'tain' in \(top level\)"),
        (lambda c: c["structures"].update(source="icsd"), r"structures\.source: 'icsd' is not one of"),
        (lambda c: c["structures"].update(source=["synthetic", "icsd"]), r"structures\.source\.1: 'icsd' is not one of"),
        (lambda c: c["structures"].update(derived={"per_structure": {"icsd": 3}}), r"structures\.derived\.per_structure: 'icsd' is not one of"),
        (lambda c: c["train"].update(source_weights={"prototypes": 1.0}), r"train\.source_weights: prototypes not among structures\.source"),
        (lambda c: c["train"].update(source_weights={"synthetic": 0}), r"train\.source_weights: every configured source has weight 0"),
        (lambda c: c["simulate"].update(chunks=0), r"simulate\.chunks: 0 is less than the minimum"),
        (lambda c: c["augment"].update(noise=1), r"unknown key\(s\) 'noise' in augment"),
        (lambda c: c["augment"].update(zero_shift_deg=[0.1]), r"augment\.zero_shift_deg: \[0\.1\] is too short"),
        (lambda c: c["augment"].update(zero_shift_deg=[0.1, -0.1]), r"augment\.zero_shift_deg: range \[0\.1, -0\.1\] has low > high"),
        (lambda c: c["instrument"].update(wavelenght_A=1.5), r"unknown key\(s\) 'wavelenght_A' in instrument"),
        (lambda c: c["instrument"].update(preset="moon"), r"instrument: unknown instrument 'moon'"),
        (lambda c: c["simulate"].update(d_min_A=0.9), r"simulate\.d_min_A: 0\.9 Å is larger than"),
        (lambda c: c["split"].update(fractions=[0.5, 0.1, 0.1]), r"split\.fractions: must sum to 1"),
    ],
)
def test_bad_config_names_the_key(edit, message):
    c = default_config()
    edit(c)
    with pytest.raises(ConfigError, match=message):
        validate_config(c, SCHEMA)


def _deep_update(base: dict, other: dict) -> dict:
    """What `--configfile` does to config/config.yaml (snakemake's update_config)."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (ROOT / "config").glob("*.yaml") if p.name not in ("config.yaml", "schema.yaml"))
)
def test_every_shipped_configfile_is_valid_over_the_default(name):
    c = _deep_update(default_config(), yaml.safe_load((ROOT / "config" / name).read_text()))
    validate_config(c, SCHEMA)
