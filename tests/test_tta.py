"""Test-time augmentation: the variants move a pattern as they claim, the average is the stated one, and a
bundle with ``tta`` answers the mean of its variants (one identity variant: the plain answer)."""

import json

import numpy as np
import pytest
import torch

from xrdid import tta
from xrdid.cli import main
from xrdid.predict import load_model, predict_arrays, predict_patterns
from xrdid.readers import Pattern
from xrdid.tta import Variant, apply_variant, combine_logits

N = 512
CU = 1.5405929
GRID = np.linspace(5.0, 90.0, 4001)  # a fine grid, so peak positions are read to a few thousandths of a degree


@pytest.fixture(scope="module")
def checkpoint(random_checkpoint):
    return random_checkpoint(512)


def gaussian(centre, width=0.08, grid=GRID):
    return np.exp(-0.5 * ((grid - centre) / width) ** 2)


def centroid(y, grid=GRID):
    return float(np.sum(grid * y) / np.sum(y))


def second_moment(y, grid=GRID):
    c = centroid(y, grid)
    return float(np.sum((grid - c) ** 2 * y) / np.sum(y))


def test_identity_leaves_the_pattern_alone():
    y = gaussian(30.0)[None]
    mask = np.ones_like(y)
    a, m = apply_variant(y, mask, GRID, Variant())
    assert np.array_equal(a, y.astype(np.float32)) and np.array_equal(m, mask.astype(np.float32))


@pytest.mark.parametrize("shift", [0.03, -0.05])
def test_zero_shift_moves_every_peak_by_the_shift(shift):
    y = (gaussian(20.0) + gaussian(70.0))[None]
    a, _ = apply_variant(y, np.ones_like(y), GRID, Variant(shift_deg=shift))
    for lo, hi, centre in ((15, 25, 20.0), (65, 75, 70.0)):
        sel = (GRID > lo) & (GRID < hi)
        assert centroid(a[0, sel], GRID[sel]) == pytest.approx(centre + shift, abs=2e-3)
    assert a.max() == pytest.approx(1.0)


@pytest.mark.parametrize("strain", [0.01, -0.01])
def test_strain_scales_d_spacings(strain):
    """d → d(1 + ε): a peak at 2θ moves to 2 asin(sin θ / (1 + ε)), more at high angle."""
    y = (gaussian(20.0) + gaussian(80.0))[None]
    a, _ = apply_variant(y, np.ones_like(y), GRID, Variant(strain=strain))
    for lo, hi, centre in ((15, 25, 20.0), (75, 85, 80.0)):
        sel = (GRID > lo) & (GRID < hi)
        expected = 2 * np.degrees(np.arcsin(np.sin(np.radians(centre / 2)) / (1 + strain)))
        assert centroid(a[0, sel], GRID[sel]) == pytest.approx(expected, abs=2e-3)
        assert abs(expected - centre) > 0.1


def test_crop_masks_the_high_end_of_the_covered_span():
    mask = ((GRID >= 10.0) & (GRID <= 60.0)).astype(np.float32)[None]
    y = (gaussian(30.0) + 2 * gaussian(58.0)) * mask
    a, m = apply_variant(y, mask, GRID, Variant(crop_high=0.1))
    covered = GRID[m[0] > 0]
    assert covered[0] == pytest.approx(10.0, abs=0.03) and covered[-1] == pytest.approx(55.0, abs=0.05)
    assert a[0, GRID > 55.01].max() == 0
    # The strongest line left is scaled to 1 (the one at 58° is gone).
    assert a.max() == pytest.approx(1.0) and a[0, np.argmin(abs(GRID - 30.0))] == pytest.approx(1.0, abs=1e-3)


def test_blur_widens_peaks_by_its_width():
    step = GRID[1] - GRID[0]
    y = gaussian(40.0)[None]
    a, _ = apply_variant(y, np.ones_like(y), GRID, Variant(blur_points=3.0))
    assert second_moment(a[0]) == pytest.approx(0.08**2 + (3.0 * step) ** 2, rel=1e-3)


def test_shifted_coverage_moves_with_the_pattern():
    mask = (GRID <= 60.0).astype(np.float32)[None]
    _, m = apply_variant(gaussian(30.0)[None] * mask, mask, GRID, Variant(shift_deg=0.5))
    covered = GRID[m[0] > 0]
    assert covered[0] == pytest.approx(5.5, abs=0.03) and covered[-1] == pytest.approx(60.5, abs=0.03)


