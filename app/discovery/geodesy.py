"""Distances on the WGS-84 ellipsoid, vectorised (numpy), for nearby search.

- `approx_m`: a local flat-ellipsoid metric at the mid-latitude (meridional and prime
  vertical radii of curvature). Second-order accurate: relative error ~(d/R)², i.e. < 3 m
  at 50 km, millimetres at a few km. Used to pre-select and order candidates.
- `geodesic_m`: Vincenty's inverse formula (mm accuracy; our distances are ≤ 50 km, far
  from the antipodal cases where it converges slowly). Used for the distances shown and
  for the radius test, so both agree with `geopy.distance.geodesic` to well under a metre.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

A = 6378137.0
F = 1 / 298.257223563
B = A * (1 - F)
E2 = F * (2 - F)
DEG = math.pi / 180

FloatArray = NDArray[np.float64]


def approx_m(lat0: float, lon0: float, lat: FloatArray, lon: FloatArray) -> FloatArray:
    """Fast distance (m) from (lat0, lon0) to each point; see module docstring."""
    mid = (lat + lat0) * (0.5 * DEG)
    s = np.sin(mid)
    w = 1.0 - E2 * s * s
    n = A / np.sqrt(w)  # prime vertical radius of curvature
    m = n * (1.0 - E2) / w  # meridional radius of curvature
    dlat = (lat - lat0) * DEG
    dlon = lon - lon0
    dlon = (dlon + 180.0) % 360.0 - 180.0  # across the antimeridian
    dx = n * np.cos(mid) * dlon * DEG
    dy = m * dlat
    result: FloatArray = np.sqrt(dx * dx + dy * dy)
    return result


def geodesic_m(lat0: float, lon0: float, lat: FloatArray, lon: FloatArray) -> FloatArray:
    """Vincenty inverse: ellipsoidal distance (m) from (lat0, lon0) to each point."""
    u1 = math.atan((1 - F) * math.tan(lat0 * DEG))
    sin_u1, cos_u1 = math.sin(u1), math.cos(u1)
    u2 = np.arctan((1 - F) * np.tan(lat * DEG))
    sin_u2, cos_u2 = np.sin(u2), np.cos(u2)
    big_l = ((lon - lon0 + 180.0) % 360.0 - 180.0) * DEG
    lam = big_l.copy()
    sin_sigma = cos_sigma = sigma = cos2_alpha = cos_2sm = lam  # bound below
    for _ in range(12):
        sin_lam, cos_lam = np.sin(lam), np.cos(lam)
        t1 = cos_u2 * sin_lam
        t2 = cos_u1 * sin_u2 - sin_u1 * cos_u2 * cos_lam
        sin_sigma = np.sqrt(t1 * t1 + t2 * t2)
        cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * cos_lam
        sigma = np.arctan2(sin_sigma, cos_sigma)
        safe = np.where(sin_sigma == 0, 1.0, sin_sigma)
        sin_alpha = cos_u1 * cos_u2 * sin_lam / safe
        cos2_alpha = 1.0 - sin_alpha * sin_alpha
        safe_c = np.where(cos2_alpha == 0, 1.0, cos2_alpha)
        cos_2sm = np.where(cos2_alpha == 0, 0.0, cos_sigma - 2 * sin_u1 * sin_u2 / safe_c)
        c = F / 16 * cos2_alpha * (4 + F * (4 - 3 * cos2_alpha))
        lam_prev = lam
        lam = big_l + (1 - c) * F * sin_alpha * (
            sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1 + 2 * cos_2sm * cos_2sm))
        )
        if np.all(np.abs(lam - lam_prev) < 1e-12):
            break
    u_sq = cos2_alpha * (A * A - B * B) / (B * B)
    big_a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    big_b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    delta_sigma = (
        big_b
        * sin_sigma
        * (
            cos_2sm
            + big_b
            / 4
            * (
                cos_sigma * (-1 + 2 * cos_2sm * cos_2sm)
                - big_b
                / 6
                * cos_2sm
                * (-3 + 4 * sin_sigma * sin_sigma)
                * (-3 + 4 * cos_2sm * cos_2sm)
            )
        )
    )
    result: FloatArray = np.where(sin_sigma == 0, 0.0, B * big_a * (sigma - delta_sigma))
    return result
