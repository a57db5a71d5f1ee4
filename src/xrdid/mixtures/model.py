"""The physical model of a measured scan: phase states, their rendering, the background and the linear solve.

A phase state carries what is refined per phase: an isotropic lattice scale s (d = s·d_lib), the
symmetry-allowed anisotropic deformation q of the reciprocal metric, the crystallite size, the
microstrain and the March–Dollase texture (axis, r). Global parameters (:class:`Globals`) are the zero
shift, the sample displacement, the instrument width scale and the Kα2/Kα1 ratio.

Lattice refinement. With h a row (h, k, l) in the basis of the library cell, 1/d² = h G* hᵀ. A rotation
R of the Laue group maps h ↦ h R and leaves d unchanged, so an allowed metric satisfies R G* Rᵀ = G*.
The symmetric matrices with that property are a linear space, spanned by the group averages
⟨R E Rᵀ⟩ of the six elementary symmetric matrices E: dimension 1 (cubic), 2 (tetragonal, hexagonal,
trigonal), 3 (orthorhombic), 4 (monoclinic), 6 (triclinic). Its part orthogonal to G*_lib (the
isotropic direction, which s already covers) is refined as q, with
:math:`G^* = (G^*_{lib} + \\sum_k q_k B_k)/s^2`, each B_k scaled to the norm of G*_lib so that q_k is a
relative change of 1/d² along that direction. Cell volume: V = det(G*)^(-1/2).

March–Dollase (J. Appl. Cryst. 19 (1986) 267). A reflection whose normal makes the angle α with the
preferred axis is multiplied by :math:`P = ⟨(r^2\\cos^2α + \\sin^2α / r)^{-3/2}⟩`, the mean over the
reflection's symmetry equivalents (the stick carries their summed intensity); r = 1 is no texture, r < 1
plates stacked on the axis, r > 1 needles along it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import lsq_linear

try:  # lsq_linear's own solver (see bounded_lstsq)
    from scipy.optimize._lsq.bvls import bvls as _bvls
except ImportError:  # pragma: no cover - a scipy that moved it: lsq_linear itself
    _bvls = None

from xrdid.mixtures.library import Library, LibraryPhase
from xrdid.mixtures.profile import Optics, _size_A, _strain_deg, render_derivatives, render_phase, render_phases

# Candidate texture axes (reciprocal-lattice directions of the library cell), deduplicated per phase by
# the Laue group: the cell axes and the two low-index diagonals cover the habits of most powders.
TEXTURE_AXES = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=np.float64)


@dataclass
class PhaseState:
    index: int  # into library.phases
    s: float = 1.0
    q: np.ndarray = field(default_factory=lambda: np.zeros(0))
    log_size: float = math.log(300.0)
    strain: float = 0.0
    axis: int = -1  # index into PhaseData.axes; -1: no texture
    r: float = 1.0

    def copy(self, **kw) -> PhaseState:
        # As dataclasses.replace(self, q=copy of q, **kw), without its field-by-field __init__ (refinement
        # copies states thousands of times a pattern).
        new = object.__new__(PhaseState)
        new.__dict__.update(self.__dict__)
        new.q = np.array(self.q, float)
        for k, v in kw.items():
            if k not in new.__dict__:
                raise TypeError(f"PhaseState has no field {k!r}")
            setattr(new, k, v)
        return new


@dataclass
class Globals:
    zero_deg: float = 0.0
    displacement_deg: float = 0.0  # Δ2θ = displacement_deg · cos θ
    log_width: float = 0.0  # log of the factor on the instrument's Caglioti U, V, W
    kalpha2_ratio: float = 0.5

    def copy(self, **kw) -> Globals:
        return replace(self, **kw)


class PhaseData:
    """What rendering one library phase under refinement needs, computed once per phase."""

    def __init__(self, p: LibraryPhase):
        self.phase = p
        keep = (p.d > 0) & (p.f2m > 0)
        self.d0, self.f2m = p.d[keep], p.f2m[keep]
        h = p.hkl[keep].astype(np.float64)
        self.hkl = h
        G0 = np.asarray(p.recip_metric, float)
        self.G0 = G0
        self.inv_d2_0 = 1.0 / self.d0**2
        self.basis = _deformation_basis(G0, np.asarray(p.rotations, float))
        # h B_k hᵀ per stick: (k, n)
        self.hBh = np.einsum("ni,kij,nj->kn", h, self.basis, h) if len(self.basis) else np.zeros((0, h.shape[0]))
        self.axes = _distinct_axes(TEXTURE_AXES, np.asarray(p.rotations, float))
        self._cos2: dict[int, np.ndarray] = {}

    @property
    def n_aniso(self) -> int:
        return len(self.basis)

    def d(self, ps: PhaseState) -> np.ndarray:
        inv = self.inv_d2_0 + (ps.q @ self.hBh if ps.q.size else 0.0)
        return ps.s / np.sqrt(np.maximum(inv, 1e-12))

    def metric(self, ps: PhaseState) -> np.ndarray:
        G = self.G0 + (np.tensordot(ps.q, self.basis, axes=1) if ps.q.size else 0.0)
        return G / ps.s**2

    def volume(self, ps: PhaseState) -> float:
        return float(1.0 / math.sqrt(max(np.linalg.det(self.metric(ps)), 1e-30)))

    def cell(self, ps: PhaseState) -> tuple[float, ...]:
        """(a, b, c in Å, α, β, γ in degrees) of the refined cell, in the library cell's setting."""
        g = np.linalg.inv(self.metric(ps))
        a, b, c = np.sqrt(np.diag(g))
        ang = [math.degrees(math.acos(np.clip(g[i, j] / (x * y), -1, 1)))
               for (i, j), (x, y) in (((1, 2), (b, c)), ((0, 2), (a, c)), ((0, 1), (a, b)))]
        return (float(a), float(b), float(c), *ang)

    def cos2(self, axis: int) -> np.ndarray:
        """cos²α between every symmetry equivalent of each stick's normal and texture axis ``axis``: (n, m)."""
        if axis not in self._cos2:
            a = self.axes[axis]
            R = np.asarray(self.phase.rotations, float)
            eq = np.einsum("ni,mij->nmj", self.hkl, R)  # (n, m, 3)
            ga = self.G0 @ a
            num = eq @ ga
            den = np.einsum("nmi,ij,nmj->nm", eq, self.G0, eq) * float(a @ ga)
            self._cos2[axis] = np.clip(num * num / np.maximum(den, 1e-30), 0.0, 1.0)
        return self._cos2[axis]

    def texture(self, ps: PhaseState) -> np.ndarray | float:
        if ps.axis < 0 or ps.r == 1.0:
            return 1.0
        c2 = self.cos2(ps.axis)
        r = ps.r
        return ((r * r * c2 + (1.0 - c2) / r) ** -1.5).mean(axis=1)


