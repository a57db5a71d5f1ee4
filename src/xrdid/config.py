"""Validation of the workflow configuration, with messages that name the offending key.

``validate_config`` checks the config against ``config/schema.yaml`` (JSON Schema, defaults filled
in) and then the cross-key rules a schema cannot express: known instrument, augmentation and model
keys, and an instrument whose grid needs no d-spacing smaller than the simulated ones.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    pass


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _fill_defaults(schema: dict, config: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            default = sub["default"]
            config[key] = dict(default) if isinstance(default, dict) else (list(default) if isinstance(default, list) else default)
        if isinstance(config.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(sub, config[key])


def _alternative_error(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For a oneOf/anyOf failure, the error of the alternative whose type the value has (a list of
    sources: the bad item), instead of "not valid under any of the given schemas"."""
    branches: dict = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    for errors in branches.values():
        if not any(sub.validator == "type" and not sub.relative_path for sub in errors):
            return errors[0]
    return error.context[0]


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Validate ``config`` in place (defaults filled); raise ConfigError naming the key on failure."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    _fill_defaults(schema, config)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            if e.validator == "additionalProperties":
                extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
                where = _path(e)
                lines.append(f"unknown key(s) {', '.join(repr(k) for k in extra)} in {where}")
            elif e.context:
                specific = _alternative_error(e)
                lines.append(f"{_path(specific)}: {specific.message}")
            else:
                lines.append(f"{_path(e)}: {e.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    _check_semantics(config)
    return config


def _check_semantics(config: dict) -> None:
    from xrdid.instrument import Augment, get_instrument
    from xrdid.models import CNNConfig

    try:
        instrument = get_instrument(config["instrument"])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"instrument: {exc}") from None
    try:
        Augment.from_dict(config["augment"])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"augment: {exc}") from None
    for key, value in config["augment"].items():
        if isinstance(value, list) and len(value) == 2 and value[0] > value[1]:
            raise ConfigError(f"augment.{key}: range [{value[0]}, {value[1]}] has low > high")
    try:
        CNNConfig.from_dict(config["model"])
    except TypeError as exc:
        raise ConfigError(f"model: {exc}") from None
    d_min = config["simulate"]["d_min_A"]
    if instrument.d_min_A < d_min:
        raise ConfigError(
            f"simulate.d_min_A: {d_min} Å is larger than the {instrument.d_min_A:.3f} Å the instrument's grid "
            f"reaches (λ = {min(instrument.wavelengths_A):.4f} Å at 2θ = {instrument.two_theta_max_deg}°); lower it"
        )
    if instrument.two_theta_min_deg >= instrument.two_theta_max_deg:
        raise ConfigError("instrument: two_theta_min_deg must be below two_theta_max_deg")
    if abs(sum(config["split"]["fractions"]) - 1.0) > 1e-6:
        raise ConfigError(f"split.fractions: must sum to 1, got {config['split']['fractions']}")
    sources = structure_sources(config)
    weights = config["train"].get("source_weights")
    if weights is not None:
        unknown = sorted(set(weights) - set(sources))
        if unknown:
            raise ConfigError(
                f"train.source_weights: {', '.join(unknown)} not among structures.source ({', '.join(sources)})"
            )
        if not any(weights.get(s, 0) > 0 for s in sources):
            raise ConfigError("train.source_weights: every configured source has weight 0; nothing to train on")


def structure_sources(config: dict) -> list[str]:
    """``structures.source`` as a list (one source may be given as a plain string)."""
    source = config["structures"]["source"]
    return [source] if isinstance(source, str) else list(source)