def test_probability_average_is_the_mean_calibrated_probability():
    z = torch.randn(3, 2, 7, generator=torch.Generator().manual_seed(0))  # 3 variants × 2 patterns
    t = 1.7
    combined = combine_logits(z.reshape(6, 7), 3, t, "probability")
    assert torch.allclose((combined / t).softmax(-1), (z / t).softmax(-1).mean(0), atol=1e-6)
    assert torch.allclose(combine_logits(z.reshape(6, 7), 3, t, "logit"), z.mean(0))
    with pytest.raises(ValueError, match="average"):
        combine_logits(z.reshape(6, 7), 3, t, "median")


def test_one_identity_variant_repeated_is_the_plain_answer(checkpoint, monkeypatch):
    y = np.random.default_rng(0).random((3, N)).astype(np.float32) ** 8
    mask = np.ones_like(y)
    plain = predict_arrays(load_model(checkpoint), y, mask)
    monkeypatch.setattr(tta, "VARIANTS", (Variant(),) * 3)
    repeated = predict_arrays(load_model(checkpoint, tta=3), y, mask)
    for a, b in zip(plain, repeated, strict=True):
        assert a["space_group"]["number"] == b["space_group"]["number"]
        assert [t["probability"] for t in a["top_k"]] == pytest.approx([t["probability"] for t in b["top_k"]], abs=1e-6)
        assert a["crystal_system"]["probability"] == pytest.approx(b["crystal_system"]["probability"], abs=1e-6)


def test_tta_answers_the_mean_of_its_variants(checkpoint):
    """``tta = 3``: the crystal-system probabilities are the mean of the three variants' own answers,
    each the plain prediction of the moved pattern; novelty stays the pattern's own."""
    tt = np.linspace(5, 90, 3000)
    y = sum(np.exp(-0.5 * ((tt - c) / 0.1) ** 2) / (i + 1) for i, c in enumerate((28.4, 47.3, 56.1, 69.1)))
    pattern = Pattern(tt, y + 0.05, "two_theta", wavelength_A=CU)
    plain_bundle = load_model(checkpoint, vae=None)
    from xrdid.predict import prepare

    a, m = prepare(plain_bundle, pattern)
    each = []
    for v in tta.variants(3):
        av, mv = apply_variant(a, m, plain_bundle.grid, v)
        each.append(predict_arrays(plain_bundle, av, mv, top_k=230, prior=False)[0])
    assert len({r["crystal_system"]["probability"] for r in each}) > 1  # the variants are not the pattern itself
    (r,) = predict_patterns(load_model(checkpoint, vae=None, tta=3), [pattern], top_k=230, prior=False, cell=False)
    (plain,) = predict_patterns(plain_bundle, [pattern], top_k=230, prior=False, cell=False)
    mean = {}
    for e in each:
        for t in e["top_k"]:
            mean[t["number"]] = mean.get(t["number"], 0.0) + t["probability"] / 3
    assert {t["number"]: t["probability"] for t in r["top_k"]} == pytest.approx(mean, abs=1e-5)
    assert r["novelty"] == plain["novelty"] or r["novelty"]["method"] == "max_softmax"


def test_tta_is_checked_and_reaches_the_command_line(checkpoint, tmp_path, capsys):
    for bad in (0, tta.MAX_TTA + 1):
        with pytest.raises(ValueError, match="tta"):
            load_model(checkpoint, tta=bad)
    with pytest.raises(ValueError, match="tta_average"):
        load_model(checkpoint, tta_average="median")
    tt = np.linspace(5, 90, 3000)
    y = sum(np.exp(-0.5 * ((tt - c) / 0.1) ** 2) for c in (28.4, 47.3, 56.1))
    f = tmp_path / "p.xy"
    np.savetxt(f, np.column_stack([tt, y + 0.05]))
    common = [str(f), "--model", str(checkpoint), "--wavelength", str(CU), "--no-cell", "--json", "--top-k", "230", "--prior", "none"]
    answers = {}
    for n in ("1", str(tta.MAX_TTA)):
        assert main(["predict", *common, "--tta", n]) == 0
        answers[n] = json.loads(capsys.readouterr().out)
    bundle = load_model(checkpoint, prior="none", tta=tta.MAX_TTA)
    (expected,) = predict_patterns(bundle, [Pattern(tt, y + 0.05, "two_theta", wavelength_A=CU)], top_k=230, cell=False)
    got = answers[str(tta.MAX_TTA)]
    assert {t["number"]: t["probability"] for t in got["top_k"]} == pytest.approx({t["number"]: t["probability"] for t in expected["top_k"]}, abs=1e-6)
    assert got["top_k"] != answers["1"]["top_k"]
