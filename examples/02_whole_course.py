"""The whole standard IV course: the figure `ketasim course` draws.

Three infusions in week 1, two in week 2, one a week in weeks 3-5, then one a month, 0.5 mg/kg
over 40 minutes, 70 kg, six months. run_course simulates the course on a 5-minute grid that
also holds every infusion end, plus a 1-minute close-up of the first session.

    python examples/02_whole_course.py             # writes whole_course.png
"""

from _save import SMALL, save

from ketasim.plotting import plot_course, run_course

run = run_course("ketamine-iv", "standard-iv", weight_kg=70,
                 regimen="standard IV course (3/wk in week 1, 2 in week 2, weekly in "
                         "weeks 3-5, then every 4 weeks); 6 months",
                 until_h=60 * 24 if SMALL else None)
save(plot_course(run), "whole_course")
print("first-session peak: %.0f ng/mL" % run.metrics.cmax_ng_ml[0])
