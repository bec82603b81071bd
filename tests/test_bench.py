"""The benchmark suite: its reference machinery against closed forms, and a --quick run whose
errors against the Radau reference must be small (an accuracy check, never a timing check)."""

import json

import numpy as np
import pytest

import ketasim
from ketasim import bench, cli_bench
from ketasim.cli import main


def test_cli_lists_every_scenario():
    assert cli_bench.SCENARIO_NAMES == tuple(bench.SCENARIOS)


def test_reference_matches_closed_form_infusion_and_bolus():
    """The scipy side (events, segments, solve_ivp, expm loop) against the one-compartment
    closed form: a 2-h infusion of 60 mg, then a 40 mg bolus at 5 h (V 100 L, CL 50 L/h)."""
    model = bench.one_compartment_model()
    doses = ketasim.Doses([0.0, 5.0], [60.0, 40.0], ["iv", "iv"], [2.0, 0.0])
    t = np.linspace(0.0, 12.0, 97)
    k, V, R = 0.5, 100.0, 30.0
    c = np.where(t <= 2, R / (k * V) * (1 - np.exp(-k * t)),
                 R / (k * V) * (1 - np.exp(-2 * k)) * np.exp(-k * (t - 2)))
    c = c + np.where(t >= 5, 40.0 / V * np.exp(-k * (t - 5)), 0.0)
    sys_ = bench.build_systems(model, doses, ["central"])[0]
    ref = bench.solve_piecewise(sys_, t, "Radau", bench.REF_RTOL, bench.REF_ATOL)
    assert bench.rel_err(ref, c[None]) < 1e-10
    assert bench.rel_err(bench.expm_piecewise(sys_, t), c[None]) < 1e-12
    assert bench.rel_err(bench.solve_piecewise(sys_, t, "LSODA", 1e-8, 1e-12), c[None]) < 1e-6


def test_reference_pd_matches_engine_on_a_short_course():
    """The schematic PD written for solve_ivp agrees with ketasim's (two independent codes)."""
    model = ketasim.load_model("esketamine-nasal")
    doses = ketasim.Doses.single(56.0, "intranasal")
    t = ketasim.time_grid(24.0, 0.05)
    r = ketasim.simulate(model, doses, t)
    sys_ = bench.build_systems(model, doses, r.names)[0]
    ref = bench.solve_piecewise(sys_, t, "Radau", 1e-10, 1e-14)
    errs = bench.group_errors(r.data[0], ref, r.names)
    assert errs["pk"] < 1e-8
    assert errs["pd"] < 1e-5
    assert r.output("glutamate").max() > 1.1          # a surge happened: the check is not empty


def test_target_verdicts():
    assert bench._target("trivial", 150.0)["met"]
    v = bench._target("iv-pk speed", 15.0)
    assert not v["met"] and v["verdict"] == "gap: 10.0x short"
    assert bench._target("cli", 3.0)["verdict"] == "gap: 2.0x over"


