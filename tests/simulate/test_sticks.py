"""compute_sticks against known peaks and against pymatgen's XRDCalculator (small, fast set)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pyxtal
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure

from xrdid.simulate.sticks import Sticks, compute_sticks, d_min_for, sticks_to_peaks

CU_KA1 = 1.5406
MARS = 0.7297


def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cscl() -> Structure:
    return Structure(Lattice.cubic(4.209), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def si() -> Structure:
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])


def cubic_two_theta(a: float, hkl: tuple[int, int, int], wavelength: float = CU_KA1) -> float:
    return math.degrees(2 * math.asin(wavelength * math.sqrt(sum(i * i for i in hkl)) / (2 * a)))


def assert_matches_pymatgen(structure: Structure, wavelength: float, tt=(5.0, 90.0)) -> None:
    """Every pymatgen peak above 0.5 % is ours within 0.005° and 1 % (of the strongest); no extra peaks."""
    ref = XRDCalculator(wavelength=wavelength).get_pattern(structure, two_theta_range=tt)
    ours = sticks_to_peaks(compute_sticks(structure, d_min_for(wavelength, tt[1])), wavelength, *tt)
    rx, ry = np.asarray(ref.x), np.asarray(ref.y)
    ox, oy = ours["two_theta"], ours["intensity"]
    for x_ref, ys, xs in ((rx, ry, ox), (ox, oy, rx)):
        for x in x_ref[ys > 0.5] if ys is ry else x_ref[oy > 0.5]:
            assert np.min(np.abs(xs - x)) < 0.005, f"peak at {x:.4f}° unmatched"
    # intensities compared as sums over ±0.005° windows, robust to how near-coincident peaks are binned
    for x in rx[ry > 0.5]:
        ref_sum = ry[np.abs(rx - x) <= 0.005].sum()
        our_sum = oy[np.abs(ox - x) <= 0.005].sum()
        assert our_sum == pytest.approx(ref_sum, abs=1.0), f"intensity at {x:.4f}°"


def test_d_min_for():
    assert d_min_for(CU_KA1, 180.0) == pytest.approx(CU_KA1 / 2)
    assert d_min_for(MARS, 90.0) == pytest.approx(MARS / math.sqrt(2))
    with pytest.raises(ValueError):
        d_min_for(-1.0, 90.0)


def test_sticks_contract():
    st = compute_sticks(nacl(), d_min_for(CU_KA1, 90.0))
    assert isinstance(st, Sticks)
    assert st.d.dtype == np.float64 and st.f2m.dtype == np.float64 and st.hkl.dtype == np.int32
    assert st.hkl.shape == (len(st.d), 3)
    assert np.all(np.diff(st.d) < 0), "d must be sorted descending"
    assert np.all(st.f2m > 0)


@pytest.mark.parametrize(
    "make, a, expected",
    [
        # fcc rock salt: h,k,l all even or all odd
        (nacl, 5.64, [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1), (2, 2, 2)]),
        # primitive cubic: every hkl
        (cscl, 4.209, [(1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 0, 0), (2, 1, 0)]),
        # diamond: (200) and (222) absent
        (si, 5.431, [(1, 1, 1), (2, 2, 0), (3, 1, 1), (4, 0, 0), (3, 3, 1)]),
    ],
)
def test_known_cubic_peaks(make, a, expected):
    peaks = sticks_to_peaks(compute_sticks(make(), d_min_for(CU_KA1, 90.0)), CU_KA1, 5.0, 90.0)
    first = peaks["two_theta"][: len(expected)]
    assert first == pytest.approx([cubic_two_theta(a, hkl) for hkl in expected], abs=1e-9)
    assert [tuple(sorted(map(abs, h), reverse=True)) for h in peaks["hkl"][: len(expected)]] == expected
    assert peaks["intensity"].max() == pytest.approx(100.0)


def test_nacl_multiplicity_and_known_pattern():
    st = compute_sticks(nacl(), d_min_for(CU_KA1, 90.0))
    # (200): multiplicity 6, F = 4 (f_Na + f_Cl): f2m = 6 * 16 (f_Na + f_Cl)^2 > (111) term of 8 * 16 (f_Na - f_Cl)^2
    peaks = sticks_to_peaks(st, CU_KA1, 5.0, 90.0)
    assert peaks["two_theta"][np.argmax(peaks["intensity"])] == pytest.approx(cubic_two_theta(5.64, (2, 0, 0)))


def test_si_literature_peak():
    # Si (111) at Cu Kα1: 28.443° (a = 5.431 Å)
    peaks = sticks_to_peaks(compute_sticks(si(), d_min_for(CU_KA1, 90.0)), CU_KA1, 0.0, 90.0)
    assert peaks["two_theta"][0] == pytest.approx(28.443, abs=2e-3)


@pytest.mark.parametrize("make, wavelength", [(nacl, CU_KA1), (nacl, MARS), (cscl, CU_KA1), (si, MARS)])
def test_simple_against_pymatgen(make, wavelength):
    assert_matches_pymatgen(make(), wavelength)


def test_coincident_lines_are_one_peak_as_in_pymatgen():
    # A triclinic cell with one right angle (as CoRE MOF's GEDQIR): lines of families no symmetry
    # relates fall within 1e-5° of each other; pymatgen reports them as one peak, summed.
    rng = np.random.default_rng(0)
    s = Structure(Lattice.from_parameters(9.06, 10.1, 10.7, 118.239, 98.812, 90), ["Nd", "O", "C", "H"] * 2, rng.random((8, 3)))
    ref = XRDCalculator(wavelength=MARS).get_pattern(s, two_theta_range=(5.0, 60.0))
    ours = sticks_to_peaks(compute_sticks(s, d_min_for(MARS, 60.0)), MARS, 5.0, 60.0)
    strong = ref.y > 0.5
    j = np.searchsorted(ours["two_theta"], ref.x[strong] - 1e-5)
    np.testing.assert_allclose(ours["two_theta"][j], ref.x[strong], atol=1e-5)
    np.testing.assert_allclose(ours["intensity"][j], ref.y[strong], atol=0.01)


def test_hexagonal_against_pymatgen():
    # wurtzite ZnO
    zno = Structure.from_spacegroup(
        "P6_3mc", Lattice.hexagonal(3.25, 5.207), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]
    )
    assert_matches_pymatgen(zno, CU_KA1)
    assert_matches_pymatgen(zno, MARS)


def test_monoclinic_and_partial_occupancy_against_pymatgen():
    lat = Lattice.monoclinic(5.1, 6.3, 7.2, 103.0)
    s = Structure.from_spacegroup(
        "P2_1/c", lat, [{"Fe": 0.6, "Mn": 0.4}, "O", "O"], [[0.12, 0.23, 0.31], [0.41, 0.07, 0.18], [0.77, 0.36, 0.02]]
    )
    assert_matches_pymatgen(s, CU_KA1)
    assert_matches_pymatgen(s, MARS)


@pytest.mark.parametrize(
    "sg, n_ions",
    [(1, [4, 4, 12]), (15, [4, 4, 12]), (62, [4, 4, 12]), (141, [8, 8, 24]),
     (186, [4, 4, 12]), (216, [8, 8, 24])],
)
def test_random_pyxtal_against_pymatgen(sg, n_ions):
    c = pyxtal.pyxtal()
    c.from_random(3, sg, ["Ba", "Ti", "O"], n_ions, random_state=sg)
    assert_matches_pymatgen(c.to_pymatgen(), MARS)


@pytest.mark.parametrize("sg, n_ions", [(229, [12, 24]), (194, [4, 8]), (2, [4, 8])])
def test_methods_agree(sg, n_ions, monkeypatch):
    c = pyxtal.pyxtal()
    c.from_random(3, sg, ["Ca", "F"], n_ions, random_state=3)
    s = c.to_pymatgen()
    d_min = d_min_for(MARS, 90.0)
    ref = compute_sticks(s, d_min, method="direct")
    for method in ("separable", "orbits"):
        got = compute_sticks(s, d_min, method=method)
        np.testing.assert_allclose(got.d, ref.d, rtol=1e-12)
        np.testing.assert_allclose(got.f2m, ref.f2m, rtol=1e-9, atol=1e-9 * ref.f2m.max())
        np.testing.assert_array_equal(got.hkl, ref.hkl)
    # the chunked paths give the same numbers
    import xrdid.simulate.sticks as sticks_mod

    monkeypatch.setattr(sticks_mod, "_CHUNK_ENTRIES", 1000)
    for method in ("separable", "direct"):
        np.testing.assert_allclose(compute_sticks(s, d_min, method=method).f2m, ref.f2m, rtol=1e-9)


def test_debye_waller_damps_high_angle():
    d_min = d_min_for(CU_KA1, 90.0)
    plain = compute_sticks(nacl(), d_min)
    damped = compute_sticks(nacl(), d_min, debye_waller={"Na": 1.0, "Cl": 1.0})
    np.testing.assert_allclose(damped.d, plain.d)
    ratio = damped.f2m / plain.f2m
    np.testing.assert_allclose(ratio, np.exp(-2 * 1.0 / (4 * plain.d**2)), rtol=1e-12)
    ref = XRDCalculator(wavelength=CU_KA1, debye_waller_factors={"Na": 1.0, "Cl": 1.0}).get_pattern(nacl())
    ours = sticks_to_peaks(damped, CU_KA1, 0.0, 90.0)
    np.testing.assert_allclose(ours["intensity"], ref.y, atol=1e-6)


@pytest.mark.parametrize(
    "sg, n_ions, n_translations",
    [(225, [8, 24], 3), (216, [8, 8, 24], 3), (229, [12, 24], 1), (63, [8, 8, 16], 1), (166, [6, 6, 18], 2), (38, [8, 8, 16], 1), (62, [4, 4, 24], 0)],
)
def test_centred_cells_are_summed_over_one_entry_per_coset_and_agree_with_direct(sg, n_ions, n_translations, monkeypatch):
    import xrdid.simulate.sticks as sticks_mod

    c = pyxtal.pyxtal()
    c.from_random(3, sg, ["Ba", "Ti", "O"][: len(n_ions)], n_ions, random_state=7)
    s = c.to_pymatgen()  # conventional cell: F, I, C, R (hexagonal axes) or primitive
    assert len(s) >= sticks_mod._CENTRING_MIN_ATOMS
    entries = []
    real_f2 = sticks_mod._f2_separable
    monkeypatch.setattr(sticks_mod, "_f2_separable", lambda frac, *a: entries.append(len(frac)) or real_f2(frac, *a))
    d_min = d_min_for(MARS, 90.0)
    got = compute_sticks(s, d_min)
    assert entries == [len(s) // (n_translations + 1)]
    ref = compute_sticks(s, d_min, method="direct")
    np.testing.assert_allclose(got.d, ref.d, rtol=1e-12)
    np.testing.assert_allclose(got.f2m, ref.f2m, rtol=1e-9, atol=1e-9 * ref.f2m.max())
    np.testing.assert_array_equal(got.hkl, ref.hkl)


def test_an_atom_off_its_centring_partner_turns_the_centring_off():
    import xrdid.simulate.sticks as sticks_mod

    c = pyxtal.pyxtal()
    c.from_random(3, 225, ["Ba", "O"], [8, 24], random_state=7)
    s = c.to_pymatgen()
    s.translate_sites([0], [1e-7, 0, 0])  # far below any tolerance that would merge atoms, yet not centred
    frac = np.asarray(s.frac_coords)
    types = np.array([site.specie.Z for site in s])
    assert sticks_mod._centring(frac, types) is None
    d_min = d_min_for(MARS, 90.0)
    ref = compute_sticks(s, d_min, method="direct")
    got = compute_sticks(s, d_min)
    np.testing.assert_allclose(got.f2m, ref.f2m, rtol=1e-9, atol=1e-9 * ref.f2m.max())
    assert len(got) == len(ref)


def test_order_by_value_is_argsort_up_to_its_precision():
    import xrdid.simulate.sticks as sticks_mod

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0.01, 30.0, 5000), np.full(7, 2.5), [2.5 * (1 + 1e-12)]])
    rng.shuffle(values)
    order = sticks_mod._order_by_value(values, 1e-7)
    assert sorted(order.tolist()) == list(range(len(values)))  # a permutation
    ranked = values[order]
    assert (np.diff(ranked) >= -1e-8 * ranked[1:]).all()  # ascending up to rtol / 10
    np.testing.assert_array_equal(np.sort(values), np.sort(ranked))
    exact = values[np.argsort(values)]
    assert np.abs(ranked - exact).max() <= 1e-8 * exact.max()
    # no precision to spare (rtol 0): argsort itself
    np.testing.assert_array_equal(sticks_mod._order_by_value(values, 0.0), np.argsort(values))


@pytest.mark.parametrize(
    "sg, n_ions, tried",
    [(1, [7, 18], set()), (1, [9, 27], {"R", "Rrev"}), (166, [3, 9, 18], {"R", "Rrev"}), (225, [4, 24], {"A", "B", "C", "I"})],
)
def test_centring_tries_only_translations_whose_order_divides_every_types_count(sg, n_ions, tried, monkeypatch):
    import xrdid.simulate.sticks as sticks_mod

    c = pyxtal.pyxtal()
    c.from_random(3, sg, ["Ba", "Ti", "O"][: len(n_ions)], n_ions, random_state=5)
    s = c.to_pymatgen()  # F and R (hexagonal axes) conventional cells; P1 with no common factor 2 (or 2 and 3)
    frac = np.asarray(s.frac_coords)
    types = np.array([site.specie.Z for site in s])
    calls = []
    real = sticks_mod._first_entry_lands
    monkeypatch.setattr(sticks_mod, "_first_entry_lands", lambda f, t, g, names: calls.extend(names) or real(f, t, g, names))
    found = sticks_mod._centring(frac, types)
    assert set(calls) == tried
    assert (found is None) == (sg == 1)
    if found is not None:
        d_min = d_min_for(MARS, 90.0)
        ref = compute_sticks(s, d_min, method="direct")
        got = compute_sticks(s, d_min)
        np.testing.assert_allclose(got.f2m, ref.f2m, rtol=1e-9, atol=1e-9 * ref.f2m.max())
        np.testing.assert_array_equal(got.hkl, ref.hkl)


def test_the_reciprocal_cell_is_the_inverse_and_a_singular_cell_is_refused():
    import xrdid.simulate.sticks as sticks_mod
    from xrdid.structures.crystal import Crystal

    rng = np.random.default_rng(1)
    for _ in range(20):
        lattice = Lattice.from_parameters(*rng.uniform(2, 20, 3), *rng.uniform(60, 120, 3)).matrix
        recip, lengths = sticks_mod._reciprocal(lattice)
        np.testing.assert_allclose(recip, np.linalg.inv(lattice).T, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(lengths, np.linalg.norm(lattice, axis=1), rtol=1e-15)
    flat = np.array([[3.0, 0, 0], [0, 3.0, 0], [3.0, 3.0, 0]])  # c = a + b: volume 0
    with pytest.raises(ValueError, match="singular"):
        compute_sticks(Crystal(flat, ("Na",), np.zeros((1, 3)), np.ones(1)), 1.0)


def test_peaks_of_sticks_in_d_order_and_shuffled_agree_with_the_range_ends_included():
    sticks = compute_sticks(nacl(), d_min_for(CU_KA1, 120.0))
    two_theta = np.degrees(2.0 * np.arcsin(CU_KA1 / (2.0 * sticks.d)))
    lo, hi = two_theta[2], two_theta[-3]  # the range ends fall exactly on sticks
    ordered = sticks_to_peaks(sticks, CU_KA1, lo, hi)
    assert ordered["two_theta"][0] == lo and ordered["two_theta"][-1] == hi
    perm = np.random.default_rng(0).permutation(len(sticks))
    shuffled = sticks_to_peaks(Sticks(sticks.d[perm], sticks.f2m[perm], sticks.hkl[perm]), CU_KA1, lo, hi)
    for key in ("two_theta", "intensity", "hkl", "d"):
        np.testing.assert_array_equal(ordered[key], shuffled[key])
    assert len(sticks_to_peaks(sticks, CU_KA1, hi, lo)["two_theta"]) == 0


def test_the_lines_of_the_half_sphere_are_every_point_of_half_the_sphere_once():
    import xrdid.simulate.sticks as sticks_mod

    rng = np.random.default_rng(5)
    for _ in range(10):
        lattice = Lattice.from_parameters(*rng.uniform(3, 9, 3), *rng.uniform(65, 115, 3)).matrix
        recip, lengths = sticks_mod._reciprocal(lattice)
        metric = recip @ recip.T
        g_max = 1.0 / rng.uniform(0.8, 2.0)
        *lines, bounds = sticks_mod._half_sphere_lines(metric, lengths, g_max)
        line, l = sticks_mod._expand_lines(*lines)
        got = {(int(lines[0][i]), int(lines[1][i]), int(j)) for i, j in zip(line, l)}
        assert len(got) == len(l)
        n = max(bounds) + 1
        grid = np.stack(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
        g2 = np.einsum("ij,jk,ik->i", grid, metric, grid)
        h, k, ll = grid.T
        half = (h > 0) | ((h == 0) & (k > 0)) | ((h == 0) & (k == 0) & (ll > 0))
        assert got == {tuple(x) for x in grid[half & (g2 <= g_max * g_max)].tolist()}


def test_the_products_over_a_subset_of_the_lines_with_an_l_period_agree_with_all_points(monkeypatch):
    import xrdid.simulate.sticks as sticks_mod

    rng = np.random.default_rng(11)
    lattice = Lattice.from_parameters(5.1, 6.3, 7.7, 81, 97, 104).matrix
    recip, lengths = sticks_mod._reciprocal(lattice)
    *lines, bounds = sticks_mod._half_sphere_lines(recip @ recip.T, lengths, 1.2)
    line, l = sticks_mod._expand_lines(*lines)
    h, k = lines[0], lines[1]
    frac = rng.random((7, 3))
    element_bounds = np.array([0, 3, 7])
    occ = rng.uniform(0.5, 1.0, 7)
    ffp = rng.uniform(1.0, 20.0, (2, len(l)))
    everything = sticks_mod._f2_separable(frac, element_bounds, occ, ffp, lines, line, l, bounds)
    for chunk in (1 << 21, 300):  # one block, and many blocks of lines
        monkeypatch.setattr(sticks_mod, "_CHUNK_ENTRIES", chunk)
        for period in (1, 2, 3):
            # On each line one class of l modulo the period, as a centring leaves; some lines hold none.
            keep = (l % period == (h + 2 * k)[line] % period) & ((h + k)[line] % 4 != 1)
            pts = np.flatnonzero(keep)
            assert 0 < len(pts) < len(l) and len(np.unique(line[pts])) < len(h)
            got = sticks_mod._f2_separable(frac, element_bounds, occ, ffp[:, pts], lines, line[pts], l[pts], bounds, period)
            np.testing.assert_allclose(got, everything[pts], rtol=1e-10, atol=1e-12 * everything.max())


def test_the_lorentz_polarisation_factor_from_sin_theta_is_that_of_the_angle():
    import xrdid.simulate.sticks as sticks_mod

    two_theta = np.linspace(1.0, 170.0, 500)
    sin_theta = np.sin(np.radians(two_theta) / 2.0)
    np.testing.assert_allclose(
        sticks_mod._lorentz_polarisation_of_sin(sin_theta), sticks_mod.lorentz_polarisation(two_theta), rtol=1e-12
    )


def test_sticks_out_of_reach_of_the_wavelength_are_no_peaks():
    sticks = compute_sticks(nacl(), d_min_for(MARS, 150.0))
    reachable = CU_KA1 / (2.0 * sticks.d) <= 1.0
    assert 0 < reachable.sum() < len(sticks)
    got = sticks_to_peaks(sticks, CU_KA1, 0.0, 180.0)
    ref = sticks_to_peaks(Sticks(sticks.d[reachable], sticks.f2m[reachable], sticks.hkl[reachable]), CU_KA1, 0.0, 180.0)
    assert len(got["two_theta"]) == len(ref["two_theta"]) > 5
    for key in ("two_theta", "intensity", "hkl", "d"):
        np.testing.assert_array_equal(got[key], ref[key])


def test_the_points_a_centring_allows_are_those_every_translation_keeps_in_phase():
    import xrdid.simulate.sticks as sticks_mod

    lattice = Lattice.from_parameters(5.0, 6.0, 7.0, 80, 95, 100).matrix
    recip, lengths = sticks_mod._reciprocal(lattice)
    *lines, _ = sticks_mod._half_sphere_lines(recip @ recip.T, lengths, 1.5)
    line, l = sticks_mod._expand_lines(*lines)
    h, k = lines[0][line], lines[1][line]
    sixths = sticks_mod._CENTRING_SIXTHS
    for group in (["A"], ["B"], ["C"], ["I"], ["A", "B", "C"], ["R"], ["Rrev"]):
        t = np.array([sixths[x] for x in group])
        if group[0].startswith("R"):
            t = np.vstack([t, (2 * t) % 6])
        in_phase = np.flatnonzero(((t[:, 0, None] * h + t[:, 1, None] * k + t[:, 2, None] * l) % 6 == 0).all(axis=0))
        np.testing.assert_array_equal(sticks_mod._allowed_points(t, lines, line, l), in_phase)
        assert 0 < len(in_phase) < len(l)
