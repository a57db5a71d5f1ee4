"""Levenberg–Marquardt refinement of the nonlinear parameters, the linear ones solved exactly at every step.

Variable projection: for given nonlinear parameters θ, the phase scales and background coefficients are
the bounded weighted least-squares solution (:meth:`Model.linear`); LM works on χ²(θ) with Kaufman's
Jacobian (the derivative columns projected off the span of the linear columns). Derivatives: the zero
shift, the sample displacement and a phase's isotropic lattice scale move peaks by a known function of
2θ, so their columns are −∂y/∂2θ, −cos θ·∂y/∂2θ (of the phase sum) and 2 tanθ/s·∂y_i/∂2θ (no render);
any other phase parameter re-renders that phase only (finite difference);
the width scale re-renders every phase, the Kα2 ratio renders every phase's Kα2 peaks alone (the
columns are linear in it). Bounds by clipping.

By default (:data:`SHARED_KINDS`) the columns of the anisotropic lattice, the texture, the size, the width
scale and the Kα2 ratio come instead from one shared-profile render (:meth:`Model.derivative_columns`):
the same finite step, taken in each peak's centre, FWHM, η and area, times the render's exact
derivatives in those, with no window edge moving. The finite differences of size, strain and width carry
the jumps of the ±5-FWHM windows (10–50 % of the column at the steps used); the shared columns do not,
and cost less than a render per parameter once every phase is in the render (the width's). Strain keeps
its finite difference (shared, it changed an answer on the tune half; benchmarks/README, phase
identification).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_DEG = 180.0 / math.pi

from xrdid.mixtures.model import Globals, Model, PhaseState

# A trial step this close to the step just rejected is not evaluated (:func:`refine`).
SKIP_RTOL = 0.05

# The parameter kinds ("q", "r", "size", "strain", "width", "ka2") whose derivative columns refine takes from
# one shared-profile render (its ``shared``), not from a render per parameter (see the module's docstring).
SHARED_KINDS: tuple[str, ...] = ("q", "r", "size", "width", "ka2")

# (lower, upper, finite-difference step) of each parameter kind.
PHASE_KINDS = ("s", "q", "size", "strain", "r")
GLOBAL_KINDS = ("zero", "disp", "width", "ka2")


@dataclass(frozen=True)
class Bounds:
    d_scale: float = 0.03  # |s − 1| (isotropic lattice scale)
    aniso: float = 0.02  # |q_k| (relative change of 1/d² along a symmetry-allowed deformation)
    size_nm: tuple[float, float] = (3.0, 5000.0)
    strain: float = 0.01
    march_dollase: tuple[float, float] = (0.4, 2.5)
    zero_deg: float = 0.3
    displacement_deg: float = 0.3
    width: tuple[float, float] = (0.05, 5000.0)
    kalpha2_ratio: tuple[float, float] = (0.0, 0.7)


def _slot_bounds(kind: str, b: Bounds) -> tuple[float, float, float, float]:
    """(lower, upper, finite-difference step, largest step of one LM iteration)."""
    return {
        "s": (1 - b.d_scale, 1 + b.d_scale, 1e-4, 0.005),
        "q": (-b.aniso, b.aniso, 2e-4, 0.005),
        "size": (math.log(b.size_nm[0]), math.log(b.size_nm[1]), 0.05, 0.7),
        "strain": (0.0, b.strain, 2e-4, 0.002),
        "r": (b.march_dollase[0], b.march_dollase[1], 0.01, 0.3),
        "zero": (-b.zero_deg, b.zero_deg, 0.0, 0.1),
        "disp": (-b.displacement_deg, b.displacement_deg, 0.0, 0.1),
        "width": (math.log(b.width[0]), math.log(b.width[1]), 0.02, 0.7),
        "ka2": (b.kalpha2_ratio[0], b.kalpha2_ratio[1], 0.02, 0.15),
    }[kind]


def slots_for(phases: list[PhaseState], model: Model, *, phase_kinds=("s", "size"), which=None,
              global_kinds=("zero",)) -> list[tuple]:
    """Parameter slots (kind, phase position or None, component) to refine.

    ``which``: positions of the phases whose ``phase_kinds`` are free (default all); "q" expands to the
    phase's anisotropic components, "r" only applies to a phase with a texture axis.
    """
    out = []
    for i, p in enumerate(phases):
        if which is not None and i not in which:
            continue
        for k in phase_kinds:
            if k == "q":
                out.extend(("q", i, j) for j in range(model.data(p.index).n_aniso))
            elif k == "r":
                if p.axis >= 0:
                    out.append(("r", i, 0))
            else:
                out.append((k, i, 0))
    out.extend((k, None, 0) for k in global_kinds)
    return out


def _get(phases, g: Globals, slot) -> float:
    kind, i, j = slot
    if i is None:
        return {"zero": g.zero_deg, "disp": g.displacement_deg, "width": g.log_width, "ka2": g.kalpha2_ratio}[kind]
    p = phases[i]
    return {"s": p.s, "size": p.log_size, "strain": p.strain, "r": p.r}[kind] if kind != "q" else float(p.q[j])


def _set(phases, g: Globals, slots, theta):
    """New states with ``slots`` set to ``theta``; states no slot touches are shared, not copied."""
    phases = list(phases)
    copied: set = set()
    g_in = g
    for (kind, i, j), v in zip(slots, theta):
        v = float(v)
        if i is None:
            if g is g_in:
                g = g.copy()
            setattr(g, {"zero": "zero_deg", "disp": "displacement_deg", "width": "log_width", "ka2": "kalpha2_ratio"}[kind], v)
            continue
        if i not in copied:
            phases[i] = phases[i].copy()
            copied.add(i)
        if kind == "q":
            phases[i].q[j] = v
        else:
            setattr(phases[i], {"s": "s", "size": "log_size", "strain": "strain", "r": "r"}[kind], v)
    return phases, g


def _gradient(f: np.ndarray, dx: float) -> np.ndarray:
    """∂f/∂2θ along the last axis of a uniform grid of step ``dx``: the numbers of ``np.gradient(f, dx,
    axis=-1)`` (central differences, one-sided at the ends), without its general-purpose overhead (several
    times the arithmetic on a refinement's few columns)."""
    out = np.empty_like(f)
    np.subtract(f[..., 2:], f[..., :-2], out=out[..., 1:-1])
    out[..., 1:-1] /= 2.0 * dx
    out[..., 0] = (f[..., 1] - f[..., 0]) / dx
    out[..., -1] = (f[..., -1] - f[..., -2]) / dx
    return out


def _same_step(move: np.ndarray, rejected: np.ndarray, rtol: float) -> bool:
    """Whether the step ``move`` differs from the ``rejected`` one by less than the fraction ``rtol`` of its
    largest component (both in units of each parameter's largest step)."""
    if rtol <= 0:
        return False
    return float(np.max(np.abs(move - rejected))) < rtol * float(np.max(np.abs(rejected)))


def _projected(model: Model, cols: np.ndarray, D: np.ndarray) -> np.ndarray:
    """The weighted derivative rows D·√w projected off the span of the weighted columns and background
    (Kaufman's Jacobian). The background's block of the Gram matrix is the same at every iteration
    (:attr:`Model.bg_weighted`); only the columns' rows are new."""
    Bw, Gbb = model.bg_weighted
    if len(cols):
        Cw = cols * model.sw
        L = np.vstack([Cw, Bw])
        k = len(cols)
        G = np.empty((L.shape[0],) * 2)
        G[:k, :k] = Cw @ Cw.T
        G[:k, k:] = Cw @ Bw.T
        G[k:, :k] = G[:k, k:].T
        G[k:, k:] = Gbb
    else:
        L, G = Bw, Gbb.copy()
    Dw = D * model.sw
    G.flat[:: G.shape[0] + 1] += 1e-12 * np.trace(G) / G.shape[0]  # the diagonal
    return Dw - np.linalg.solve(G, L @ Dw.T).T @ L


def refine(model: Model, phases: list[PhaseState], g: Globals, slots: list[tuple], bounds: Bounds,
           max_iter: int, cols: np.ndarray | None = None, rtol: float = 1e-5, skip_rtol: float = SKIP_RTOL,
           analytic_ka2: bool = True, shared: tuple[str, ...] | None = None):
    """Refine ``slots`` (see :func:`slots_for`) by LM, at most ``max_iter`` iterations, stopping when one
    lowers χ² by less than the fraction ``rtol``; returns (phases, globals, columns, scales, calc, χ²).

    After a rejected step λ grows (×4); where the trust region (each parameter's largest step) had cut
    the step back, the next λ's step is often the same one again. A step within ``skip_rtol`` (relative,
    see :func:`_same_step`) of the step just rejected is not evaluated (it is taken as rejected too and λ
    grows again); 0 evaluates every step. ``analytic_ka2``: the Kα2 ratio's derivative from the Kα2 peaks
    alone (:meth:`Model.columns` with ``line=1``; the columns are linear in it), not by a finite difference.
    ``shared`` (default :data:`SHARED_KINDS`): the parameter kinds whose derivatives come from one
    shared-profile render (:meth:`Model.derivative_columns`: each peak's profile computed once, the finite
    step taken in the peaks' centres, widths, η and areas), instead of one render per parameter; () for none
    (every column as before: a render per parameter). "ka2" there only with ``analytic_ka2``."""
    shared = SHARED_KINDS if shared is None else tuple(shared)
    lo, hi, hs, smax = (np.array(v) for v in zip(*(_slot_bounds(k, bounds) for k, _, _ in slots))) if slots else (
        np.zeros(0),) * 4
    theta = np.clip(np.array([_get(phases, g, s) for s in slots]), lo, hi)
    # A global parameter changes every column; otherwise only the refined phases are re-rendered.
    global_render = any(i is None for _, i, _ in slots)
    touched = {i for _, i, _ in slots if i is not None}

    def evaluate(t, base_cols=None):
        phs, gg = _set(phases, g, slots, t)
        if base_cols is None or global_render:
            c = model.columns(phs, gg)
        else:
            c = base_cols.copy()
            idx = sorted(touched)
            c[idx] = model.columns([phs[i] for i in idx], gg)
        a, _b, calc, chi2 = model.linear(c)
        return phs, gg, c, a, calc, chi2

    phs, gg, cols, a, calc, chi2 = evaluate(theta, cols)
    if not slots:
        return phs, gg, cols, a, calc, chi2
    lam = 1e-3
    grid = model.grid
    dx = (grid[-1] - grid[0]) / (grid.size - 1)
    for _ in range(max_iter):
        total = a @ cols if len(cols) else np.zeros_like(grid)
        D = np.empty((len(slots), grid.size))
        dtot = None
        # ∂y/∂2θ of every phase with a free lattice scale, in one call (row by row the same numbers).
        s_rows = sorted({i for kind, i, _ in slots if kind == "s"})
        grads = dict(zip(s_rows, _gradient(cols[s_rows], dx))) if s_rows else {}
        fd = []  # (row of D, phase position, state, step): rendered together below
        sh, ka2_row = [], None  # (row of D, phase position or None, state, globals, step): the shared-profile render
        for r, (kind, i, j) in enumerate(slots):
            if kind in ("zero", "disp"):
                if dtot is None:
                    dtot = _gradient(total, dx)
                D[r] = -dtot if kind == "zero" else -dtot * model.cos_theta
            elif kind == "s":
                # d → s·d moves every peak of the phase by ∂2θ/∂s = −2 tanθ / s (rad): no render needed.
                D[r] = a[i] * grads[i] * model.tan_theta * (2.0 * _DEG / phs[i].s)
            elif kind == "ka2" and analytic_ka2 and len(model.optics.wavelengths_A) > 1:
                if "ka2" in shared and gg.kalpha2_ratio > 0:
                    ka2_row = r  # with the shared-profile render below
                else:
                    # The columns are linear in the Kα2 ratio: its derivative is the Kα2 peaks alone (half a render).
                    D[r] = a @ model.columns(phs, gg, line=1)
            else:
                # A finite step: a phase's parameter renders that phase alone, a global one every phase; either
                # from the shared-profile render when its kind is shared (the width alone of the globals).
                t2 = theta[r] + (hs[r] if theta[r] + hs[r] <= hi[r] else -hs[r])
                p2, g2 = _set(phs, gg, [slots[r]], [t2])
                if kind in shared and (i is not None or kind == "width"):
                    sh.append((r, i, None if i is None else p2[i], g2, t2 - theta[r]))
                elif i is not None:
                    fd.append((r, i, p2[i], t2 - theta[r]))
                else:
                    D[r] = (a @ model.columns(p2, g2) - total) / (t2 - theta[r])
        if sh or ka2_row is not None:
            rows = [f[0] for f in sh] + ([] if ka2_row is None else [ka2_row])
            D[rows] = model.derivative_columns(phs, gg, a, [f[1:] for f in sh], ka2=ka2_row is not None)
        if fd:
            for (r, i, _, step), col in zip(fd, model.columns([f[2] for f in fd], gg)):
                D[r] = a[i] * (col - cols[i]) / step
        Dw = _projected(model, cols, D)
        JtJ = Dw @ Dw.T
        Jtr = Dw @ (model.sw * (model.y - calc))
        improved, rel = False, 0.0
        rejected = None  # the last step (in units of smax) that raised χ²
        for _ in range(6):
            A = JtJ + lam * np.diag(np.diag(JtJ) + 1e-30)
            try:
                dt = np.linalg.solve(A, Jtr)
                # Parameters at a bound that the step pushes outwards are held there and the step
                # re-solved for the others (clipping alone would let them drag the rest).
                held = ((theta <= lo) & (dt < 0)) | ((theta >= hi) & (dt > 0))
                if held.any():
                    free = ~held
                    dt = np.zeros_like(dt)
                    if free.any():
                        dt[free] = np.linalg.solve(A[np.ix_(free, free)], Jtr[free])
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            over = np.max(np.abs(dt) / smax) if dt.size else 0.0
            if over > 1:
                dt = dt / over  # a trust region: no parameter moves further than its largest step
            t_new = np.clip(theta + dt, lo, hi)
            move = (t_new - theta) / smax
            if rejected is not None and _same_step(move, rejected, skip_rtol):
                lam *= 4  # the step the trust region cut back is the one just rejected: not evaluated again
                continue
            res = evaluate(t_new, cols)
            if res[5] < chi2:
                rel = (chi2 - res[5]) / chi2
                theta = t_new
                phs, gg, cols, a, calc, chi2 = res
                lam = max(lam / 3, 1e-7)
                improved = True
                break
            rejected = move
            lam *= 4
        if not improved or rel < rtol:
            break
    return phs, gg, cols, a, calc, chi2