@pytest.mark.slow
def test_quick_suite_errors_are_small(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["bench", "--quick", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    res = json.loads(out.read_text())
    rows = {r["name"]: r for r in res["scenarios"]}
    for r in rows.values():
        assert not r.get("error"), (r["name"], r.get("error"))
        assert f"| {r['name']} |" in table
    # ketasim against the Radau rtol 1e-12 reference: exact PK, PD within its tolerance
    for name in ("iv-pk", "iv-default", "spravato", "network-12"):
        errs = rows[name]["ketasim_err_by_kind"]
        assert errs["pk"] < 1e-7, (name, errs)
        assert errs.get("pd", 0.0) < 1e-5, (name, errs)
        # the reference itself agrees with an independent solver at its tolerance
        assert rows[name]["baselines"]["LSODA"]["err"] < 1e-5, name
    for name in ("iv-pk", "network-12"):    # and with the exact expm solution
        assert rows[name]["baselines"]["expm"]["err"] < 1e-9, name
    pop = [r for n, r in rows.items() if n.startswith("pop-")][0]
    assert pop["ketasim_err"] < 1e-7
    assert rows["throughput-5"]["ketasim_err"] < 1e-7
    assert rows["metrics-1m"]["ketasim_err"] < 1e-4      # per-session Cmax and AUC
    assert rows["trivial"]["ketasim_err"] < 1e-10


def test_quick_or_only_run_leaves_the_full_results_alone(tmp_path, monkeypatch, capsys):
    """A smoke run (--quick, --only) had replaced benchmarks/results.json, the README table's
    numbers, with its tiny-size ones: now it writes JSON only where --json says."""
    monkeypatch.chdir(tmp_path)
    full = tmp_path / "benchmarks" / "results.json"
    full.parent.mkdir()
    full.write_text('{"full": true}')
    assert main(["bench", "--quick", "--only", "trivial"]) == 0
    assert full.read_text() == '{"full": true}'
    assert "writes JSON only with --json" in capsys.readouterr().err
    assert main(["bench", "--quick", "--only", "trivial", "--json", "x/r.json"]) == 0
    assert json.loads((tmp_path / "x" / "r.json").read_text())["scenarios"][0]["name"] == "trivial"
    assert full.read_text() == '{"full": true}'


@pytest.mark.parametrize("argv, message", [
    (["--figure", "fig"], "expected a file ending in .png or .pdf or .svg"),
    (["--figure", "x.jpgg"], "expected a file ending in .png or .pdf or .svg"),
    (["--json", "adir.json"], "'adir.json' is a folder"),
    (["--json", "new.json/"], "'new.json/' ends in '/', a folder"),   # (had written new.json)
    # (any name had been written: a dose table replaced by the JSON)
    (["--json", "d.csv"], "'d.csv': expected a file ending in .json"),
    (["--json", "same.png", "--figure", "same.png"], "'same.png': expected a file ending in "
                                                     ".json"),
])
def test_bench_outputs_are_checked_before_the_suite_runs(tmp_path, monkeypatch, capsys, argv,
                                                         message):
    """--figure without a known suffix had saved NAME.png beside NAME (replacing it), a bad
    suffix failed only after the suite had run and replaced --json's file, a folder was found
    only at the end, and --json and --figure naming one file lost the JSON. Now each is refused
    before anything runs, and no file is touched."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir.json").mkdir()
    for name in ("fig.png", "keep.json", "d.csv"):
        (tmp_path / name).write_text("precious")
    called = []
    monkeypatch.setattr(bench, "run_suite", lambda *a, **k: called.append(1))
    args = ["bench", "--quick", "--only", "trivial"]
    args += argv if "--json" in argv else ["--json", "keep.json", *argv]
    try:
        rc = main(args)
    except SystemExit as exc:        # a usage error
        rc = exc.code
    assert rc != 0
    assert message in capsys.readouterr().err
    assert not called
    assert (tmp_path / "fig.png").read_text() == "precious"
    assert (tmp_path / "keep.json").read_text() == "precious"
    assert (tmp_path / "d.csv").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.json", "d.csv", "fig.png",
                                                          "keep.json"]


def test_bench_writes_its_json_and_figure_together(tmp_path, monkeypatch):
    """Both files or neither: a figure that cannot be written leaves the JSON file as it was."""
    import ketasim.plotting as plotting

    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.json").write_text("old")

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plotting, "figure_bytes", fail)
    assert main(["bench", "--quick", "--only", "trivial", "--json", "r.json", "--figure",
                 "f.png"]) != 0
    assert (tmp_path / "r.json").read_text() == "old"
    assert not (tmp_path / "f.png").exists()
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--quick", "--only", "trivial", "--json", "r.json",
                 "--figure", "f.png"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["quick"] is True
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_only_names_each_scenario_once_and_refuses_none(tmp_path, monkeypatch, capsys):
    """--only "" ran nothing and exited 0; --only trivial,trivial ran it twice, with two
    verdicts in the table."""
    monkeypatch.chdir(tmp_path)
    asked = []
    monkeypatch.setattr(bench, "run_suite", lambda names, **k: asked.append(names) or
                        {"scenarios": [], "machine": {}, "quick": True})
    monkeypatch.setattr(bench, "markdown_table", lambda r: "")
    for bad in ("", ","):
        assert main(["bench", "--quick", "--only", bad]) == 1
        assert "--only: got" in capsys.readouterr().err
    assert not asked
    assert main(["bench", "--quick", "--only", "trivial,trivial", "--only", "trivial"]) == 0
    assert asked == [["trivial"]]


def test_full_run_does_not_replace_another_programs_results(tmp_path, monkeypatch, capsys):
    """The full suite writes benchmarks/results.json where it is run: in another project's
    folder it had replaced that project's results.json with ketasim's. A file there that is
    not an earlier ketasim run is refused before the suite runs; an earlier run's is replaced."""
    monkeypatch.chdir(tmp_path)
    res = tmp_path / "benchmarks" / "results.json"
    res.parent.mkdir()
    res.write_text('{"theirs": [1, 2, 3]}')
    runs = []

    def fake_suite(*a, **k):
        runs.append(1)
        return {"quick": False, "machine": {"ketasim": "x"}, "scenarios": []}

    monkeypatch.setattr(bench, "run_suite", fake_suite)
    monkeypatch.setattr(bench, "markdown_table", lambda r: "table")
    assert main(["bench"]) == 1
    assert "not a ketasim benchmark's results" in capsys.readouterr().err
    assert res.read_text() == '{"theirs": [1, 2, 3]}' and not runs
    res.write_text(json.dumps({"machine": {"ketasim": "0.0.9"}, "scenarios": []}))
    assert main(["bench"]) == 0 and runs
    assert json.loads(res.read_text())["machine"]["ketasim"] == "x"


def test_quick_run_describes_its_course_length_readably(monkeypatch):
    """--quick printed its course as "0.0333333 months"; now it reads "24.4 h" (and the full
    suite's "6 months" stays as it was)."""
    assert bench.fmt_months(6.0) == "6 months"
    assert bench.fmt_months(1.0) == "1 month"
    assert bench.fmt_months(0.5) == "15.2 days"
    assert bench.fmt_months(1 / 30) == "24.4 h"
    # the title a quick iv-pk run gives (its run stood in for: the text is what is tested)
    seen = []
    monkeypatch.setattr(bench, "_one_subject", lambda name, title, *a, **k: seen.append(title)
                        or {"baselines": {"LSODA": {"ratio": 1.0, "err": 1.0}}, "ketasim_err": 1.0,
                            "notes": []})
    bench.sc_iv_pk({"months": 1 / 30})
    assert seen and "standard IV course, 24.4 h, 1-min grid" in seen[0] \
        and "0.0333" not in seen[0], seen


def _scaling_only_results():
    pts = [{"n": 1, "s": 1e-3, "rate": 1e6, "floor_rate": 1e7}]
    return {"scenarios": [{"name": "scaling", "title": "throughput against subjects, hourly "
                           "grid, 24.4 h", "subjects": 1, "timepoints": 25, "outputs": [],
                           "ketasim_s": None, "ketasim_err": None, "baselines": {},
                           "series": {"ketamine-iv, plasma": pts}, "lsoda_rate": 1e4,
                           "targets": [], "notes": ["LSODA 1e4 subject-timepoints/s"]}],
            "limits": {"write_floor_gb_s": 5.0, "chain_ns_per_step": 1.0},
            "settings": {"reference": "Radau rtol 1e-12 atol 1e-16", "months": 1 / 30,
                         "repeats": 2},
            "machine": {"ketasim": "x", "python": "3", "numpy": "2", "scipy": "1",
                        "numba": "0", "cpus": 2, "threads": 2, "machine": "m",
                        "load_1min": 0.0, "load_1min_end": 0.0},
            "quick": True, "total_s": 1.0}


def test_table_of_a_scaling_only_run_has_no_empty_tables():
    """--only scaling printed the summary and targets tables as bare headers with no rows;
    now a table without rows is left out, and a line says what was run instead."""
    text = bench.markdown_table(_scaling_only_results())
    lines = text.splitlines()
    for i, line in enumerate(lines):       # every table header is followed by rows
        if line.startswith("|---"):
            assert i + 1 < len(lines) and lines[i + 1].startswith("| "), (lines[i - 1], text)
    assert "| scaling | up to 1.0e+06 /s |" in text
    assert "| target | scenario |" not in text
    assert "fastest other scipy" not in text
    assert "No speed summary or targets for: scaling" in text
