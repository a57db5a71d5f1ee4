"""The mixture detector (xrdid.mixture_detector): trained end to end beside a checkpoint, bound to its weights
and grid, resumable, measured on held-out structures, reported by predict in place of the probe."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import xrdid.mixture_detector as md
from xrdid.mixture_detector import (
    FILENAME,
    METHOD,
    DetectorTrainConfig,
    MixtureDetector,
    detector_for,
    read_detector,
    train_mixture_detector,
)
from xrdid.mixture_probe import FILENAME as PROBE
from xrdid.mixture_probe import features, fit_mixture_probe, read_probe

# Tiny: 4 rendered batches of 8 (2 updates each). The tiny table's validation split (4 structures, enough for
# four-phase mixtures) is both the training and the "held-out" one here, to exercise both paths.
TINY = DetectorTrainConfig(steps=4, batch_size=8, reuse=2, replay=4, warmup_steps=1, save_every=2, eval_patterns=6)


def _train(model, sticks, out, cfg=TINY, probe=None):
    return train_mixture_detector(model, sticks, out, cfg=cfg, train_split="val", eval_split="val", probe=probe)


@pytest.fixture(scope="module")
def detected(tiny_vae, sticks_table, tmp_path_factory):
    """A copy of the tiny checkpoint with its probe and its detector beside it, as the workflow writes them."""
    root = tmp_path_factory.mktemp("detector")
    model = root / "model"
    shutil.copytree(tiny_vae, model)
    fit_mixture_probe(model, sticks_table, root / PROBE, patterns=12, fit_split="val", eval_split="val")
    _train(model, sticks_table, root / FILENAME, probe=root / PROBE)
    return model


def test_the_detector_starts_as_the_probe(detected):
    from xrdid.models.checkpoint import load_checkpoint

    classifier, _, _ = load_checkpoint(detected)
    probe = read_probe(detected.parent / PROBE)
    detector = MixtureDetector.from_classifier(classifier, probe).eval()
    x = torch.stack([torch.rand(5, 512), torch.ones(5, 512)], 1)
    with torch.no_grad():
        assert detector(x).double().numpy() == pytest.approx(probe.logits(features(classifier, x)), abs=1e-4)


def _clean_renderer():
    from xrdid.instrument import Augment, Renderer, get_instrument

    return Renderer(get_instrument({"preset": "cu", "n_points": 512}), Augment(enabled=False))


def _val_table(sticks_table):
    from xrdid.data import StickTable

    return StickTable.from_parquet(sticks_table, split="val", d_min_A=_clean_renderer().instrument.d_min_A)


def test_batches_are_half_single_phases_and_half_mixtures_of_several(sticks_table):
    table, clean = _val_table(sticks_table), _clean_renderer()
    x, y = md._batch(table, [clean, clean], 32, step=0, seed=0)
    assert x.shape == (32, 2, 512) and y.tolist() == ([0.0] * 8 + [1.0] * 8) * 2
    # Unaugmented, a mixture holds the peaks of each of its phases: more peaks than its single phases.
    mid = x[:, 0, 1:-1]
    peaks = ((mid > x[:, 0, :-2]) & (mid >= x[:, 0, 2:]) & (mid > 0.02)).sum(1).float()
    assert peaks[y == 1].mean() > 1.3 * peaks[y == 0].mean()


def test_the_phase_shares_set_how_many_mixtures_of_each_phase_count_a_batch_holds(detected, sticks_table, tmp_path, monkeypatch):
    import xrdid.evaluate.novelty as nv

    real, made = nv.render_mixtures, []

    def recording(table, renderer, n, phases, seed, **kw):
        made.append((phases, n))
        return real(table, renderer, n, phases, seed, **kw)

    monkeypatch.setattr(nv, "render_mixtures", recording)
    # Per renderer 32 patterns: 16 singles and 16 mixtures, split 8 / 6 / 2 by default (the shipped runs').
    table = _val_table(sticks_table)
    renderers = [_clean_renderer()] * 2
    _, y = md._batch(table, renderers, 64, step=0, seed=0)
    assert made == [(2, 8), (3, 6), (4, 2)] * 2 and int(y.sum()) == 32
    made.clear()
    md._batch(table, renderers, 64, step=0, seed=0, shares=(0.75, 0.2, 0.05))
    assert made == [(2, 12), (3, 3), (4, 1)] * 2
    # The training passes its config's shares on, and the command line its --phase-shares.
    made.clear()
    cfg = DetectorTrainConfig(**{**TINY.__dict__, "phase_shares": (1.0, 0.0, 0.0), "eval_patterns": 2})
    result = _train(detected, sticks_table, tmp_path / FILENAME, cfg=cfg)
    assert {p for p, _ in made[: 2 * TINY.steps]} == {2}
    assert result["trained_on"]["train"]["phase_shares"] == (1.0, 0.0, 0.0)
    seen = {}
    monkeypatch.setattr(md, "train_mixture_detector", lambda *a, cfg, **kw: seen.update(cfg=cfg))
    md.main(["--model", str(detected), "--sticks", str(sticks_table), "--out", str(tmp_path / "x.pt"),
             "--phase-shares", "0.6", "0.3", "0.1"])
    assert seen["cfg"].phase_shares == (0.6, 0.3, 0.1)
    with pytest.raises(ValueError, match="phase_shares"):
        DetectorTrainConfig(phase_shares=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="phase_shares"):
        DetectorTrainConfig(phase_shares=(1.0, 0.0))


def test_training_writes_a_held_out_measured_detector_that_predict_reports(detected, sticks_table):
    from xrdid.data import StickTable
    from xrdid.predict import load_model, predict_arrays

    detector = read_detector(detected.parent / FILENAME)
    meta = detector.meta
    assert meta["trained_on"]["split"] == "val"
    assert meta["trained_on"]["structures"] == len(StickTable.from_parquet(sticks_table, split="val")) == 4
    assert meta["trained_on"]["patterns"] == 4 * 8 and meta["trained_on"]["updates"] == 8
    assert meta["held_out"]["split"] == "val" and meta["held_out"]["patterns"] == 4 * 6
    assert set(meta["held_out"]["auroc"]) == {"mixtures_2", "mixtures_3"}
    assert set(meta["held_out"]["auroc_by_rendering"]) == {"training", "measured_like"}
    assert 0 <= meta["warn_above"] <= 1
    bundle = load_model(detected)
    assert bundle.mixture_detector is not None and bundle.mixture_probe is not None
    y = np.random.default_rng(1).random((4, 512)).astype(np.float32)
    out = predict_arrays(bundle, y, np.ones_like(y))
    expected = bundle.mixture_detector.probability(torch.stack([torch.as_tensor(y), torch.ones(4, 512)], 1))
    for r, p in zip(out, expected, strict=True):
        assert r["mixture"]["method"] == METHOD  # the detector, not the probe
        assert r["mixture"]["probability"] == pytest.approx(p)
        assert ("warning" in r["mixture"]) == (p > meta["warn_above"])


class _Killed(Exception):
    pass


def _counted_batches(monkeypatch) -> tuple[list, list]:
    """The steps whose batches are rendered, and the steps to kill the run at (once each; step 3: killed after
    the state of steps 0–1 was saved)."""
    real, steps, kill = md._batch, [], [3]

    def counting(table, renderers, size, step, seed, *shares):
        steps.append(step)
        if step in kill:
            kill.remove(step)
            raise _Killed
        return real(table, renderers, size, step, seed, *shares)

    monkeypatch.setattr(md, "_batch", counting)
    return steps, kill


def test_an_interrupted_training_resumes_where_it_was_saved(detected, sticks_table, tmp_path, monkeypatch):
    shutil.copy(detected.parent / PROBE, tmp_path / PROBE)
    steps, _ = _counted_batches(monkeypatch)
    out = tmp_path / FILENAME
    with pytest.raises(_Killed):
        _train(detected, sticks_table, out, probe=tmp_path / PROBE)
    assert not out.exists() and out.with_name(out.name + ".resume.pt").is_file()
    steps.clear()
    _train(detected, sticks_table, out, probe=tmp_path / PROBE)
    assert steps == [2, 3]
    # Other settings do not resume that state.
    steps.clear()
    other = DetectorTrainConfig(**{**TINY.__dict__, "lr": 1e-4})
    _train(detected, sticks_table, out, cfg=other, probe=tmp_path / PROBE)
    assert steps == [0, 1, 2, 3]


def test_a_detector_of_other_weights_another_grid_or_a_broken_file_is_not_used(detected, tmp_path):
    from xrdid.instrument import get_instrument

    other = tmp_path / "model"
    shutil.copytree(detected, other)
    shutil.copy(detected.parent / FILENAME, tmp_path / FILENAME)
    assert detector_for(other) is not None
    assert detector_for(other, get_instrument({"preset": "cu", "n_points": 1024})) is None
    state = torch.load(other / "weights.pt", weights_only=True)
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in state.items()}, other / "weights.pt")
    assert detector_for(other) is None
    (tmp_path / FILENAME).write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=f"{FILENAME}: not a usable mixture detector"):
        read_detector(tmp_path / FILENAME)
    assert detector_for(detected.parent / "none") is None


def test_a_probe_of_other_weights_is_refused_as_a_start(detected, sticks_table, tmp_path):
    probe = read_probe(detected.parent / PROBE)
    import json

    d = probe.to_dict()
    d["weights_digest"] = "0" * 32
    (tmp_path / PROBE).write_text(json.dumps(d))
    with pytest.raises(ValueError, match="other weights"):
        _train(detected, sticks_table, tmp_path / FILENAME, probe=tmp_path / PROBE)


def _parameters(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_a_second_sitting_continues_from_a_detector_of_the_same_weights(detected, sticks_table, tmp_path):
    from xrdid.models.checkpoint import load_checkpoint

    start = detected.parent / FILENAME
    # A learning rate so small that the continued detector keeps its start's parameters (BatchNorm statistics
    # do move in training mode, so only the parameters are compared).
    cfg = DetectorTrainConfig(**{**TINY.__dict__, "lr": 1e-12, "weight_decay": 0.0, "init_from": str(start)})
    # The probe is given, as the workflow gives it when it is fitted: the start detector wins.
    result = _train(detected, sticks_table, tmp_path / FILENAME, cfg=cfg, probe=detected.parent / PROBE)
    assert result["trained_on"]["train"]["init_from"] == str(start)
    continued = _parameters(read_detector(tmp_path / FILENAME).model)
    first = _parameters(read_detector(start).model)
    classifier, _, _ = load_checkpoint(detected)
    fresh = _parameters(MixtureDetector.from_classifier(classifier, read_probe(detected.parent / PROBE)))
    assert max((first[k] - fresh[k]).abs().max() for k in first) > 1e-4  # the start is not the probe's start
    for k, v in first.items():
        assert torch.allclose(continued[k], v, atol=1e-6), k
    # The command line passes it on.
    seen = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(md, "train_mixture_detector", lambda *a, cfg, **kw: seen.update(cfg=cfg))
        md.main(["--model", str(detected), "--sticks", str(sticks_table), "--out", str(tmp_path / "x.pt"),
                 "--init-from", str(start)])
    assert seen["cfg"].init_from == str(start)


def test_a_detector_of_other_weights_is_refused_as_a_start(detected, sticks_table, tmp_path):
    from xrdid.mixture_detector import save_detector

    detector = read_detector(detected.parent / FILENAME)
    other = tmp_path / "other.pt"
    save_detector(detector.model, {**detector.meta, "weights_digest": "0" * 32}, other)
    cfg = DetectorTrainConfig(**{**TINY.__dict__, "init_from": str(other)})
    with pytest.raises(ValueError, match=f"{other}: the mixture detector was trained from other classifier weights"):
        _train(detected, sticks_table, tmp_path / FILENAME, cfg=cfg)
    grid = tmp_path / "grid.pt"
    save_detector(detector.model, {**detector.meta, "instrument": {**detector.meta["instrument"], "n_points": 1024}}, grid)
    with pytest.raises(ValueError, match=f"{grid}: the mixture detector is for another grid"):
        _train(detected, sticks_table, tmp_path / FILENAME, cfg=DetectorTrainConfig(**{**cfg.__dict__, "init_from": str(grid)}))
    assert not (tmp_path / FILENAME).exists()


def test_a_resumed_second_sitting_needs_the_same_start_file_content(detected, sticks_table, tmp_path, monkeypatch):
    from xrdid.mixture_detector import save_detector

    start = tmp_path / "start.pt"
    shutil.copy(detected.parent / FILENAME, start)
    steps, kill = _counted_batches(monkeypatch)
    out = tmp_path / FILENAME
    cfg = DetectorTrainConfig(**{**TINY.__dict__, "init_from": str(start)})
    with pytest.raises(_Killed):
        _train(detected, sticks_table, out, cfg=cfg)
    kill.append(3)
    steps.clear()
    with pytest.raises(_Killed):
        _train(detected, sticks_table, out, cfg=cfg)  # the same start: resumes at the save
    assert steps == [2, 3]
    # Another detector in the same file (the same path): a new run, not the old one resumed.
    detector = read_detector(start)
    with torch.no_grad():
        detector.model.out.bias.add_(1.0)
    save_detector(detector.model, detector.meta, start)
    steps.clear()
    _train(detected, sticks_table, out, cfg=cfg)
    assert steps == [0, 1, 2, 3]


def test_the_novelty_benchmark_gains_the_detector_row_and_counts_its_warnings(detected, tiny_vae, sticks_table, tmp_path):
    from xrdid.evaluate.novelty import evaluate_novelty, markdown
    from xrdid.mixture_detector import save_detector

    # The detector with a threshold every pattern is above, so that the counts are the numbers of patterns.
    shutil.copytree(detected, tmp_path / "model")
    shutil.copy(detected.parent / PROBE, tmp_path / PROBE)
    detector = read_detector(detected.parent / FILENAME)
    save_detector(detector.model, {**detector.meta, "warn_above": -1.0}, tmp_path / FILENAME)
    # Three "measured" patterns: a single phase and two mixtures (the labels are what is counted).
    folder = tmp_path / "measured"
    folder.mkdir()
    two_theta = np.linspace(5, 90, 3000)
    rng = np.random.default_rng(0)
    rows = ["xy,n_phases,wavelength_A"]
    for k, n in enumerate((1, 2, 3)):
        y = 10 + sum(1000 * np.exp(-0.5 * ((two_theta - c) / 0.08) ** 2) for c in rng.uniform(10, 85, 6 * n))
        np.savetxt(folder / f"p{k}.xy", np.c_[two_theta, y + rng.poisson(y)])
        rows.append(f"p{k}.xy,{n},1.5406")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    result = evaluate_novelty(sticks=sticks_table, vae=tiny_vae, cnn=tmp_path / "model", n_per_set=6, mixtures=folder)
    # (The tiny test split holds one structure: no mixture sets, but the detector scores every set.)
    for per in result["auroc"].values():
        assert 0 <= per["mixture_detector"] <= 1 and "mixture_probe" in per
    assert "| mixture detector, fine-tuned CNN |" in markdown(result)
    measured = result["measured"]
    assert measured["n_single"] == 1 and measured["n_multi"] == 2
    assert measured["mixture_warnings"]["mixture_detector"] == {"warn_above": -1.0, "single": 1, "multi": 2}
    assert "mixture detector, fine-tuned CNN warns (p > -1.000) on 2 of 2 multi-phase and 1 of 1 single-phase" in markdown(result)


def test_the_shipped_model_has_its_detector_and_it_tells_mixtures_from_single_phases(sticks_table):
    from xrdid.data import StickTable
    from xrdid.evaluate.novelty import auroc, render_known, render_mixtures
    from xrdid.instrument import Augment, Renderer
    from xrdid.predict import load_model

    bundle = load_model()
    assert bundle.mixture_detector is not None, "the shipped detector does not match the shipped weights or grid"
    # Measured on the same held-out patterns as the shipped probe (same split, seeds and count): better on both.
    held, probe = bundle.mixture_detector.meta["held_out"], bundle.mixture_probe.meta["held_out"]
    assert held["patterns"] == probe["patterns"] and held["structures"] == probe["structures"]
    assert all(held["auroc"][k] > probe["auroc"][k] for k in ("mixtures_2", "mixtures_3"))
    inst = bundle.instrument
    table = StickTable.from_parquet(sticks_table, d_min_A=inst.d_min_A)
    renderer = Renderer(inst, Augment.from_dict(bundle.meta["augment"]))
    torch.manual_seed(0)
    singles = torch.cat([render_known(table, renderer, seed) for seed in range(8)])
    mixtures = render_mixtures(table, renderer, 48, 2, seed=3)
    assert auroc(*(bundle.mixture_detector.probability(x) for x in (singles, mixtures))) > 0.7


def _with_combination(detected, tmp_path, features: list[str], coef: list[float], intercept: float):
    """A copy of the detected model whose detector comes with a combination file of these terms."""
    import json

    from xrdid.mixture_detector import CELL_FILENAME
    from xrdid.weights import file_digest

    model = tmp_path / "model"
    shutil.copytree(detected, model)
    shutil.copy(detected.parent / FILENAME, tmp_path / FILENAME)
    spec = {"features": features, "coef": coef, "intercept": intercept, "warn_above": 0.5,
            "detector_digest": file_digest(tmp_path / FILENAME)}
    (tmp_path / CELL_FILENAME).write_text(json.dumps(spec))
    return model


def _six_peaks() -> np.ndarray:
    """(1, 512) pattern of six Gaussian peaks on a small offset."""
    y = np.zeros((1, 512), np.float32)
    y[0, [60, 140, 230, 300, 333, 410]] = [1.0, 0.6, 0.8, 0.3, 0.5, 0.4]
    return np.convolve(y[0], np.exp(-0.5 * (np.arange(-6, 7) / 1.5) ** 2), "same")[None].astype(np.float32) + 0.01


def test_predict_combines_the_detector_with_the_one_cell_result_of_its_own_file_only(detected, tmp_path):
    import json

    from xrdid.indexing.combine import FEATURES
    from xrdid.mixture_detector import CELL_FILENAME, CELL_METHOD
    from xrdid.predict import load_model, predict_arrays

    # The four features, and one counted only where the pattern looks indexable (term_value).
    gate = "n_lines>3.5*d_first_strong<30"
    coef = [0.1, 3.0, 1.0, 2.0, -0.5, 1.5]
    model = _with_combination(detected, tmp_path, ["logit_p_detector", *FEATURES, f"unindexed_lines*{gate}"], coef, -1.0)
    y = _six_peaks()
    bundle = load_model(model)
    (r,) = predict_arrays(bundle, y, np.ones_like(y), cell=True)
    p_det = bundle.mixture_detector.probability(torch.stack([torch.as_tensor(y), torch.ones(1, 512)], 1))[0]
    p = np.clip(p_det, 1e-6, 1 - 1e-6)
    one = r["cell"]["one_cell"]
    indexable = float(one["n_lines"] > 3.5 and one["d_first_strong"] < 30)
    x = [np.log(p / (1 - p))] + [one[f] for f in FEATURES] + [one["unindexed_lines"] * indexable]
    assert r["mixture"]["method"] == CELL_METHOD
    assert r["mixture"]["detector_probability"] == pytest.approx(p_det)
    expected = 1 / (1 + np.exp(-(np.dot(coef, x) - 1.0)))
    assert r["mixture"]["probability"] == pytest.approx(expected, rel=1e-6)
    assert ("warning" in r["mixture"]) == (expected > 0.5)
    # Without the cell, the detector alone; fitted for another detector file, not used.
    (r,) = predict_arrays(bundle, y, np.ones_like(y), cell=False)
    assert r["mixture"]["method"] == METHOD and r["mixture"]["probability"] == pytest.approx(p_det)
    spec = json.loads((tmp_path / CELL_FILENAME).read_text())
    (tmp_path / CELL_FILENAME).write_text(json.dumps({**spec, "detector_digest": "other"}))
    (r,) = predict_arrays(load_model(model), y, np.ones_like(y), cell=True)
    assert r["mixture"]["method"] == METHOD and "one_cell" in r["cell"]


def test_a_term_is_a_feature_an_indicator_or_their_product(tmp_path):
    import json

    from xrdid.mixture_detector import read_cell_combination, term_value

    one = {"unindexed_strong": 0.4, "not_indexed": 1.0, "d_first_strong": 5.0, "n_lines": 12.0}
    assert float(term_value("unindexed_strong", one)) == 0.4
    assert float(term_value("d_first_strong<8", one)) == 1.0 and float(term_value("d_first_strong>8", one)) == 0.0
    assert float(term_value("unindexed_strong*n_lines>7.5*d_first_strong<8", one)) == 0.4
    assert float(term_value("unindexed_strong*d_first_strong<4.5", one)) == 0.0
    table = {"unindexed_strong": np.array([0.4, 0.2]), "d_first_strong": np.array([5.0, 11.0])}
    assert np.array_equal(term_value("unindexed_strong*d_first_strong<8", table), [0.4, 0.0])
    spec = {"features": ["logit_p_detector", "unindexed_strong*d_first_strong<8"], "coef": [1.0, 2.0], "intercept": 0.0,
            "warn_above": 0.5, "detector_digest": "x"}
    (tmp_path / "ok.json").write_text(json.dumps(spec))
    cell = read_cell_combination(tmp_path / "ok.json")
    assert cell.probability(0.5, one) == pytest.approx(1 / (1 + np.exp(-0.8)))
    assert cell.probability(0.5, {**one, "d_first_strong": 9.0}) == pytest.approx(0.5)
    for bad in ("unindexed_strong*d_first<8", "unindexed_strong*d_first_strong<eight"):
        (tmp_path / "bad.json").write_text(json.dumps({**spec, "features": ["logit_p_detector", bad]}))
        with pytest.raises(ValueError, match="bad.json: not a usable"):
            read_cell_combination(tmp_path / "bad.json")


def test_the_shipped_detector_comes_with_its_indexability_gated_combination():
    from xrdid.evaluate.mixture_cell import INDEXABLE, gated
    from xrdid.indexing.combine import FEATURES, SECOND
    from xrdid.predict import load_model

    cell = load_model().mixture_detector.cell
    assert cell is not None, "mixture_cell.json is missing or fitted for another detector file"
    # The one-cell features and the second-cell search's, all counted where the pattern looks indexable.
    assert cell.features == gated(FEATURES + SECOND) and INDEXABLE in cell.features and cell.second_cell
    assert 0 < cell.meta["warn_above"] < 1 and min(cell.meta["fitted_on"].values()) > 250
    # A small cell leaving half its lines unindexed reads as more mixed than the detector alone says; the same
    # evidence on a large cell (first strong line at 14 Å, a framework's) is not counted.
    small = {"unindexed_strong": 0.5, "unindexed_lines": 0.5, "not_indexed": 1.0, "log_m20": 2.0, "d_first_strong": 4.0,
             "log_volume": 6.0, "n_lines": 20.0, "leftover_lines": 10.0, "leftover_strong": 5.0, "second_indexed": 0.9,
             "second_accepted": 1.0, "second_log10p": 0.6}
    large = {**small, "d_first_strong": 14.0}
    assert cell.probability(0.3, small) > 0.5 > cell.probability(0.3, large)
    assert cell.probability(0.3, large) == pytest.approx(cell.probability(0.3, {**large, "unindexed_lines": 0.0}))
    # Leftover lines that index on a second cell far from chance read as more mixed than leftovers that do not.
    assert cell.probability(0.3, small) > cell.probability(0.3, {**small, "second_log10p": 0.0, "second_accepted": 0.0}) + 0.1


def test_predict_runs_the_second_cell_search_only_for_a_combination_that_uses_it(detected, tmp_path):
    import json

    from xrdid.indexing.combine import SECOND
    from xrdid.labels import CRYSTAL_SYSTEMS
    from xrdid.mixture_detector import CELL_FILENAME, CELL_METHOD
    from xrdid.predict import load_model, predict_arrays

    terms = ["unindexed_strong", "leftover_lines", "second_indexed*n_lines>3.5", "p_cubic"]
    coef = [0.5, 1.0, 0.3, 2.0, -1.5]
    model = _with_combination(detected, tmp_path, ["logit_p_detector", *terms], coef, -0.5)
    y = _six_peaks()
    bundle = load_model(model)
    assert bundle.mixture_detector.cell.second_cell
    (r,) = predict_arrays(bundle, y, np.ones_like(y), cell=True)
    assert r["mixture"]["method"] == CELL_METHOD and set(r["cell"]["second_cell"]) == set(SECOND)
    # The crystal-system probabilities the combination reads are the classifier's, as predict reports them.
    from xrdid.train.loop import model_input

    x = model_input(torch.as_tensor(y), torch.ones(1, 512))
    sg, cs, _ = bundle.model.forward_features(x)
    p_cubic = float(bundle.probabilities(sg, cs)[1][0, CRYSTAL_SYSTEMS.index("cubic")])
    p = np.clip(r["mixture"]["detector_probability"], 1e-6, 1 - 1e-6)
    one, two = r["cell"]["one_cell"], r["cell"]["second_cell"]
    x = [np.log(p / (1 - p)), one["unindexed_strong"], two["leftover_lines"], two["second_indexed"] * float(one["n_lines"] > 3.5), p_cubic]
    assert r["mixture"]["probability"] == pytest.approx(1 / (1 + np.exp(-(np.dot(coef, x) - 0.5))), rel=1e-5)
    # A combination without a second-cell term: no second search.
    spec = {**json.loads((tmp_path / CELL_FILENAME).read_text()), "features": ["logit_p_detector", "unindexed_strong", "p_cubic"],
            "coef": [0.5, 1.0, -1.5]}
    (tmp_path / CELL_FILENAME).write_text(json.dumps(spec))
    bundle = load_model(model)
    assert not bundle.mixture_detector.cell.second_cell
    (r,) = predict_arrays(bundle, y, np.ones_like(y), cell=True)
    assert "second_cell" not in r["cell"] and r["mixture"]["method"] == CELL_METHOD