def _deformation_basis(G0: np.ndarray, rots: np.ndarray) -> np.ndarray:
    """Orthonormal (Frobenius) basis of the R-invariant symmetric matrices orthogonal to G0, scaled to |G0|."""
    mats = []
    for i in range(3):
        for j in range(i, 3):
            E = np.zeros((3, 3))
            E[i, j] = E[j, i] = 1.0
            mats.append(np.einsum("mij,jk,mlk->il", rots, E, rots) / len(rots))
    A = np.array([m.ravel() for m in mats])
    g = G0.ravel() / np.linalg.norm(G0)
    A = A - np.outer(A @ g, g)
    _, sv, vt = np.linalg.svd(A, full_matrices=False)
    rank = int((sv > 1e-6).sum())  # the averaged E have norm ≤ 1: what is left of G0 is rounding
    basis = vt[:rank].reshape(rank, 3, 3)
    basis = 0.5 * (basis + basis.transpose(0, 2, 1))
    return basis * np.linalg.norm(G0)


def _distinct_axes(axes: np.ndarray, rots: np.ndarray) -> np.ndarray:
    """The candidate axes, one per class of symmetry-equivalent directions."""
    out: list[np.ndarray] = []
    for a in axes:
        images = np.einsum("i,mij->mj", a, rots)
        if not any(np.any(np.all(np.isclose(images, b), axis=1) | np.all(np.isclose(images, -b), axis=1)) for b in out):
            out.append(a)
    return np.array(out)


