r"""Mixture phase identification: which library phases a powder pattern contains, in what weight fractions.

Method (whole-pattern fitting, a simplified automatic Rietveld/Le Bail-free quantification):

1. **Model.** The measured pattern y(2θ) (weights :math:`w = 1/y`, counting statistics) is fitted as

   .. math:: y_{calc}(2θ) = \sum_i S_i\, P_i(2θ;\, s_i, L_i, z, c, ρ) + \sum_{k=0}^{K} b_k T_k(t)

   where :math:`P_i` is phase i rendered at absolute scale (:func:`xrdid.mixtures.profile.render_phase`:
   :math:`|F|^2 m \cdot LP` per reflection, pseudo-Voigt TCH profiles, Kα1 + ρ·Kα2), :math:`T_k` are
   Chebyshev polynomials on the 2θ range (K = 12, free signs: air scatter, fluorescence, amorphous humps),
   and the scale factors :math:`S_i \ge 0`. Per phase, two nuisances are refined: an isotropic lattice
   scale :math:`s_i` (d → s·d, within ±2.5 %: DFT references are ~1–2 % too large) and a Scherrer
   crystallite size :math:`L_i`; globally a zero shift z (±0.3°), a factor c on the instrument's Caglioti
   U, V, W, and the Kα2/Kα1 ratio ρ (when the wavelength is a known anode's Kα1; fixed if given).
2. **Screening.** Every library phase is rendered once, at every lattice scale of a 0.1 % grid, with
   broadened peaks so the grid step is never larger than a peak. Given the current fit's weighted
   residual :math:`r = W(y - y_{calc})`, adding a column p alone lowers χ² by :math:`(r\cdot p)^2 /
   (p^T W p)` (r is orthogonal to the current columns); candidates are ranked by their best gain over
   the scales, all in one matrix product per phase.
3. **Greedy forward selection.** The best ``top_k`` candidates are each added to the current model and
   refined jointly (bounded weighted least squares, :func:`scipy.optimize.least_squares`, Jacobian by
   re-rendering only what a parameter changes); the one with the lowest χ² is accepted if it lowers χ² by
   at least ``min_significance`` (3 %) of χ² *and* its coverage is at least ``min_coverage`` (0.65), else
   it is rejected and the next candidates are tried; the loop stops when none qualifies.
   Coverage = :math:`\sum \min(m_i, \max(y - (y_{calc} - m_i), 0)) / \sum m_i` with :math:`m_i = S_iP_i`:
   the fraction of the phase's calculated intensity that the data actually contain once everything else
   is subtracted. A χ²-based test (F-test, BIC) alone accepts almost anything on real data, whose
   residuals are dominated by model error (texture, phases missing from the library), not by noise;
   coverage rejects a phase fitted to one unexplained peak while predicting others that are not there.
4. **Final refinement and pruning**: all parameters refined together; any phase whose removal raises χ²
   by less than 3 % or whose coverage fell below 0.65 is dropped (weakest first) and the fit repeated.
5. **Weight fractions** (Hill & Howard, J. Appl. Cryst. 20 (1987) 467): with intensities
   :math:`I = S\,|F|^2 m\, LP` and F per unit cell of volume V, the scale is
   :math:`S ∝ v/V^2` (v the phase's volume fraction), so

   .. math:: W_i = \frac{S_i Z_i M_i V_i}{\sum_j S_j Z_j M_j V_j}

   with :math:`Z_iM_i` the cell mass and :math:`V_i = s_i^3 V_i^{lib}` the refined cell volume.
   Left out: micro-absorption (Brindley), preferred orientation, amorphous content (fractions are
   relative to the crystalline phases found), anisotropic broadening.
6. **Outputs**: per phase the weight fraction, confidence = coverage × (1 − exp(−significance/0.05))
   (0–1: both how much the fit needs the phase and how well its own peaks are supported), refined lattice
   scale and size; for the fit, :math:`R_{wp} = \sqrt{\sum w(y-y_{calc})^2/\sum w y^2}`, :math:`R_{exp}`
   and GoF = Rwp/Rexp.

Library phases are deduplicated by (reduced formula, space group) within one fit: once one rutile CIF is
in, other rutile CIFs are not tried (polymorphs, different space groups, still are).
"""

from xrdid.mixtures.fit import FitSettings, MixtureFit, PhaseResult, identify_phases
from xrdid.mixtures.library import Library, LibraryError, LibraryPhase, default_cache_dir, load_library
from xrdid.mixtures.pattern import identify_in_pattern, two_theta_of

__all__ = [
    "FitSettings",
    "Library",
    "LibraryError",
    "LibraryPhase",
    "MixtureFit",
    "PhaseResult",
    "default_cache_dir",
    "identify_in_pattern",
    "identify_phases",
    "load_library",
    "two_theta_of",
]
