"""Prediction API and ``xrdid predict``: contract fields, any wavelength through Q, bad input refused."""

import json

import numpy as np
import pytest
import torch

from xrdid.cli import main
from xrdid.predict import PredictionError, load_model, predict_patterns, prepare
from xrdid.readers import Pattern

N = 512
CU = 1.5405929


@pytest.fixture(scope="module")
def checkpoint(random_checkpoint):
    return random_checkpoint(512)


def peaks(two_theta, centres=(28.4, 47.3, 56.1, 69.1, 76.4), width=0.1, background=50.0):
    y = np.full_like(two_theta, background)
    for i, c in enumerate(centres):
        y += 1000.0 / (i + 1) * np.exp(-0.5 * ((two_theta - c) / width) ** 2)
    return y


def write_xy(path, x, y):
    np.savetxt(path, np.column_stack([x, y]))
    return path


def test_result_fields_and_probabilities(checkpoint):
    bundle = load_model(checkpoint)
    tt = np.linspace(5, 90, 4000)
    (r,) = predict_patterns(bundle, [Pattern(tt, peaks(tt), "two_theta", wavelength_A=CU)], top_k=3)
    assert set(r) >= {"space_group", "top_k", "crystal_system", "novelty"}
    assert len(r["top_k"]) == 3 and r["top_k"][0] == r["space_group"]
    probs = [t["probability"] for t in r["top_k"]]
    assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
    assert 1 <= r["space_group"]["number"] <= 230 and isinstance(r["space_group"]["symbol"], str)
    assert r["crystal_system"]["name"] in {"triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic"}
    assert r["novelty"]["method"] == "max_softmax" and r["novelty"]["score"] == pytest.approx(1 - probs[0])


def test_any_wavelength_maps_through_q(checkpoint):
    """The same pattern measured at Cu Kα and at 0.5 Å (or given in Q) gives the same model input."""
    bundle = load_model(checkpoint)
    tt = np.linspace(2, 100, 20000)
    cu = Pattern(tt, peaks(tt, width=0.05), "two_theta", wavelength_A=CU, path="cu")
    q = 4 * np.pi * np.sin(np.radians(tt) / 2) / CU
    tt_syn = np.degrees(2 * np.arcsin(q * 0.5 / (4 * np.pi)))
    syn = Pattern(tt_syn, cu.y, "two_theta", wavelength_A=0.5, path="syn")
    in_q = Pattern(q, cu.y, "q", path="q")
    a, b, c = (prepare(bundle, p)[0] for p in (cu, syn, in_q))
    np.testing.assert_allclose(a, b, atol=2e-3)
    np.testing.assert_allclose(a, c, atol=2e-3)


def test_partial_coverage_is_masked(checkpoint):
    bundle = load_model(checkpoint)
    tt = np.linspace(30, 90, 3000)
    y, mask = prepare(bundle, Pattern(tt, peaks(tt), "two_theta", wavelength_A=CU))
    grid = bundle.grid
    assert not mask[grid < 29.9].any() and mask[grid > 30.1].all()
    assert (y[mask == 0] == 0).all() and y.max() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tt: Pattern(tt, np.zeros_like(tt), "two_theta", wavelength_A=CU), "all zeros"),
        (lambda tt: Pattern(tt, np.where(tt > 50, np.nan, peaks(tt)), "two_theta", wavelength_A=CU), "non-finite"),
        (lambda tt: Pattern(tt, peaks(tt)[:-5], "two_theta", wavelength_A=CU), "x values but"),
        (lambda tt: Pattern(np.linspace(100, 160, 500), np.ones(500) + np.arange(500) % 7, "two_theta", wavelength_A=CU), "covers"),
        (lambda tt: Pattern(tt, peaks(tt), "two_theta"), "no wavelength"),
    ],
    ids=["zeros", "nan", "shape", "coverage", "no-wavelength"],
)
def test_bad_input_is_refused(checkpoint, make, message):
    bundle = load_model(checkpoint)
    tt = np.linspace(5, 90, 1000)
    with pytest.raises(PredictionError, match=message):
        predict_patterns(bundle, [make(tt)])


