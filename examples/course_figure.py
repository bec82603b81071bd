"""Educators: the standard IV course and the Spravato label course, side by side.

    python examples/course_figure.py            # writes course-iv.png and course-nasal.png
"""

import ketasim
from ketasim.plotting import plot_course

iv = ketasim.simulate("ketamine-iv", ketasim.standard_iv_course(weight_kg=70, months=6),
                      ketasim.time_grid(200 * 24, 0.05), weight_kg=70)
plot_course(iv).savefig("course-iv.png", dpi=120)

nasal = ketasim.simulate("esketamine-nasal", ketasim.spravato_course(84, "biweekly", 6),
                         ketasim.time_grid(200 * 24, 0.05))
plot_course(nasal).savefig("course-nasal.png", dpi=120)
print("wrote course-iv.png and course-nasal.png")
