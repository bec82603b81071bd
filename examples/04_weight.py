"""How body weight changes the curve.

Left: a weight-based dose (0.5 mg/kg over 40 minutes, so a heavier patient gets more drug).
Right: the same fixed 35 mg for everyone. Patients of 50, 70 and 100 kg; ketasim scales the
model's volumes and clearances with weight as the preset's sources do.

    python examples/04_weight.py                   # writes weight.png
"""

from _save import save
from matplotlib.figure import Figure

import ketasim
from ketasim.plotting import RUN_COLORS, plot_concentrations

times = ketasim.time_grid(8, 1 / 60)
fig = Figure(figsize=(13, 5.2), layout="constrained")
axes = fig.subplots(1, 2, sharey=True)
for wt, col in zip((50, 70, 100), RUN_COLORS):
    per_kg = ketasim.Doses.single(0.5 * wt, "iv", duration_h=40 / 60)
    fixed = ketasim.Doses.single(35.0, "iv", duration_h=40 / 60)
    for ax, d in zip(axes, (per_kg, fixed)):
        r = ketasim.simulate("ketamine-iv", d, times, weight_kg=wt, outputs=["plasma"])
        plot_concentrations(r, ["plasma"], ax=ax, label=f"{wt} kg", color=col)
axes[0].set_title("0.5 mg/kg (25, 35, 50 mg)", loc="left", fontsize=13)
axes[1].set_title("35 mg for everyone", loc="left", fontsize=13)
axes[1].set_ylabel("")
fig.suptitle("Racemic ketamine (S + R) in plasma after one 40-minute infusion, by body weight",
             fontsize=15, fontweight="bold")
save(fig, "weight")
