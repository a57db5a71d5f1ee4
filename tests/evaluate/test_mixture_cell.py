"""The one-cell mixture benchmark (xrdid.evaluate.mixture_cell): the combination is fitted, scored and written
so that predict's CellCombination gives the same probabilities."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from xrdid.evaluate.mixture_cell import (
    FEATURES,
    GATES,
    INDEXABLE,
    add_context,
    combination_file,
    combined_logit,
    compare,
    cross_validated,
    fit_combination,
    gated,
    paired_difference,
)
from xrdid.mixture_detector import read_cell_combination


def _table(n: int = 120, seed: int = 0, frameworks: float = 0.0) -> pd.DataFrame:
    """Single phases and mixtures where the detector misses half the mixtures and the indexing sees them;
    a share ``frameworks`` of the single phases are large cells (first strong line at 12 Å) the indexing
    leaves as unindexed as a mixture."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind, phases in (("single", 1), ("mixture_2", 2), ("mixture_3", 3)):
        for i in range(n):
            hidden = phases > 1 and i % 2 == 0  # a mixture the detector takes for one phase
            large = phases == 1 and rng.random() < frameworks
            p = rng.uniform(0.05, 0.4) if phases == 1 or hidden else rng.uniform(0.3, 0.95)
            strong = rng.uniform(0.3, 0.8) if phases > 1 or large else rng.uniform(0.0, 0.1) * (rng.random() < 0.3)
            rows.append({"kind": kind, "phases": phases, "p_detector": p, "unindexed_strong": strong,
                         "unindexed_lines": strong / 2 + rng.uniform(0, 0.1), "not_indexed": float(strong > 0.25),
                         "log_m20": rng.uniform(2, 6), "d_first_strong": 12.0 if large else rng.uniform(2.0, 7.0),
                         "log_volume": rng.uniform(3, 7), "n_lines": float(rng.integers(10, 25)), "index_cpu_s": 1.0})
    return pd.DataFrame(rows)


def test_the_indexing_features_add_what_the_detector_misses():
    fit, score = _table(seed=0), _table(seed=1)
    result = compare(fit, score, n_boot=10)
    alone = result["auroc"]["detector alone"]["mixture_2"]
    both = result["auroc"]["detector + all indexing features"]["mixture_2"]
    assert alone < 0.85 and both > alone + 0.1
    assert set(result["auroc"]["detector alone"]) == {"mixture_2", "mixture_3", "all_multi"}
    assert cross_validated(fit, FEATURES)["mixture_2"] > alone + 0.1


def test_the_written_combination_gives_predicts_probabilities(tmp_path):
    df = _table()
    detector = tmp_path / "mixture_detector.pt"
    detector.write_bytes(b"weights")
    spec = combination_file(df, ("unindexed_strong", "not_indexed"), detector)
    assert spec["features"] == ["logit_p_detector", "unindexed_strong", "not_indexed"]
    (tmp_path / "mixture_cell.json").write_text(json.dumps(spec))
    cell = read_cell_combination(tmp_path / "mixture_cell.json")
    logit = combined_logit(df, fit_combination(df, ("unindexed_strong", "not_indexed")))
    for i in (0, 150, 300):
        row = df.iloc[i]
        assert cell.probability(row["p_detector"], row.to_dict()) == pytest.approx(1 / (1 + np.exp(-logit[i])), rel=1e-6)
    # A logistic fit with an intercept: its probabilities average to the labels' share (½, singles and mixtures
    # weighing half each) on the table it was fitted on.
    p = 1 / (1 + np.exp(-logit))
    single = df["phases"].to_numpy() == 1
    assert 0.5 * p[single].mean() + 0.5 * p[~single].mean() == pytest.approx(0.5, abs=1e-3)
    # 5 % of the fitted single phases are above warn_above.
    assert (p[single] > spec["warn_above"]).mean() == pytest.approx(0.05, abs=0.01)
    (tmp_path / "broken.json").write_text(json.dumps({**spec, "coef": spec["coef"][:2]}))
    with pytest.raises(ValueError, match="broken.json: not a usable"):
        read_cell_combination(tmp_path / "broken.json")


