"""Does monthly maintenance hold the schematic response? The course with and without it.

The standard IV course (0.5 mg/kg over 40 min; 3 + 2 sessions, then weekly in weeks 3-5) once
with monthly maintenance for six months and once stopping after the weekly phase, drawn side by
side with plot_compare. The consolidated (slow) plasticity index is SCHEMATIC: its time constants
are anchored to the clinical time course (one infusion's effect fading within about a week,
Zarate 2006; relapse a median 18 days after six infusions, Murrough 2013), not tuned to make
maintenance look good — whether a level holds is what the model shows.

    python examples/07_maintenance.py           # writes maintenance.png
"""

import numpy as np
from _save import SMALL, save

import ketasim
from ketasim.courses import STANDARD_IV_PHASES, Phase, course_from_phases
from ketasim.plotting import plot_compare, run_course

months = 4 if SMALL else 6
amount = 0.5 * 70
with_m = course_from_phases(list(STANDARD_IV_PHASES) + [Phase(every_days=28.0)], amount, "iv",
                            duration_h=40 / 60, months=months)
without = course_from_phases(list(STANDARD_IV_PHASES), amount, "iv", duration_h=40 / 60)
until = float(with_m.time_h[-1]) + 28 * 24
runs = [run_course("ketamine-iv", with_m, 70, label="with monthly maintenance", until_h=until),
        run_course("ketamine-iv", without, 70, label="induction only (no maintenance)",
                   until_h=until)]
fig = plot_compare(runs, title="Standard IV course with and without monthly maintenance "
                               "(schematic plasticity)")
save(fig, "maintenance")
for r in runs:   # the consolidated index just before each monthly session (schematic)
    t = r.course.times
    q = r.course.output("consolidation")
    days = (56, 84, 112, 140)
    at = [float(np.interp(d * 24 - 0.1, t, q)) for d in days if d * 24 < t[-1]]
    print(f"{r.label}: consolidated index before days {days[:len(at)]}: "
          + ", ".join(f"{v:.3f}" for v in at))
