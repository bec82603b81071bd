"""A missed and a delayed session, against the course as planned.

The standard IV course as planned; the same course with session 4 (day 7) missed; and with
the first monthly session (day 56) a week late. Drawn with plot_compare: each run in its own
colour, close-up of the first session and the whole course.

    python examples/03_missed_session.py           # writes missed_session.png
"""

import numpy as np
from _save import SMALL, save

import ketasim
from ketasim.plotting import plot_compare, run_course

months = 3 if SMALL else 6
planned = ketasim.standard_iv_course(0.5, 70, months)


def edit(doses, drop=None, shift=None, days=0.0):
    """A copy of a course with session ``drop`` removed or session ``shift`` moved by
    ``days`` (sessions count from 1)."""
    t = doses.time_h.copy()
    keep = np.ones(len(t), bool)
    if drop:
        keep[drop - 1] = False
    if shift:
        t[shift - 1] += 24 * days
    return ketasim.Doses(t[keep], doses.amount_mg[keep], tuple(np.array(doses.route)[keep]),
                         doses.duration_h[keep])


runs = [run_course("ketamine-iv", planned, 70, label="as planned"),
        run_course("ketamine-iv", edit(planned, drop=4), 70, label="session 4 missed"),
        run_course("ketamine-iv", edit(planned, shift=9, days=7), 70,
                   label="day-56 session a week late")]
fig = plot_compare(runs, title="Standard IV course: as planned, a missed and a delayed session")
save(fig, "missed_session")
for r in runs:   # the schematic plasticity index on day 14 and on day 60
    t = r.course.times
    at = [float(np.interp(d * 24, t, r.course.plasticity)) for d in (14, 60)]
    print(f"{r.label}: schematic plasticity index day 14: {at[0]:.2f}, day 60: {at[1]:.2f}")