def test_the_evidence_is_trusted_only_where_the_pattern_looks_indexable():
    # Half the single phases are frameworks the indexing cannot index: ungated, the one-cell evidence says
    # "mixture" for them too; counted only below 10 Å (INDEXABLE) it adds what the detector misses.
    fit, score = _table(seed=0, frameworks=0.5), _table(seed=1, frameworks=0.5)
    result = compare(fit, score, {"plain": FEATURES, "gated": gated(FEATURES)}, n_boot=50)
    alone, plain, gate = (result["auroc"][k]["mixture_2"] for k in ("detector alone", "plain", "gated"))
    assert gate > plain + 0.05 and gate > alone + 0.1
    assert result["against_detector"]["gated"]["mixture_2"]["difference"] == pytest.approx(gate - alone)
    assert 0 < result["against_detector"]["gated"]["mixture_2"]["se"] < 0.05
    assert gated(("unindexed_strong",), "d_first_strong<8") == ("unindexed_strong*d_first_strong<8", "d_first_strong<8")
    assert INDEXABLE in GATES


def test_the_paired_difference_of_a_score_with_itself_is_zero():
    df = _table()
    d = paired_difference(df, df["p_detector"].to_numpy(), df["p_detector"].to_numpy(), n_boot=20)
    assert all(v == {"difference": 0.0, "se": 0.0} for v in d.values())
    d = paired_difference(df, df["unindexed_strong"].to_numpy(), df["p_detector"].to_numpy(), n_boot=50)
    assert d["mixture_2"]["difference"] > 0.1 and d["mixture_2"]["se"] > 0


def test_context_is_added_only_to_the_same_patterns():
    old = _table(n=10).drop(columns=["d_first_strong", "n_lines", "log_volume"])
    new = _table(n=10)
    new["p_detector"] = old["p_detector"] + 1e-7
    out = add_context(old, new)
    assert np.array_equal(out["d_first_strong"], new["d_first_strong"]) and out["log_volume"].isna().all()
    new.loc[3, "p_detector"] += 0.01
    with pytest.raises(ValueError, match="not the same patterns"):
        add_context(old, new)


def test_facts_are_added_only_to_the_same_patterns():
    from xrdid.evaluate.mixture_cell import FACTS, add_facts

    old = _table(n=10)
    new = old.assign(**{f: np.arange(len(old), dtype=float) for f in FACTS}, phase_ids="a+b", name="a+b", log_volume=np.nan)
    out = add_facts(old, new)
    assert all(np.array_equal(out[f], new[f]) for f in FACTS) and (out["name"] == "a+b").all()
    assert np.array_equal(out["log_volume"], old["log_volume"])  # the indexing's columns are the old table's
    with pytest.raises(ValueError, match="not the same patterns"):
        add_facts(old, new.iloc[1:])


