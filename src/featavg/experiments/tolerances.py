"""Tolerances of the "agrees / deviates" verdicts beside the theory.

They are loose on purpose: the closed forms hold for the idealised nets at a cluster center,
the measurements are trained nets at noisy test points; a deviation beyond them is worth a
look, not necessarily a bug.
"""

COS_MEAN_TOL = 0.05  # mean cosines: finite n and noise move them by a few 1/sqrt(d)
COS_MAX_TOL = 0.10  # a max |cos| over many unit x center pairs sits above 0 by chance
EXACT_RADIUS_TOL = 0.15  # relative: exact medians over test points vs the value at a center
PGD_RADIUS_TOL = 0.25  # relative: PGD upper-bounds the radius and is quantised by the grid
SLOPE_TOL = 0.10  # absolute, on a log-log slope

INV_SQRT_LABEL = "1/√|J_s|"  # the averaging cosine's closed form, as the report prints it
