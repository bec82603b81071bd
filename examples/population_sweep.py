"""Researchers: 2,000 virtual patients with log-normal variability in clearance and central
volume (illustrative 30 % CV), the first month of the standard IV course, with per-session
metrics as a tidy table.

    python examples/population_sweep.py
"""

import numpy as np

import ketasim
from ketasim.metrics import course_metrics
from ketasim.plotting import plot_course

rng = np.random.default_rng(20240601)          # one seed: identical results on every run
n = 2000
params = {"CL": 95.2 * rng.lognormal(0.0, 0.3, n), "V1": 133.0 * rng.lognormal(0.0, 0.3, n)}
weights = rng.uniform(50, 110, n)
doses = ketasim.standard_iv_course(months=1)    # mg from 0.5 mg/kg x 70 kg; see note below
times = ketasim.time_grid(30 * 24, 0.1)
res = ketasim.simulate("ketamine-iv", doses, times, params=params, weight_kg=weights)
m = course_metrics(res, thresholds=(0.3,))
print("Cmax session 1, ng/mL: median %.0f (5-95 %%: %.0f-%.0f)" % tuple(
    np.percentile(m.cmax_ng_ml[:, 0], [50, 5, 95])))
print("hours with occupancy >= 30 %%, session 1: median %.2f"
      % np.median(m.time_above_h[0.3][:, 0]))
plot_course(res).savefig("population.png", dpi=120)
try:
    df = res.to_dataframe()                     # needs pandas (pip install 'ketasim[dataframe]')
    print(df.groupby("subject")["plasma_ng_ml"].max().describe())
except ImportError:
    pass
# Note: the dose here is the same 35 mg for every subject; for mg/kg dosing build one course per
# weight band, or scale with doses.scaled(weight / 70).