def test_a_written_combination_is_scored_as_predict_scores_it_and_compared_pairwise(tmp_path):
    from xrdid.evaluate.mixture_cell import SECOND, candidate_sets, reference_logit

    fit, score = _table(seed=0, frameworks=0.3), _table(seed=1, frameworks=0.3)
    detector = tmp_path / "mixture_detector.pt"
    detector.write_bytes(b"weights")
    # The candidates: the shipped set alone without the second-cell columns; with them, the second-cell sets too.
    assert list(candidate_sets(score)) == [f"all where {INDEXABLE}"]
    rng = np.random.default_rng(2)
    for t in (fit, score):
        # The one-cell evidence made uninformative; the second-cell share says which patterns are mixtures.
        t["unindexed_strong"], t["unindexed_lines"] = rng.uniform(0, 1, len(t)), rng.uniform(0, 1, len(t))
        t["not_indexed"] = (rng.random(len(t)) < 0.5).astype(float)
        for c in SECOND:
            t[c] = rng.uniform(0, 1, len(t)) + (t["phases"].to_numpy() > 1) * (c == "second_indexed")
    (tmp_path / "mixture_cell.json").write_text(json.dumps(combination_file(fit, gated(FEATURES), detector)))
    assert np.allclose(reference_logit(score, tmp_path / "mixture_cell.json"), combined_logit(score, fit_combination(fit, gated(FEATURES))))
    sets = candidate_sets(score)
    assert "all + second cell where indexable" in sets and sets[f"all where {INDEXABLE}"] == gated(FEATURES)
    result = compare(fit, score, sets, n_boot=30, reference=tmp_path / "mixture_cell.json")
    same = result["against_reference"][f"all where {INDEXABLE}"]["mixture_2"]
    assert same == {"difference": 0.0, "se": 0.0}
    # The planted second-cell signal adds to the written combination.
    assert result["against_reference"]["all + second cell where indexable"]["mixture_2"]["difference"] > 0.02


def _with_frameworks(seed: int) -> pd.DataFrame:
    """:func:`_table` where a third of the single phases are frameworks (CoRE MOF names) whose first strong line
    lies below 10 Å (INDEXABLE lets them in) but whose best cell is large (ln V 8.5) and leaves them as
    unindexed as a mixture (the same evidence); the other patterns' cells are small."""
    df = _table(seed=seed)
    rng = np.random.default_rng(seed + 10)
    single = (df["kind"] == "single").to_numpy()
    framework = single & (rng.random(len(df)) < 1 / 3)
    df["name"] = np.where(framework, "core_mof/x_clean", np.where(single, "aflow/a.cif#0", None))
    strong = rng.uniform(0.3, 0.8, len(df))
    df.loc[framework, "unindexed_strong"] = strong[framework]
    df.loc[framework, "unindexed_lines"] = strong[framework] / 2 + rng.uniform(0, 0.1, framework.sum())
    df.loc[framework, "not_indexed"] = 1.0
    df.loc[framework, ["d_first_strong", "log_volume"]] = [8.0, 8.5]
    return df


def test_frameworks_are_left_to_the_detector_where_the_gate_says_so(tmp_path):
    from xrdid.evaluate.mixture_cell import FRAMEWORK_GATES, aurocs, framework_auroc, framework_sets, main

    fit, score = _with_frameworks(0), _with_frameworks(1)
    sets = framework_sets(score)
    gate = f"{INDEXABLE}*log_volume<8"
    assert "log_volume<8" in FRAMEWORK_GATES and sets[f"all + second cell where {gate}"][-1] == gate
    # Only the gates whose columns the table has (no crystal-system probabilities here).
    assert not any("p_triclinic" in k for k in sets)
    detector = score["p_detector"].to_numpy()
    # The frameworks' AUROC counts the CoRE MOF single phases only: their evidence looks like a mixture's.
    strong = score["unindexed_strong"].to_numpy()
    assert framework_auroc(score, strong) < 0.6 < aurocs(score, strong)["mixture_2"] - 0.1
    assert np.isnan(framework_auroc(score.drop(columns="name"), detector))
    shipped, left = gated(FEATURES), gated(FEATURES, gate)
    on = {k: combined_logit(score, fit_combination(fit, f)) for k, f in (("shipped", shipped), ("left", left))}
    assert framework_auroc(score, on["left"]) > framework_auroc(score, on["shipped"]) + 0.1
    cv = cross_validated(fit, left, frameworks=True)
    assert cv["frameworks"] > cross_validated(fit, shipped, frameworks=True)["frameworks"] + 0.1
    # A large cell's pattern gets the detector's part only: the same probability whatever its indexing says.
    (tmp_path / "mixture_cell.json").write_text(json.dumps(combination_file(fit, left, tmp_path / "none")))
    cell = read_cell_combination(tmp_path / "mixture_cell.json")
    row = score[score["name"] == "core_mof/x_clean"].iloc[0].to_dict()
    assert cell.probability(0.3, row) == pytest.approx(cell.probability(0.3, {**row, "unindexed_strong": 0.0, "not_indexed": 0.0}))
    assert cell.probability(0.3, {**row, "log_volume": 6.0}) != pytest.approx(cell.probability(0.3, row))
    # --gate with --score compares only those features so gated (against the detector and --reference).
    fit.to_parquet(tmp_path / "fit.parquet")
    score.to_parquet(tmp_path / "score.parquet")
    main(["--fit", str(tmp_path / "fit.parquet"), "--score", str(tmp_path / "score.parquet"), "--gate", gate,
          "--features", *FEATURES, "--reference", str(tmp_path / "mixture_cell.json"), "--json", str(tmp_path / "out.json")])
    out = json.loads((tmp_path / "out.json").read_text())
    assert list(out["fits"]) == [f"{' + '.join(FEATURES)} where {gate}"]
    assert out["against_reference"][f"{' + '.join(FEATURES)} where {gate}"]["mixture_2"]["difference"] == 0.0


