"""One entry point for the workflow: build the structures table of a configured source."""

from __future__ import annotations

from pathlib import Path

# Sources built by build_structures; "derived" is built from other sources' tables (derive_from_config).
SOURCES: tuple[str, ...] = ("synthetic", "materials_project", "local", "prototypes", "core_mof")
# Sources whose structures are real and used as they are (synthetic and derived crystals are not): the
# validation and test splits' rows of these sources are the real validation and test sets.
REAL_SOURCES = frozenset({"prototypes", "core_mof", "local", "materials_project"})


def build_structures(
    source: str,
    settings: dict,
    *,
    out: str | Path,
    failed_out: str | Path,
    symprec: float = 0.01,
    state_dir: str | Path | None = None,
    workers: int = 1,
) -> tuple[int, int]:
    """Dispatch to the source (one of :data:`SOURCES`) with its config section."""
    if source == "synthetic":
        from xrdid.structures.synthetic import SyntheticSpec, generate_synthetic

        groups = settings.get("space_groups", "all")
        spec = SyntheticSpec(
            space_groups=list(range(1, 231)) if groups == "all" else [int(g) for g in groups],
            per_group=int(settings["per_group"]),
            seed=int(settings.get("seed", 0)),
            max_elements=int(settings.get("max_elements", 3)),
            species_weights=None if settings.get("species_weights") is None else tuple(float(w) for w in settings["species_weights"]),
            wyckoff_statistics=float(settings.get("wyckoff_statistics", 0.0)),
            max_atoms=int(settings.get("max_atoms", 40)),
            symprec=symprec,
            timeout_s=float(settings.get("timeout_s", 5.0)),
            variants=int(settings.get("variants", 1)),
            variant_strain=float(settings.get("variant_strain", 0.08)),
            generator=str(settings.get("generator", "wyckoff")),
        )
        return generate_synthetic(spec, out=out, failed_out=failed_out, workers=workers)
    if source == "materials_project":
        from xrdid.structures.materials_project import download_materials_project

        if state_dir is None:
            raise ValueError("the materials_project source needs a state_dir to resume from")
        num_sites = settings.get("num_sites")
        return download_materials_project(
            out=out,
            failed_out=failed_out,
            state_dir=state_dir,
            elements=settings.get("elements"),
            num_sites=tuple(num_sites) if num_sites else None,
            energy_above_hull_max=settings.get("energy_above_hull_max"),
            is_stable=settings.get("is_stable"),
            chunk_size=int(settings.get("chunk_size", 1000)),
            symprec=symprec,
        )
    if source == "local":
        from xrdid.structures.local import load_local

        return load_local(settings["folder"], out=out, failed_out=failed_out, symprec=symprec)
    if source == "prototypes":
        from xrdid.structures.prototypes import COLLECTIONS, load_prototypes

        return load_prototypes(
            out=out, failed_out=failed_out, symprec=symprec,
            collections=tuple(settings.get("collections", COLLECTIONS)), workers=workers,
        )
    if source == "core_mof":
        from xrdid.structures.core_mof import DATASETS, load_core_mof

        return load_core_mof(
            out=out, failed_out=failed_out, symprec=symprec,
            datasets=tuple(settings.get("datasets", DATASETS)),
            max_atoms=int(settings.get("max_atoms", 200)),
            max_structures=settings.get("max_structures"),
            workers=workers,
        )
    raise ValueError(f"unknown structure source {source!r} ({' | '.join(SOURCES)})")


def derive_from_config(
    parents, settings: dict, *, out: str | Path, failed_out: str | Path, symprec: float = 0.01, workers: int = 1
) -> tuple[int, int]:
    """The ``derived`` source: crystals derived from the rows of the ``parents`` tables (see
    :mod:`xrdid.structures.derived`), with the ``structures.derived`` config section."""
    from xrdid.structures.derived import DeriveSpec, derive_structures

    keys = ("per_structure", "seed", "substitute", "max_mendeleev_distance", "strain", "jitter_A", "min_distance_ratio", "max_atoms")
    spec = DeriveSpec(symprec=symprec, **{k: settings[k] for k in keys if k in settings})
    return derive_structures(parents, spec, out=out, failed_out=failed_out, workers=workers)