def chebyshev(grid: np.ndarray, degree: int) -> np.ndarray:
    t = 2.0 * (grid - grid[0]) / (grid[-1] - grid[0]) - 1.0
    return np.polynomial.chebyshev.chebvander(t, degree).T  # (K, N)


def weights(y: np.ndarray) -> np.ndarray:
    """Counting-statistics weights 1/σ² = 1/y, with a floor so near-zero (or subtracted) points do not dominate."""
    top = float(np.max(np.abs(y))) or 1.0
    floor = max(float(np.percentile(y, 5)), 1e-3 * top, 1e-12)
    return 1.0 / np.maximum(y, floor)


class Model:
    """The measured pattern on a uniform grid, its weights, the background basis and the phase renderer."""

    def __init__(self, grid, y, library: Library, optics: Optics, *, background_degree: int,
                 window_fwhm: float = 5.0, data: dict | None = None):
        self.grid, self.y, self.lib, self.optics = grid, y, library, optics
        self.w = weights(y)
        self.sw = np.sqrt(self.w)
        self.bg = chebyshev(grid, background_degree)
        self.window = window_fwhm
        self.fwhm_deg: float | None = None  # the pattern's typical peak FWHM (deg), when the fit has estimated it
        # Set by the fit from its settings: the part of χ² no hypothesis is expected to remove (peaks the library
        # explains only in part; xrdid.mixtures.fit.criterion), and whether a phase's anisotropic lattice counts
        # as parameters before it is refined.
        self.chi2_floor = 0.0
        self.beam_aniso_params = True
        # Model.linear: a solve with negative scales first tries them held at 0 (_clamped_solve), BVLS if
        # that is not the optimum; False: BVLS always.
        self.clamp_first = True
        self._data = getattr(library, "phase_data", {}) if data is None else data
        self.cos_theta = np.cos(np.radians(grid) / 2)
        self.tan_theta = np.tan(np.radians(grid) / 2)

    def mask(self, keep: np.ndarray) -> None:
        """Give the points where ``keep`` is False no weight (they drop out of every χ² and solve)."""
        self.w = np.where(keep, self.w, 0.0)
        self.sw = np.sqrt(self.w)
        self.__dict__.pop("_bg_gram", None)  # cached with the old weights
        self.__dict__.pop("bg_weighted", None)

    def data(self, index: int) -> PhaseData:
        if index not in self._data:
            self._data[index] = PhaseData(self.lib.phases[index])
        return self._data[index]

    def render(self, ps: PhaseState, g: Globals, grid: np.ndarray | None = None) -> np.ndarray:
        """The phase's column on the model's grid (or on ``grid``, any uniform 2θ grid)."""
        pd = self.data(ps.index)
        return render_phase(
            pd.d(ps), pd.f2m * pd.texture(ps), self.grid if grid is None else grid, self.optics, zero_deg=g.zero_deg,
            displacement_deg=g.displacement_deg, width_scale=math.exp(g.log_width), size_nm=math.exp(ps.log_size),
            strain=ps.strain, kalpha2_ratio=g.kalpha2_ratio, window_fwhm=self.window,
        )

    def columns(self, phases: list[PhaseState], g: Globals, line: int | None = None) -> np.ndarray:
        """Every phase's column, (len(phases), N): the same numbers as :meth:`render` of each, in one call.
        ``line``: every phase's peaks of that wavelength alone, at weight 1 — the columns are Kα1 + ratio ×
        those of line 1, so ``line=1`` gives their derivative with respect to the Kα2 ratio."""
        if not phases:
            return np.zeros((0, self.grid.size))
        pds = [self.data(p.index) for p in phases]
        optics, ratio = self.optics, g.kalpha2_ratio
        if line is not None:
            optics, ratio = replace(self.optics, wavelengths_A=(self.optics.wavelengths_A[line],)), 1.0
        return render_phases(
            [(pd.d(p), pd.f2m * pd.texture(p)) for pd, p in zip(pds, phases)], self.grid, optics,
            size_nm=[math.exp(p.log_size) for p in phases], strain=[p.strain for p in phases], zero_deg=g.zero_deg,
            displacement_deg=g.displacement_deg, width_scale=math.exp(g.log_width), kalpha2_ratio=ratio,
            window_fwhm=self.window,
        )

    def derivative_columns(self, phases: list[PhaseState], g: Globals, a: np.ndarray, moves: list[tuple],
                           ka2: bool = False) -> np.ndarray:
        """Derivatives of the calculated pattern Σ aᵢ·column(phases[i]), one row per move, from one shared-profile
        render (:func:`~xrdid.mixtures.profile.render_derivatives`), (len(moves) + ka2, N).

        A move is (i, state, globals, step): phase position i moved to ``state`` (its column's derivative times
        a[i]), or i None: every phase under ``globals`` (the width scale). ``ka2``: a last row, the derivative
        with respect to the Kα2 ratio. The finite difference (column(moved) − column)/step of each, to first order."""
        n_cols = len(moves) + int(ka2)
        if not phases or not n_cols:
            return np.zeros((n_cols, self.grid.size))
        every = ka2 or any(i is None for i, *_ in moves)
        used = list(range(len(phases))) if every else sorted({i for i, *_ in moves})
        pds = {i: self.data(phases[i].index) for i in used}
        ds = {i: pds[i].d(phases[i]) for i in used}
        counts = np.array([ds[i].size for i in used], dtype=np.int64)
        off = dict(zip(used, np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()))
        n = int(counts.sum())
        row = np.repeat(np.asarray(used), counts)
        # Each move's sticks: the base sticks it changes, copied after the base, its changed quantity overwritten.
        segs = [(0, n) if i is None else (off[i], off[i] + ds[i].size) for i, *_ in moves]
        sizes = np.array([b - a_ for a_, b in segs], dtype=np.int64)
        src = np.concatenate([np.arange(n)] + [np.arange(a_, b) for a_, b in segs])
        cw = np.concatenate([[0], np.cumsum(sizes)]) + n
        base_size = np.repeat([_size_A(math.exp(phases[i].log_size)) for i in used], counts)
        base_strain = np.repeat([_strain_deg(phases[i].strain) for i in used], counts)
        sticks = {
            "d": np.concatenate([ds[i] for i in used])[src],
            "f2m": np.concatenate([pds[i].f2m * pds[i].texture(phases[i]) for i in used])[src],
            "size_A": base_size[src],
            "strain_deg": base_strain[src],
            "width_scale": np.full(src.size, math.exp(g.log_width)),
            "src": src,
        }
        coef = np.empty(cw[-1] - n)
        for k, (i, state, gg, step) in enumerate(moves):
            sl = slice(cw[k], cw[k + 1])
            if i is None:
                sticks["width_scale"][sl] = math.exp(gg.log_width)
                coef[sl.start - n : sl.stop - n] = a[row] / step
                continue
            p, pd = phases[i], pds[i]
            if state.s != p.s or not np.array_equal(state.q, p.q):
                sticks["d"][sl] = pd.d(state)
            if state.r != p.r or state.axis != p.axis:
                sticks["f2m"][sl] = pd.f2m * pd.texture(state)
            if state.log_size != p.log_size:
                sticks["size_A"][sl] = _size_A(math.exp(state.log_size))
            if state.strain != p.strain:
                sticks["strain_deg"][sl] = _strain_deg(state.strain)
            coef[sl.start - n : sl.stop - n] = a[i] / step
        return render_derivatives(
            sticks, n, np.repeat(np.arange(len(moves)), sizes), coef, n_cols, self.grid, self.optics,
            zero_deg=g.zero_deg, displacement_deg=g.displacement_deg, kalpha2_ratio=g.kalpha2_ratio,
            window_fwhm=self.window, line2=(len(moves), a[row]) if ka2 else None,
        )

    def linear(self, cols: np.ndarray):
        """Scales (≥ 0) and background coefficients minimising the weighted χ², by bounded least squares.

        Solved through the (k × k) Gram matrix of the column-normalised weighted design: its Cholesky
        factor R turns min |M c − b|² into the equivalent min |R c − R⁻ᵀMᵀb|², which is tiny. The
        background's block of the Gram matrix and its right-hand side are fixed per pattern and computed
        once (:attr:`_bg_gram`); only the phase rows are new at each call.
        Returns (scales, background coefficients, calc, χ²).
        """
        n = cols.shape[0]
        Mg, Gbb, bb, bg_norm, b = self._bg_gram
        if n:
            Pw = cols * self.sw
            pn = np.sqrt((Pw * Pw).sum(axis=1))
            pn[pn == 0] = 1.0
            Mp = Pw / pn[:, None]
            G = np.empty((n + Gbb.shape[0],) * 2)
            G[:n, :n] = Mp @ Mp.T
            G[:n, n:] = Mp @ Mg.T
            G[n:, :n] = G[:n, n:].T
            G[n:, n:] = Gbb
            Mb = np.concatenate([Mp @ b, bb])
            norm = np.concatenate([pn, bg_norm])
        else:
            G, Mb, norm = Gbb.copy(), bb, bg_norm
        G.flat[:: G.shape[0] + 1] += 1e-10  # the diagonal
        coef = np.linalg.solve(G, Mb)
        if n and coef[:n].min() < 0:
            clamped = _clamped_solve(G, Mb, n, coef) if self.clamp_first else None
            if clamped is not None:
                coef = clamped
            else:
                R = np.linalg.cholesky(G).T  # G = RᵀR
                rhs = np.linalg.solve(R.T, Mb)
                coef = bounded_lstsq(R, rhs, np.concatenate((np.zeros(n), np.full(self.bg.shape[0], -np.inf))))
        coef = coef / norm
        calc = coef[n:] @ self.bg
        if n:
            calc = calc + coef[:n] @ cols
        chi2 = float(np.sum(self.w * (self.y - calc) ** 2))
        return coef[:n], coef[n:], calc, chi2

    @functools.cached_property
    def bg_weighted(self) -> tuple[np.ndarray, np.ndarray]:
        """(the weighted background rows bg·√w, their Gram matrix): fixed per pattern (refine's projection)."""
        Bw = self.bg * self.sw
        return Bw, Bw @ Bw.T

    @functools.cached_property
    def _bg_gram(self):
        """(normalised weighted background rows, their Gram matrix, their products with the weighted data,
        their norms, the weighted data)."""
        Bw = self.bg * self.sw
        nb = np.sqrt((Bw * Bw).sum(axis=1))
        nb[nb == 0] = 1.0
        Mg = Bw / nb[:, None]
        b = self.y * self.sw
        return Mg, Mg @ Mg.T, Mg @ b, nb, b