def test_the_kept_framework_gated_combination_is_one_for_the_shipped_detector():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    kept = read_cell_combination(root / "reports/vae/mixture_cell_framework_gate.json")
    shipped = read_cell_combination(root / "src/xrdid/pretrained/mixture_cell.json")
    assert kept.meta["detector_digest"] == shipped.meta["detector_digest"]
    assert kept.features[-1] == f"{INDEXABLE}*log_volume<8" and len(kept.features) == len(shipped.features)
    row = {"unindexed_strong": 0.5, "unindexed_lines": 0.5, "not_indexed": 1.0, "log_m20": 2.0, "d_first_strong": 6.0,
           "log_volume": 8.5, "n_lines": 20.0, "leftover_lines": 10.0, "leftover_strong": 5.0, "second_indexed": 0.9,
           "second_accepted": 1.0, "second_log10p": 0.6}
    # A large cell's evidence is not counted by the kept combination, as the shipped one counts it.
    assert kept.probability(0.3, row) == pytest.approx(kept.probability(0.3, {**row, "unindexed_lines": 0.0}))
    assert shipped.probability(0.3, row) != pytest.approx(shipped.probability(0.3, {**row, "unindexed_lines": 0.0}))


def test_a_learning_curve_fits_on_the_share_of_the_other_folds_it_names(monkeypatch):
    import xrdid.evaluate.mixture_cell as mc

    df, sizes = _table(n=100, seed=4), []
    real = mc.fit_combination
    monkeypatch.setattr(mc, "fit_combination", lambda d, f: sizes.append(len(d)) or real(d, f))
    full = mc.cross_validated(df, FEATURES, seed=3)
    n_full = list(sizes)
    sizes.clear()
    mc.cross_validated(df, FEATURES, seed=3, train_fraction=0.5)
    assert sum(n_full) == 4 * len(df)  # each pattern in four of the five training folds
    assert [round(n / 2) for n in n_full] == sizes  # half of the same folds
    assert full == mc.cross_validated(df, FEATURES, seed=3, train_fraction=1.0)
    sizes.clear()
    curve = mc.learning_curve(df, FEATURES, fractions=(0.25, 1.0), repeats=2)
    assert set(curve) == {0.25, 1.0} and len(sizes) == 2 * 2 * 5
    assert sum(sizes[:10]) == pytest.approx(0.25 * sum(sizes[10:]), abs=10)  # the quarter first, then all
    assert curve[1.0]["mixture_2"] == pytest.approx(np.mean([mc.cross_validated(df, FEATURES, seed=k)["mixture_2"] for k in (0, 1)]))


