"""Peaks the fit does not explain: where the data stand significantly above the calculated pattern.

The residual y − y_calc is smoothed over about half a peak width and compared with its noise,
σ = √y_calc (counting statistics) inflated by the fit's goodness of fit (model error is part of what a
real residual is made of). A local maximum is reported when it stands ``n_sigma`` σ above zero, is at
least half a peak width wide, and its height is at least ``min_relative`` of the strongest observed peak
above the background: a peak of a phase the library does not hold. Its area is integrated over the
contiguous positive part of the residual around it.
"""

from __future__ import annotations

import math

import numpy as np


def unexplained_peaks(
    x: np.ndarray,
    y: np.ndarray,
    calc: np.ndarray,
    background: np.ndarray,
    fwhm_deg: float,
    *,
    gof: float = 1.0,
    n_sigma: float = 6.0,
    min_relative: float = 0.02,
) -> list[dict]:
    """Unexplained peaks: [{two_theta_deg, height, area, relative_height}], strongest first.

    ``relative_height`` is the peak's height over the strongest net (background-subtracted) observed
    height, in 0–1.
    """
    from scipy.ndimage import uniform_filter1d

    step = (x[-1] - x[0]) / (x.size - 1)
    k = max(1, round(0.5 * fwhm_deg / step))
    resid = uniform_filter1d(y - calc, k, mode="nearest")
    sigma = np.sqrt(np.maximum(calc, 1.0)) * max(gof, 1.0) / math.sqrt(k)
    net_max = float(np.max(uniform_filter1d(y - background, k, mode="nearest")))
    if not net_max > 0:
        return []
    # Local maxima of the smoothed residual (plateaus count once) whose positive lobe is at least half a
    # peak width wide: narrower excursions are noise or spikes, not a diffraction peak.
    width_pts = max(1.0, 0.5 * fwhm_deg / step)
    inner = (resid[1:-1] > resid[:-2]) & (resid[1:-1] >= resid[2:]) & (resid[1:-1] > 0)
    idx = np.flatnonzero(inner) + 1
    out = []
    for i in idx:
        h = float(resid[i])
        if h < n_sigma * sigma[i] or h < min_relative * net_max:
            continue
        lo = i
        while lo > 0 and resid[lo - 1] > 0:
            lo -= 1
        hi = i
        while hi < resid.size - 1 and resid[hi + 1] > 0:
            hi += 1
        if hi - lo + 1 < width_pts:
            continue
        area = float(np.sum(resid[lo : hi + 1]) * step)
        out.append({"two_theta_deg": round(float(x[i]), 4), "height": round(h, 3), "area": round(area, 3),
                    "relative_height": round(h / net_max, 4)})
    out.sort(key=lambda p: -p["height"])
    return out
