"""The public functions' docstrings name every parameter they take and what they return."""

import inspect

import pytest

import ketasim
from ketasim.engine import session_metrics
from ketasim.metrics import course_metrics
from ketasim.plotting import plot_bands


def _section(doc: str, title: str) -> str:
    lines = inspect.cleandoc(doc).splitlines()
    for i in range(len(lines) - 1):
        if lines[i].strip() == title and set(lines[i + 1].strip()) == {"-"}:
            out = []
            for j in range(i + 2, len(lines)):
                if j + 1 < len(lines) and lines[j + 1].strip() and set(lines[j + 1].strip()) \
                        == {"-"} and lines[j].strip():
                    break
                out.append(lines[j])
            return "\n".join(out)
    return ""


def _documented(doc: str) -> set:
    names = set()
    for ln in _section(doc, "Parameters").splitlines():
        if ln and not ln[0].isspace():
            head = ln.split(" : ")[0] if " : " in ln else ln.split("  ")[0]
            names.update(w.strip() for w in head.split(","))
    return names


@pytest.mark.parametrize("fn", [ketasim.simulate, ketasim.population, ketasim.sweep,
                                course_metrics, session_metrics, plot_bands],
                         ids=lambda f: f.__name__)
def test_every_parameter_is_documented_and_the_return_value_too(fn):
    # (population had left out analyte, threads and keep_parameters; sweep seed, params,
    # chunk_size, scheduler, analyte, threads, progress and what it returns; course_metrics
    # what it returns; plot_bands times, ylabel and title)
    doc = fn.__doc__ or ""
    params = [p for p in inspect.signature(fn).parameters
              if p != "self" and not p.startswith("_")]     # (private: ketasim's own calls)
    missing = [p for p in params if p not in _documented(doc)]
    assert not missing, f"{fn.__name__}: undocumented parameters {missing}"
    assert _section(doc, "Returns").strip(), f"{fn.__name__}: no Returns section"


def test_result_output_states_the_units_of_every_output():
    """Result.output's docstring says what "internal units" are for each kind of output,
    and that the glutamate/plasticity outputs are schematic."""
    import inspect

    from ketasim.result import Result

    doc = inspect.getdoc(Result.output)
    for words in ("mg/L", "mg", "0-1", "SCHEMATIC", "baseline", "consolidation"):
        assert words in doc, words
