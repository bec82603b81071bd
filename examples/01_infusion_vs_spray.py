"""One IV infusion of racemic ketamine against one esketamine nasal spray.

0.5 mg/kg racemic ketamine over 40 minutes (70 kg: 35 mg) against 56 mg of esketamine nasal
spray (Spravato, two devices): plasma concentration of the drug given, and model-predicted
NMDA-receptor occupancy, over the first eight hours.

    python examples/01_infusion_vs_spray.py        # writes infusion_vs_spray.png
"""

from _save import save
from matplotlib.figure import Figure

import ketasim
from ketasim.plotting import OKABE_ITO, plot_concentrations

times = ketasim.time_grid(8, 1 / 60)                       # 8 hours, one point a minute
iv = ketasim.simulate("ketamine-iv", ketasim.Doses.single(35.0, "iv", duration_h=40 / 60),
                      times)
nasal = ketasim.simulate("esketamine-nasal", ketasim.Doses.single(56.0, "intranasal"), times)

fig = Figure(figsize=(13, 5.2), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
# plot_concentrations draws on a given Axes; label/color set the legend entry and colour
plot_concentrations(iv, ["plasma"], ax=ax1, label="IV 35 mg over 40 min",
                    color=OKABE_ITO["blue"])
plot_concentrations(nasal, ["plasma"], ax=ax1, label="nasal 56 mg", color=OKABE_ITO["vermillion"])
ax1.set_title("Plasma concentration of the drug given", loc="left", fontsize=13)
for r, lab, col in ((iv, "IV 35 mg over 40 min", "blue"), (nasal, "nasal 56 mg", "vermillion")):
    ax2.plot(times, r.occupancy * 100, color=OKABE_ITO[col], lw=2.2, label=lab)
# occupancy from the presets' default Ki calibration (in vivo); the in-vitro Ki about doubles it
ax2.set_title(f"NMDA occupancy, MODEL-PREDICTED ({iv.model.default_calibration} Ki)", loc="left",
              fontsize=13)
ax2.set_xlabel("hours", fontsize=12)
ax2.set_ylabel("% of receptors", fontsize=12)
ax2.set_ylim(bottom=0)
ax2.tick_params(labelsize=12)          # as the left panel (plot_concentrations' style)
ax2.grid(alpha=0.3)
ax2.spines[["top", "right"]].set_visible(False)
ax2.legend(frameon=False, fontsize=11, loc="upper right")
fig.suptitle("One IV infusion of racemic ketamine vs one esketamine nasal spray (70 kg)",
             fontsize=15, fontweight="bold")
save(fig, "infusion_vs_spray")
# Peak numbers for the class (ng/mL and %):
for name, r in (("IV", iv), ("nasal", nasal)):
    c = r.concentration("plasma")
    print(f"{name}: peak {c.max():.0f} ng/mL at {times[c.argmax()] * 60:.0f} min, "
          f"peak occupancy {r.occupancy.max() * 100:.0f} %")