def test_cli_json_batch_with_bad_files(checkpoint, tmp_path, capsys):
    tt = np.linspace(5, 90, 3000)
    good = write_xy(tmp_path / "good.xy", tt, peaks(tt))
    zeros = write_xy(tmp_path / "zeros.xy", tt, np.zeros_like(tt))
    q = 4 * np.pi * np.sin(np.radians(tt) / 2) / CU
    in_q = tmp_path / "in_q.csv"
    in_q.write_text("q,intensity\n" + "\n".join(f"{a},{b}" for a, b in zip(q, peaks(tt))))
    rc = main(["predict", str(good), str(zeros), str(tmp_path / "missing.xy"), str(in_q),
               "--model", str(checkpoint), "--wavelength", str(CU), "--json", "--top-k", "2"])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert rc == 1
    assert [r["file"] for r in lines] == [str(good), str(in_q)]
    assert all(len(r["top_k"]) == 2 and "crystal_system" in r and "novelty" in r for r in lines)
    assert "zeros.xy" in err and "missing.xy" in err and "2 of 4" in err


def test_cli_indexes_only_small_batches_unless_asked(checkpoint, tmp_path, capsys, monkeypatch):
    from xrdid.commands import predict as command

    monkeypatch.setattr(command, "CELL_AUTO_MAX_FILES", 1)
    tt = np.linspace(5, 90, 3000)
    files = [str(write_xy(tmp_path / f"{i}.xy", tt, peaks(tt))) for i in range(2)]
    common = ["--model", str(checkpoint), "--wavelength", str(CU), "--json"]

    def cells(paths, *flags):
        assert main(["predict", *paths, *common, *flags]) == 0
        out, err = capsys.readouterr()
        return ["cell" in json.loads(line) for line in out.splitlines()], err

    assert cells(files[:1]) == ([True], "")
    present, err = cells(files)
    assert present == [False, False] and "--cell" in err
    assert cells(files, "--cell")[0] == [True, True]
    assert cells(files[:1], "--no-cell")[0] == [False]


def test_cli_table_and_instrument(checkpoint, tmp_path, capsys):
    tt = np.linspace(5, 90, 3000)
    good = write_xy(tmp_path / "good.xy", tt, peaks(tt))
    assert main(["predict", str(good), "--model", str(checkpoint), "--instrument", "cu"]) == 0
    out = capsys.readouterr().out
    assert "space group" in out and "crystal system" in out and "good.xy" in out


def test_cli_needs_a_wavelength_for_2theta(checkpoint, tmp_path, capsys):
    tt = np.linspace(5, 90, 3000)
    good = write_xy(tmp_path / "good.xy", tt, peaks(tt))
    assert main(["predict", str(good), "--model", str(checkpoint)]) == 1
    assert "wavelength" in capsys.readouterr().err


def test_cli_bad_model(tmp_path, capsys):
    assert main(["predict", "x.xy", "--model", str(tmp_path)]) == 2
    assert "not an xrdid checkpoint" in capsys.readouterr().err


def test_prior_correction_shifts_towards_common_groups(checkpoint, tmp_path):
    import shutil

    from xrdid.predict import prior_log_ratio

    target = np.ones(230)
    target[13] = 1e4  # P2_1/c (No. 14) dominates the target population
    ratio = prior_log_ratio(target, np.full(230, 10.0))
    assert ratio[13] > 0 > ratio[0]
    ck = tmp_path / "ck"
    shutil.copytree(checkpoint, ck)
    meta = json.loads((ck / "model.json").read_text())
    meta["prior_log_ratio"] = ratio
    (ck / "model.json").write_text(json.dumps(meta))
    tt = np.linspace(5, 90, 3000)
    p = Pattern(tt, peaks(tt), "two_theta", wavelength_A=CU)
    # The space-group head's own shares (a space-group prior alone never moves the crystal-system answer,
    # which the consistent default makes the space groups follow).
    with_prior = predict_patterns(load_model(ck, consistent=False), [p])[0]
    without = predict_patterns(load_model(ck), [p], prior=False)[0]
    assert with_prior["space_group"]["number"] == 14
    assert without == predict_patterns(load_model(checkpoint, consistent=False), [p])[0]


