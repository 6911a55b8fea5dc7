"""The distance nearby search shows and filters by is the WGS-84 geodesic: the curvature-
corrected chord agrees with geopy's geodesic (Karney) to within 5 mm up to 50 km (the largest radius), at any
latitude and across the antimeridian."""

from __future__ import annotations

import random

import numpy as np
from geopy.distance import geodesic

from app.discovery.geodesy import distance_m


def test_chord_distance_matches_geopy_geodesic() -> None:
    rnd = random.Random(5)
    worst = 0.0
    for _ in range(2000):
        lat0 = rnd.uniform(-89.9, 89.9)
        lon0 = rnd.choice([rnd.uniform(-180, 180), rnd.uniform(179.9, 180)])
        d = rnd.choice([rnd.uniform(0, 100), rnd.uniform(0, 5000), rnd.uniform(0, 50_000)])
        p = geodesic(meters=d).destination((lat0, lon0), rnd.uniform(0, 360))
        ours = float(distance_m(lat0, lon0, np.array([p.latitude]), np.array([p.longitude]))[0])
        worst = max(worst, abs(ours - geodesic((lat0, lon0), (p.latitude, p.longitude)).meters))
    assert worst < 0.005, worst