def _cubic(a: float, n_max: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Spacings and one Miller index per distinct h²+k²+l² of a primitive cubic cell of edge ``a``."""
    seen = {}
    for h in range(7):
        for k in range(h + 1):
            for l in range(k + 1):
                n = h * h + k * k + l * l
                if 0 < n <= n_max:
                    seen.setdefault(n, (h, k, l))
    hkl = np.array([seen[n] for n in sorted(seen)])
    return a / np.sqrt((hkl**2).sum(1)), hkl


def _sticks(cells: dict[str, float]):
    """A StickTable (with hkl) of primitive cubic phases ``{id: a}``; equal |F|² everywhere."""
    import torch

    from xrdid.data import StickTable

    rows = [_cubic(a) for a in cells.values()]
    width = max(len(d) for d, _ in rows)
    d = np.zeros((len(rows), width), np.float32)
    for i, (di, _) in enumerate(rows):
        d[i, : len(di)] = di
    return StickTable(ids=list(cells), d=torch.from_numpy(d), f2m=torch.from_numpy((d > 0).astype(np.float32)),
                      space_group=torch.full((len(rows),), 220, dtype=torch.int64), crystal_system=torch.full((len(rows),), 6, dtype=torch.int64),
                      hkl_rows=[hkl for _, hkl in rows])


def test_the_facts_of_a_mixture_are_those_of_its_draw():
    """mixture_facts: the minor phase's scale and share, the cells' volumes, whether one cell indexes both
    (a cell and its doubled supercell do; two unrelated cells don't) and frameworks counted by name."""
    from xrdid.evaluate.mixture_cell import FACTS, cell_volume, mixture_facts
    from xrdid.instrument import get_instrument

    inst = get_instrument("cu")
    table = _sticks({"a/four": 4.0, "core_mof/eight": 8.0, "b/five": 5.37})
    d, hkl = _cubic(5.37)
    assert cell_volume(d, hkl) == pytest.approx(5.37**3, rel=1e-5)
    assert math.isnan(cell_volume(d, None))
    super_pair, unrelated, single = mixture_facts(table, np.array([[0, 1], [2, 0], [2, -1]])[:2], np.array([[0.7, 0.3], [0.2, 0.8]]), inst) + \
        mixture_facts(table, np.array([[2]]), np.ones((1, 1)), inst)
    assert set(FACTS) <= set(super_pair)
    assert super_pair["minor_scale"] == pytest.approx(0.3) and unrelated["minor_scale"] == pytest.approx(0.2)
    assert super_pair["major_volume"] == pytest.approx(64.0, rel=1e-5) and super_pair["minor_volume"] == pytest.approx(512.0, rel=1e-5)
    assert unrelated["major_volume"] == pytest.approx(64.0, rel=1e-5) and unrelated["minor_volume"] == pytest.approx(5.37**3, rel=1e-4)
    assert super_pair["major_system"] == super_pair["minor_system"] == "cubic"
    # The 8 Å cell indexes every line of both; no cell indexes the 4 Å and 5.37 Å phases' lines together.
    assert super_pair["one_cell_share"] == pytest.approx(1.0)
    assert unrelated["one_cell_share"] < 0.9
    # The minor phase's share of the intensity: less than half, more than nothing, smaller at the smaller scale.
    assert 0 < unrelated["minor_intensity"] < super_pair["minor_intensity"] < 0.5
    # The 8 Å phase has strong lines the 4 Å lattice does not index (its odd reflections); the 5.37 Å phase's
    # strong lines are not the 4 Å lattice's.
    assert super_pair["minor_strong_lines"] > 0 and unrelated["minor_strong_lines"] > 0
    assert super_pair["framework"] == 1 and unrelated["framework"] == 0
    assert single["one_cell_share"] == pytest.approx(1.0) and math.isnan(single["minor_scale"]) and single["minor_system"] is None
    assert super_pair["phase_ids"] == "a/four+core_mof/eight"


def test_the_facts_follow_the_draws_the_mixtures_are_rendered_with():
    """render_mixtures renders mixture_draws' structures (their lines, no other's) at mixture_draws' scales (the
    heights of their strongest lines)."""
    from xrdid.evaluate import novelty
    from xrdid.instrument import Augment, Renderer, get_instrument

    inst = get_instrument("cu")
    cells = {"a/four": 4.0, "b/five": 5.37, "c/six": 6.1}
    table = _sticks(cells)
    renderer = Renderer(inst, Augment(enabled=False))
    picks, scales = novelty.mixture_draws(len(table), 8, 2, seed=5)
    assert picks.shape == scales.shape == (8, 2) and np.allclose(scales.sum(1), 1) and (scales >= 0.15).all()
    assert len({tuple(sorted(p)) for p in picks}) > 1  # the draws differ between patterns
    x = novelty.render_mixtures(table, renderer, 8, 2, seed=5)
    grid = torch.as_tensor(renderer.grid)
    first = {k: float(np.degrees(2 * np.arcsin(inst.wavelength_A / (2 * a)))) for k, a in enumerate(cells.values())}  # (100)

    def height(y, tt):
        return float(y[(grid - tt).abs() < 0.1].max())

    for i in range(8):
        y = x[i, 0]
        y = y / y.max()
        absent = ({0, 1, 2} - set(picks[i].tolist())).pop()
        assert height(y, first[absent]) < 0.01
        h = [height(y, first[int(k)]) for k in picks[i]]
        assert min(h) > 0.05
        assert h[0] / h[1] == pytest.approx(scales[i, 0] / scales[i, 1], rel=0.35)


def test_the_misses_are_told_apart_by_the_facts_they_lie_in():
    """misses: a bin's AUROC is its mixtures' against all single phases; the bins' AUROCs average (weighted) to the
    whole AUROC and their lost shares sum to 1; mixtures with a faint minor phase that score like single phases
    lose all the pairs."""
    from xrdid.evaluate.mixture_cell import aurocs, misses

    rng = np.random.default_rng(0)
    n = 200
    scale = rng.uniform(0.15, 0.5, n)
    faint = scale <= 0.25
    df = pd.DataFrame({"kind": ["single"] * n + ["mixture_2"] * n, "phases": [1] * n + [2] * n,
                       "minor_scale": np.r_[np.full(n, np.nan), scale], "framework": np.r_[np.zeros(n), (np.arange(n) % 2).astype(float)],
                       "major_volume": np.r_[np.full(n, 100.0), np.full(n, 100.0)], "minor_volume": np.r_[np.full(n, np.nan), np.full(n, 2000.0)]})
    score = np.r_[rng.uniform(0, 1, n), np.where(faint, rng.uniform(0, 1, n), rng.uniform(2, 3, n))]
    out = misses(df, score)
    t = out["minor_scale"]
    assert t["n"].sum() == n and t.iloc[0]["n"] == faint.sum()
    assert t.iloc[0]["auroc"] == pytest.approx(aurocs(df[(df.kind == "single") | (df.minor_scale <= 0.25)], score[np.r_[np.ones(n, bool), faint]])["mixture_2"])
    assert t.iloc[1]["auroc"] == t.iloc[2]["auroc"] == 1.0 and t.iloc[0]["lost_share"] == pytest.approx(1.0)
    assert (t["auroc"] * t["n"]).sum() / n == pytest.approx(aurocs(df, score)["mixture_2"])
    assert out["framework"]["lost_share"].sum() == pytest.approx(1.0)
    assert out["larger_log_volume"].index[0].left == 7.0  # ln 2000 = 7.6: the larger cell's


def test_a_best_cell_is_the_phases_own_up_to_its_setting():
    """own_cell: the structure's volume or a small multiple of it (centred, reduced settings) is its own cell; any
    other volume is not; no cell is none. against_own_cell scores the mixtures against each group apart."""
    from xrdid.evaluate.mixture_cell import against_own_cell, own_cell

    v = 500.0
    df = pd.DataFrame({"kind": ["single"] * 6 + ["mixture_2"] * 2, "major_volume": [v, v, v, v, v, np.nan, v, v],
                       "log_volume": np.log([v * 1.02, v / 2, v * 4, v * 1.5, 1.0, v, v, v])})
    which = own_cell(df)
    assert list(which[:6]) == ["own", "own", "own", "other", "none", "none"]
    score = np.array([0.0, 0.1, 0.2, 5.0, 0.3, 0.4, 1.0, 1.0])
    t = against_own_cell(df, score)
    assert t.loc["own", "n"] == 3 and t.loc["own", "auroc"] == 1.0 and t.loc["other", "auroc"] == 0.0


def _cell(system: str, volume: float, m20: float = 10.0):
    from types import SimpleNamespace

    return SimpleNamespace(system=system, volume=volume, m20=m20, chance_log10p=-5.0, n_possible=30, n_indexed=18)


def test_the_cells_columns_are_the_best_cell_and_the_next_one():
    from types import SimpleNamespace

    from xrdid.evaluate.mixture_cell import CELLS, cell_facts

    accepted = SimpleNamespace(cells=[_cell("cubic", 100.0)], rejected=[_cell("tetragonal", 200.0, 5.0)], budget_exhausted=False)
    out = cell_facts(accepted)
    assert set(out) == set(CELLS)
    assert out["cell_system"] == "cubic" and out["cell_accepted"] == 1.0 and out["cell_n_indexed"] == 18.0
    assert out["next_system"] == "tetragonal" and out["next_log_volume"] == pytest.approx(math.log(200.0))
    assert out["next_log_m20"] == pytest.approx(math.log1p(5.0))
    # None accepted: the best rejected cell is the best cell (as one_cell_features takes it), the next rejected the next.
    rejected = SimpleNamespace(cells=[], rejected=[_cell("monoclinic", 900.0), _cell("triclinic", 450.0)], budget_exhausted=True)
    out = cell_facts(rejected)
    assert (out["cell_system"], out["next_system"], out["cell_accepted"], out["cell_budget_exhausted"]) == ("monoclinic", "triclinic", 0.0, 1.0)
    out = cell_facts(None)
    assert out["cell_system"] is None and out["next_system"] is None and math.isnan(out["next_log_volume"])


def test_the_classifier_probability_of_the_best_cells_system():
    from xrdid.evaluate.mixture_cell import cell_system_probability

    df = pd.DataFrame({"cell_system": ["rhombohedral", "monoclinic", None], "p_hexagonal": [0.2, 0.0, 0.1],
                       "p_trigonal": [0.5, 0.0, 0.1], "p_monoclinic": [0.1, 0.7, 0.8]})
    p = cell_system_probability(df)
    assert p[0] == pytest.approx(0.7) and p[1] == pytest.approx(0.7) and math.isnan(p[2])


def test_cells_are_added_only_to_the_same_patterns():
    from xrdid.evaluate.mixture_cell import CELLS, add_cells

    old = _table(n=10)
    new = old.assign(**{c: np.arange(len(old), dtype=float) for c in CELLS})
    new.loc[0, "unindexed_strong"] += 0.5  # the search came out otherwise once (it stops on CPU time)
    out, same = add_cells(old, new)
    assert all(np.array_equal(out[c], new[c]) for c in CELLS) and same == pytest.approx(1 - 1 / len(old))
    assert out.loc[0, "unindexed_strong"] == old.loc[0, "unindexed_strong"]  # the table's own features are kept
    with pytest.raises(ValueError, match="not the same patterns"):
        add_cells(old, new.iloc[1:])