def test_materials_project_prior_favours_common_groups_and_systems(checkpoint, tmp_path):
    import shutil

    import pytest

    from xrdid.structures.wyckoff import real_space_group_counts

    counts = real_space_group_counts()
    # The statistics: Fm-3m, P-1 and P2_1/c are among the most common groups.
    assert {225, 2, 14} <= set(np.argsort(counts)[-5:] + 1)
    with pytest.raises(ValueError, match="does not record its training labels"):
        load_model(checkpoint, prior="materials_project")
    ck = tmp_path / "ck"
    shutil.copytree(checkpoint, ck)
    meta = json.loads((ck / "model.json").read_text())
    meta["train_space_group_counts"] = [10] * 230
    (ck / "model.json").write_text(json.dumps(meta))
    checkpoint = ck
    bundle = load_model(checkpoint, prior="materials_project")
    sg, cs = bundle.prior_log_ratio, bundle.crystal_system_prior_log_ratio
    assert sg.shape == (230,) and cs.shape == (7,)
    assert sg[13] > 0 > sg[229]  # P2_1/c up, Ia-3d down, against balanced training counts
    assert cs[1] > 0  # monoclinic up
    tt = np.linspace(5, 90, 3000)
    p = Pattern(tt, peaks(tt), "two_theta", wavelength_A=CU)
    with_prior = predict_patterns(bundle, [p])[0]
    plain = predict_patterns(load_model(checkpoint, prior="none"), [p])[0]
    assert plain == predict_patterns(load_model(checkpoint), [p])[0]
    assert with_prior["space_group"]["probability"] != plain["space_group"]["probability"]
    with pytest.raises(ValueError, match="prior must be one of"):
        load_model(checkpoint, prior="icsd")


def test_consistent_space_groups_add_up_to_the_crystal_system_answer():
    from xrdid.labels import space_group_to_system_map
    from xrdid.predict import consistent_space_groups

    gen = torch.Generator().manual_seed(0)
    sg_p = torch.rand(4, 230, generator=gen, dtype=torch.float64).softmax(-1)
    cs_p = torch.rand(4, 7, generator=gen, dtype=torch.float64).softmax(-1)
    out = consistent_space_groups(sg_p, cs_p)
    systems = torch.as_tensor(space_group_to_system_map())
    sums = torch.zeros(4, 7, dtype=torch.float64).index_add_(1, systems, out)
    assert torch.allclose(sums, cs_p)  # the system marginal is the crystal-system head's
    assert torch.allclose(out.sum(-1), torch.ones(4, dtype=torch.float64))
    # Within a system the space-group head's shares are kept: P2_1/c over P2_1 (both monoclinic), Fm-3m over Pm-3m.
    for a, b in ((13, 3), (224, 220)):
        assert torch.allclose(out[:, a] / out[:, b], sg_p[:, a] / sg_p[:, b])