def _clamped_solve(G: np.ndarray, Mb: np.ndarray, n: int, coef: np.ndarray) -> np.ndarray | None:
    """The minimiser of ½cᵀGc − Mbᵀc with c[:n] ≥ 0 when it is the unconstrained solution ``coef`` with its
    negative phase scales held at 0 and the rest re-solved: checked by the optimality conditions (every
    scale ≥ 0, and χ² rising as a held scale leaves 0: (Gc − Mb) ≥ 0 there); else None (BVLS then).

    G is positive definite, so the minimiser is unique and this is BVLS's answer, within rounding. On the
    fit's solves one phase at a time comes out negative and holding it is the optimum; a BVLS (with its
    Cholesky factor and unbounded start) costs ~50 times this one small solve."""
    held = np.zeros(G.shape[0], bool)
    held[:n] = coef[:n] < 0
    free = ~held
    c = np.zeros(G.shape[0])
    c[free] = np.linalg.solve(G[np.ix_(free, free)], Mb[free])
    if c[:n].min() < 0 or not np.all((G[held] @ c - Mb[held]) >= 0):
        return None
    return c


def bounded_lstsq(A: np.ndarray, b: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """x ≥ ``lb`` minimising |A x − b|: ``lsq_linear(A, b, bounds=(lb, inf), method="bvls").x``, the same
    numbers (its unbounded solution, returned when it is feasible, else BVLS from it, tolerance 1e-10),
    without lsq_linear's argument checks and result object: a third of its time on the fit's small systems."""
    if _bvls is None:  # pragma: no cover
        return lsq_linear(A, b, bounds=(lb, np.inf), method="bvls").x
    x = np.linalg.lstsq(A, b, rcond=-1)[0]
    if np.all(x >= lb):  # lsq_linear's in_bounds (x ≤ inf holds for every number)
        return x
    try:
        return _bvls(A, b, x, lb, np.full(lb.size, np.inf), 1e-10, None, 0).x
    except TypeError:  # pragma: no cover - a scipy whose private solver takes other arguments
        return lsq_linear(A, b, bounds=(lb, np.inf), method="bvls").x
