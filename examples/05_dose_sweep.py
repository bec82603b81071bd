"""A small sweep: how peak concentration and peak occupancy grow with the dose.

Eight doses from 0.1 to 1.5 mg/kg (one 40-minute infusion, 70 kg), per-session metrics from
ketasim.engine.session_metrics. The concentration grows in proportion to the dose (linear
pharmacokinetics); the model-predicted occupancy grows less than in proportion (competitive
binding, C / (Ki + C): it levels off towards 100 % only at far higher concentrations).

    python examples/05_dose_sweep.py               # writes dose_sweep.png
"""

import numpy as np
from _save import SMALL, save
from matplotlib.figure import Figure

import ketasim
from ketasim.engine import session_metrics
from ketasim.plotting import OKABE_ITO

doses_mg_per_kg = np.linspace(0.1, 1.5, 4 if SMALL else 8)
cmax, occ = [], []
for x in doses_mg_per_kg:
    m = session_metrics("ketamine-iv", ketasim.Doses.single(70 * x, "iv", duration_h=40 / 60),
                        weight_kg=70.0, metrics=("cmax", "peak_occupancy"), horizon_h=12.0)
    cmax.append(m["cmax"][0])
    occ.append(m["peak_occupancy"][0] * 100)

fig = Figure(figsize=(13, 5), layout="constrained")
a1, a2 = fig.subplots(1, 2)
a1.plot(doses_mg_per_kg, cmax, "o-", color=OKABE_ITO["blue"], lw=2.2, ms=8)
a1.set_ylabel("peak ketamine (S + R), ng/mL", fontsize=12)
a2.plot(doses_mg_per_kg, occ, "o-", color=OKABE_ITO["green"], lw=2.2, ms=8)
cal = ketasim.load_model("ketamine-iv").default_calibration     # the preset's default Ki
a2.set_ylabel(f"peak occupancy, %\n(MODEL-PREDICTED, {cal} Ki)", fontsize=12)
for ax in (a1, a2):
    ax.axvline(0.5, color="0.5", ls=":", lw=1.2)
    ax.text(0.52, 0.04, "0.5 mg/kg: the dose of\nmost depression trials",
            transform=ax.get_xaxis_transform(),
            fontsize=11, color="0.3")
    ax.set_xlabel("dose, mg/kg over 40 min (70 kg)", fontsize=12)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=12)
fig.suptitle("Dose sweep: concentration grows in proportion, occupancy less than in proportion",
             fontsize=15, fontweight="bold")
save(fig, "dose_sweep")