def test_consistent_answer_and_triclinic_offset_change_only_the_answer_with_a_prior(checkpoint, tmp_path, capsys):
    from xrdid.labels import space_group_to_system_map

    tt = np.linspace(5, 90, 3000)
    p = Pattern(tt, peaks(tt), "two_theta", wavelength_A=CU)
    plain = load_model(checkpoint, consistent=False)
    default = predict_patterns(plain, [p], cell=False)[0]
    bundle = load_model(checkpoint, consistent=True, triclinic_offset=50.0)
    # The model's own heads (prior=False, ``--prior none`` in the evaluation) are untouched.
    assert predict_patterns(bundle, [p], prior=False, cell=False)[0] == default
    shifted = predict_patterns(bundle, [p], cell=False)[0]
    assert shifted["crystal_system"]["name"] == "triclinic" != default["crystal_system"]["name"]
    # Consistent: the space groups follow the crystal-system answer, so a triclinic group leads.
    assert shifted["space_group"]["number"] in (1, 2)
    with torch.no_grad():
        sg, cs = bundle.probabilities(*bundle.model(torch.randn(3, 2, N)))
    sums = np.bincount(space_group_to_system_map(), weights=sg[0].double().numpy(), minlength=7)
    assert sums == pytest.approx(cs[0].double().numpy(), abs=1e-5)
    # The same through the command line.
    f = write_xy(tmp_path / "p.xy", tt, peaks(tt))
    common = [str(f), "--model", str(checkpoint), "--wavelength", str(CU), "--no-cell", "--json"]
    assert main(["predict", *common, "--triclinic-offset", "50"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["crystal_system"]["name"] == "triclinic" and r["space_group"]["number"] in (1, 2)
    assert main(["predict", *common]) == 0
    assert json.loads(capsys.readouterr().out)["crystal_system"] == default["crystal_system"]


def test_space_groups_add_up_to_the_crystal_system_answer_by_default(checkpoint, tmp_path, capsys):
    from xrdid.labels import CRYSTAL_SYSTEMS, space_group_to_system_map

    systems = space_group_to_system_map()
    consistent, own = load_model(checkpoint), load_model(checkpoint, consistent=False)
    with torch.no_grad():
        logits = consistent.model(torch.randn(4, 2, N, generator=torch.Generator().manual_seed(1)))
        (sg, cs), (_, cs_own) = consistent.probabilities(*logits), own.probabilities(*logits)
    for b in range(4):
        sums = np.bincount(systems, weights=sg[b].double().numpy(), minlength=7)
        assert sums == pytest.approx(cs[b].double().numpy(), abs=1e-5)
    assert torch.allclose(cs, cs_own)  # the crystal-system answer is the head's either way
    # The command line's default, and --no-consistent for the space-group head's own probabilities.
    tt = np.linspace(5, 90, 3000)
    f = write_xy(tmp_path / "p.xy", tt, peaks(tt))
    common = [str(f), "--model", str(checkpoint), "--wavelength", str(CU), "--no-cell", "--json", "--top-k", "230"]
    answers = []
    for extra in ([], ["--no-consistent"]):
        assert main(["predict", *common, *extra]) == 0
        answers.append(json.loads(capsys.readouterr().out))
    for r, agrees in zip(answers, (True, False)):
        answered = CRYSTAL_SYSTEMS.index(r["crystal_system"]["name"])
        total = sum(g["probability"] for g in r["top_k"] if systems[g["number"] - 1] == answered)
        assert (total == pytest.approx(r["crystal_system"]["probability"], abs=1e-3)) == agrees


def test_cli_reports_the_vae_novelty_and_its_warning(tiny_vae, tmp_path, capsys, monkeypatch):
    import xrdid.novelty

    tt = np.linspace(5, 90, 3000)
    good = str(write_xy(tmp_path / "good.xy", tt, peaks(tt)))
    common = ["--model", str(tiny_vae), "--wavelength", str(CU), "--no-cell"]
    assert main(["predict", good, *common, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["novelty"]["method"] == "vae"
    assert main(["predict", good, *common, "--json", "--vae", "none"]) == 0
    assert json.loads(capsys.readouterr().out)["novelty"]["method"] == "max_softmax"
    monkeypatch.setattr(xrdid.novelty, "UNUSUAL", 0.0)  # every pattern counts as unusual here
    assert main(["predict", good, *common]) == 0
    out = capsys.readouterr().out
    assert "(vae)" in out and "warning" in out and "known structures" in out
    assert main(["predict", good, *common, "--vae", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
