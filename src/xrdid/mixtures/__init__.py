r"""Mixture phase identification: which library phases a powder pattern contains, in what weight fractions.

Method (whole-pattern fitting with a physical model of the scan and several competing hypotheses):

1. **Model** (:mod:`xrdid.mixtures.model`, :mod:`xrdid.mixtures.profile`). The measured pattern y(2θ)
   (weights w = 1/y, counting statistics) is fitted as

   .. math:: y_{calc}(2θ) = \sum_i S_i\, P_i(2θ) + \sum_{k=0}^{K} b_k T_k(t)

   where :math:`P_i` is phase i at absolute scale: per reflection :math:`|F|^2 m \cdot LP \cdot T_{MD}`,
   Thompson–Cox–Hastings pseudo-Voigt profiles (the training renderer's ``_tch``) for Kα1 and, with
   the file's or the anode's Kα2, Kα2 (ratio from the file, else refined). Per phase: the lattice
   (isotropic scale s plus the symmetry-allowed anisotropic deformations of the reciprocal metric:
   0 parameters for cubic, up to 5 for triclinic), Scherrer crystallite size (Lorentzian), microstrain
   (Gaussian, 4ε tanθ) and March–Dollase preferred orientation on the low-index axis that earns it.
   Globally: zero shift, sample displacement (Δ2θ ∝ cos θ), a factor on the instrument's Caglioti
   width. :math:`T_k` are Chebyshev polynomials, one per ~6° of range (free signs: air scatter,
   fluorescence, amorphous humps), and the scales :math:`S_i \ge 0`; both are solved exactly for any
   nonlinear parameters (variable projection, :mod:`xrdid.mixtures.refine`).
2. **Criterion.** A hypothesis (a set of phases, refined) is scored by a BIC with unknown variance and
   an effective sample size, plus Gaussian priors on how far each phase departs from its reference:

   .. math:: C = N_{eff}\ln χ^2 + k \ln N_{eff} + \sum_i \Big[\Big(\frac{s_i-1}{σ_a}\Big)^2 + \sum_j\Big(\frac{q_{ij}}{σ_a}\Big)^2 + \Big(\frac{\ln r_i}{σ_r}\Big)^2\Big]

   :math:`N_{eff}` = 2θ range / FWHM: on real scans the residual is model error correlated over a peak
   width, so a χ² difference is worth about one observation per resolution element (Bérar & Lelann,
   J. Appl. Cryst. 24 (1991) 1), not one per point. k counts each phase's parameters (scale, lattice,
   size, strain, texture). :math:`σ_a` (``FitSettings.lattice_sigma``, 0.5 %) says how well a reference
   cell matches a measured one; the searched range is 4σ. The priors are what make an isostructural
   stand-in, stretched by a few per cent onto the true phase's peaks, lose to the right phase.
   Peaks of a phase missing from the library would dominate χ² (C then credits a real minor phase with
   little, since ΔC = N_eff ln(χ²_before/χ²_after)): before the search, every library phase that
   correlates with the data is fitted at once with the background (non-negative scales, screening
   shapes, each phase's lattice scale chosen again against what the others leave), and a peak that this
   union of the library leaves standing above the noise, predicting under a tenth of it
   (``foreign_share``), is given no weight in the search, with N_eff reduced in proportion
   (:func:`xrdid.mixtures.fit.foreign_peak_mask`). Such peaks are still reported (step 5). The misfit
   the union leaves over the other peaks it explains only in part (``foreign_floor``) is taken off
   every hypothesis's χ² before :math:`\ln χ^2` (at most 80 % of it), so that it does not inflate the
   variance that divides a phase's gain (:func:`xrdid.mixtures.fit.foreign_residual_floor`).
3. **Search** (:func:`xrdid.mixtures.fit.identify_phases`). A beam of hypotheses (``beam_width``)
   grows one phase per level: candidates come from screening every library phase, at every lattice
   scale of a fine grid, against the current residual (the χ² drop of adding it alone, one matrix
   product per phase); the best ``candidates`` are each added at the lattice scale that a batched
   χ²-drop scan of one render, mapped to ±3 screening steps, puts it at; a child is
   kept if it lowers C (in the beam a phase's symmetry-allowed anisotropic lattice changes count in k only
   once they have been refined, ``beam_aniso_params``) and its coverage (below) is at least ``beam_min_coverage`` (= ``min_coverage``,
   0.7; see FitSettings for the trade-off of a looser gate). A child that lowers C but covers between
   ``beam_replace_coverage`` (0.6) and that, if its crystal system allows an anisotropic change, first
   gets a few LM steps of its own cell (isotropic and
   symmetry-allowed anisotropic lattice, the others held) and is tested again. The best
   ``final_hypotheses`` within ``swap_margin`` of the best get the full physics (anisotropic lattice, strain, displacement, texture,
   Kα2 ratio; positions first with blurred peaks, for a wide basin; no texture for a phase alone whose
   calculated intensity is less than ``lone_texture_share`` (0.5) of the pattern's: there a texture would
   be fitted to the peaks of phases the library lacks), and phases that no longer lower
   C, or whose coverage is below ``min_coverage`` (0.7), or with ``max_params_at_limits`` kinds of parameter (lattice, strain,
   size, texture) at their bounds (the model bent the phase into a hump or another phase's peaks),
   or whose isotropic lattice scale ends more than ``max_lattice_departure`` (2) :math:`σ_a` from its
   reference (a real sample's cell is closer than that to its reference; a phase stretched further is
   a stand-in whose peaks were put on those of a phase the library lacks), or whose refined March–Dollase
   r ends outside 1/``max_march_dollase``–``max_march_dollase`` (0.6–1.67: a stand-in bent onto such peaks
   by an extreme texture), are pruned (with ``cell_restarts``, off, a phase with anisotropic lattice changes
   that the criterion needs is first refined again from restarted cells: a few isotropic scales about its
   reference at its reference cell shape, blurred LM steps of its own cell; a wrong basin of those changes
   left true low-symmetry phases of synthetic mixtures covering 0.6). Then the best set is completed (``complete_rounds``, 5): the
   screening's best ``complete_candidates`` for what it leaves are placed as in the beam, without the
   beam's coverage gate, and the one whose quick fit lowers C most (by more than ``complete_margin``, 10)
   gets the full refinement and its pruning; it is kept if C then drops by more than the margin and it
   holds at least ``complete_min_fraction`` (5 wt%) of the set, and the next round starts from it (a
   real phase placed at its reference cell shape, size and texture often covers 0.5–0.7 and fails the
   beam's gate; a four- or five-phase set then lost it for good). Then each phase is swapped for the screening's best
   replacements (refined the same way): a better C is taken; swaps within ``alternative_margin``
   (10, "strong evidence" in BIC units) are reported as the phase's alternatives (polymorphs,
   isostructural or same-formula phases the data cannot tell apart), and other phase sets within the
   margin as alternative sets.
   Coverage = :math:`\sum \min(m_i, \max(y - (y_{calc} - m_i), 0)) / \sum m_i` with
   :math:`m_i = S_iP_i`: the fraction of the phase's calculated intensity that the data contain once
   everything else is subtracted; it rejects a phase fitted to a few peaks while predicting others
   that are not there. With ``coverage_window`` (off) the test after the full refinement sums both
   over each of the phase's lines (points within that many FWHM of it) before taking the minimum,
   forgiving a profile drawn a little wider, narrower or off the measured one.
4. **Weight fractions** (Hill & Howard, J. Appl. Cryst. 20 (1987) 467): with F per unit cell of
   volume V, :math:`S ∝ v/V^2` (v the volume fraction), so

   .. math:: W_i = \frac{S_i Z_i M_i V_i}{\sum_j S_j Z_j M_j V_j}

   with :math:`Z_iM_i` the cell mass and :math:`V_i` the refined cell volume. Micro-absorption
   (Brindley) is corrected when the grains' radius is given (``brindley_radius_um``, ``xrdid phases
   --grain-radius``; :mod:`xrdid.mixtures.absorption`): :math:`W_i \propto S_iZ_iM_iV_i/\tau_i`. Left
   out: amorphous content (fractions are relative to the crystalline phases found), anisotropic size
   broadening.
5. **Not in the library** (:mod:`xrdid.mixtures.peaks`): peaks of the final residual that stand
   significantly above the noise (σ from counting statistics × the GoF) are reported with position,
   height and area; the verdict says when they carry more than ``unexplained_warn`` of the diffracted
   intensity, or when no phase explains the pattern at all. When those peaks index on a found phase's
   cell doubled beyond chance (:mod:`xrdid.mixtures.superstructure`), that phase stands on the sublattice
   of a phase the library lacks: it is withdrawn from the answer into ``stand_ins``
   (``withdraw_superstructure_stand_ins``) and the others' fractions renormalised.
6. **Outputs**: per phase the weight fraction, a confidence (coverage × (1 − exp(−ΔC/10)), ΔC the rise
   of C without the phase), the refined cell, lattice scale, size, strain and texture, and the
   alternatives; for the fit Rwp, Rexp, GoF, zero shift, displacement, the unexplained peaks, the
   verdict; the figure (:mod:`xrdid.mixtures.plot`).

Library phases of the same (reduced formula, space group) are not both tried in one set. Scoring
against labelled mixtures and the fixed tuning / held-out split: :mod:`xrdid.mixtures.evaluate`.
"""

from xrdid.mixtures.fit import FitSettings, MixtureFit, PhaseResult, identify_phases
from xrdid.mixtures.library import Library, LibraryError, LibraryPhase, NoPhaseOfElements, default_cache_dir, load_library
from xrdid.mixtures.pattern import identify_in_pattern, two_theta_of

__all__ = [
    "FitSettings",
    "Library",
    "LibraryError",
    "LibraryPhase",
    "MixtureFit",
    "NoPhaseOfElements",
    "PhaseResult",
    "default_cache_dir",
    "identify_in_pattern",
    "identify_phases",
    "load_library",
    "two_theta_of",
]
