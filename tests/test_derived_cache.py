"""What ketasim keeps between calls (the expansion and events of a dose table) never goes stale:
dose tables cannot be changed after their checks, and everything else a kept value depends on
(model routes and states, route parameters, covariates) is part of its key or checked."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

import ketasim
from ketasim import Doses, engine
from ketasim._expr import parse
from ketasim.dosing import expand
from ketasim.events import build_events

TIMES = np.linspace(0.0, 12.0, 25)


def one_compartment(**route):
    return ketasim.Model.from_dict({
        "model": {"name": "one-compartment", "citation": "test"},
        "parameters": {"V": 100.0, "CL": 50.0, "F": 0.5, "LAG": 0.25},
        "compartments": {"central": "V", "depot": 0},
        "flows": [{"from": "central", "to": "out", "cl": "CL"},
                  {"from": "depot", "to": "central", "k": 2.0}],
        "routes": {"iv": {"to": "central"},
                   "oral": {"to": "depot", "f": "F", "lag_h": "LAG", **route}},
    })


def fresh(d: Doses) -> Doses:
    """An equal dose table with nothing kept from earlier calls."""
    return Doses.from_records(d.to_records(), source=d.source)


@pytest.mark.parametrize("name", ["time_h", "amount_mg", "duration_h", "addl", "ii_h",
                                  "rate_mg_h", "ss", "evid"])
def test_dose_arrays_cannot_be_made_writeable(name):
    d = Doses.single(10.0, "iv", addl=2, ii_h=4.0)
    a = getattr(d, name)
    with pytest.raises(ValueError):
        a[0] = 1
    with pytest.raises(ValueError):
        a.setflags(write=True)


def test_covariate_and_subject_arrays_cannot_be_made_writeable():
    d = Doses.from_records([{"time_h": 0, "amount_mg": 1, "route": "iv", "subject": 1,
                             "weight_kg": 60}])
    for a in (d.subject, d.covariates["weight_kg"]):
        with pytest.raises(ValueError):
            a.setflags(write=True)


def test_pickled_table_stays_read_only_and_drops_what_was_kept():
    d = Doses.single(10.0, "iv", addl=3, ii_h=4.0)
    expand(d)
    ketasim.simulate(one_compartment(), d, TIMES)
    assert d.__dict__.get("_derived")
    e = pickle.loads(pickle.dumps(d))
    assert e == d and "_derived" not in e.__dict__
    with pytest.raises(ValueError):
        e.time_h.setflags(write=True)
    assert expand(e) == expand(d)


def test_expansion_of_an_expanded_table_is_the_table():
    d = Doses.from_records([{"time_h": 0, "amount_mg": 1, "route": "iv"},
                            {"time_h": 2, "amount_mg": 2, "route": "iv"}])
    assert expand(d) is d
    unsorted = Doses.from_records([{"time_h": 2, "amount_mg": 1, "route": "iv"},
                                   {"time_h": 0, "amount_mg": 2, "route": "iv"}])
    assert list(expand(unsorted).time_h) == [0.0, 2.0]
    assert list(expand(unsorted).amount_mg) == [2.0, 1.0]


def test_kept_expansion_follows_a_replaced_covariate():
    d = Doses.from_records([{"time_h": 0, "amount_mg": 1, "route": "iv", "addl": 2, "ii_h": 1,
                             "weight_kg": 60}])
    assert list(expand(d).covariates["weight_kg"]) == [60.0] * 3
    d.covariates["weight_kg"] = np.array([80.0])         # a dict stays a dict: replace a column
    assert list(expand(d).covariates["weight_kg"]) == [80.0] * 3
    d.covariates["weight_kg"][0] = 90.0                    # put in writeable: not trusted
    assert list(expand(d).covariates["weight_kg"]) == [90.0] * 3
    del d.covariates["weight_kg"]
    assert expand(d).covariates == {}


def test_repeated_simulation_is_identical_to_a_fresh_one():
    m = one_compartment()
    d = Doses.single(40.0, "oral", addl=3, ii_h=3.0) + Doses.single(5.0, "iv", time_h=1.0)
    first = ketasim.simulate(m, d, TIMES)
    again = ketasim.simulate(m, d, TIMES)
    ref = ketasim.simulate(m, fresh(d), TIMES)
    np.testing.assert_array_equal(first.data, again.data)
    np.testing.assert_array_equal(first.data, ref.data)


def test_kept_events_follow_route_parameters():
    m = one_compartment()
    d = Doses.single(40.0, "oral", addl=2, ii_h=4.0)
    for params in ({}, {"F": 0.9}, {"LAG": 1.5}, {}, {"F": 0.9, "LAG": 1.5},
                   {"F": np.array([0.2, 0.9])}, {"F": 0.2}):
        got = ketasim.simulate(m, d, TIMES, params=params)
        ref = ketasim.simulate(m, fresh(d), TIMES, params=params)
        np.testing.assert_array_equal(got.data, ref.data)


def test_kept_events_follow_the_model():
    d = Doses.single(40.0, "oral", duration_h=0.0)
    m = one_compartment()
    base = ketasim.simulate(m, d, TIMES).data
    for other in (one_compartment(f=1.0), one_compartment(duration_h=2.0),
                  one_compartment(to="central")):
        got = ketasim.simulate(other, d, TIMES).data
        np.testing.assert_array_equal(got, ketasim.simulate(other, fresh(d), TIMES).data)
        assert not np.array_equal(got, base)
    # a route replaced in place in the (frozen) model's dict is seen too
    m2 = one_compartment()
    ketasim.simulate(m2, d, TIMES)
    m2.routes["oral"] = one_compartment(lag_h=3.0).routes["oral"]
    np.testing.assert_array_equal(ketasim.simulate(m2, d, TIMES).data,
                                  ketasim.simulate(m2, fresh(d), TIMES).data)
    # a model with an extra state (an effect site) orders states differently
    m3 = dataclasses.replace(m, compartments={"depot": None, **m.compartments})
    np.testing.assert_array_equal(ketasim.simulate(m3, d, TIMES).data,
                                  ketasim.simulate(m3, fresh(d), TIMES).data)


def test_kept_events_cannot_be_written():
    m = one_compartment()
    d = Doses.single(40.0, "oral")
    for _ in range(2):
        plan = engine.prepare(m, d)
        for a in plan.events[:5]:
            with pytest.raises(ValueError):
                a[...] = 0
    ev = build_events(m, d, m.resolve())
    for a in ev[:5]:
        with pytest.raises(ValueError):
            a.setflags(write=True)


def test_events_kept_per_table_are_bounded():
    m = one_compartment()
    d = Doses.single(40.0, "oral")
    for lag in np.linspace(0.0, 2.0, 30):
        ketasim.simulate(m, d, TIMES, params={"LAG": lag})
    assert len(d.__dict__["_derived"]["events"]) <= 8


def test_kept_matrices_follow_parameters_weight_and_outputs():
    m = ketasim.load_model("ketamine-iv")
    d = Doses.single(35.0, "iv", duration_h=0.5)
    cases = [{}, {"params": {"CL": 50.0}}, {"weight_kg": 90.0}, {},
             {"outputs": ["plasma"]}, {"amounts": True}, {"params": {"CL": 50.0}},
             {"weight_kg": np.array([70.0])}]
    for kw in cases:
        got = ketasim.simulate(m, d, TIMES, **kw)
        ref = ketasim.simulate(dataclasses.replace(m), d, TIMES, **kw)   # nothing kept
        assert got.names == ref.names
        np.testing.assert_array_equal(got.data, ref.data)


def test_kept_matrices_follow_edited_model_dicts():
    m = one_compartment()
    d = Doses.single(40.0, "iv")
    ketasim.simulate(m, d, TIMES)
    m.compartments["central"] = parse("V / 2", "volume")
    ref = ketasim.simulate(dataclasses.replace(m), d, TIMES).data
    np.testing.assert_array_equal(ketasim.simulate(m, d, TIMES).data, ref)
    m.observe["both"] = ("central",)
    got = ketasim.simulate(m, d, TIMES)
    assert "both" in got.names
    np.testing.assert_array_equal(got.data, ketasim.simulate(dataclasses.replace(m), d,
                                                             TIMES).data)


def test_kept_matrices_are_copied_out_and_not_pickled():
    m = one_compartment()
    d = Doses.single(40.0, "iv")
    p1 = engine.prepare(m, d)
    p2 = engine.prepare(m, d)
    assert p1.K is not p2.K and p1.K.flags.writeable
    p1.K[...] = 0.0
    p3 = engine.prepare(m, d)
    np.testing.assert_array_equal(p3.K, p2.K)
    assert m.__dict__.get("_derived")
    m2 = pickle.loads(pickle.dumps(m))
    assert "_derived" not in m2.__dict__
    np.testing.assert_array_equal(engine.prepare(m2, d).K, p2.K)


@pytest.mark.parametrize("name", ketasim.list_presets())
def test_a_model_equals_its_pickled_copy_and_the_same_model_read_again(name):
    # (expressions had compared by their syntax trees' identity, so a model was equal to no
    # other; with the expressions equal, the variability's arrays had raised in ==)
    m = ketasim.load_model(name)
    assert pickle.loads(pickle.dumps(m)) == m
    assert ketasim.load_model(name) == m
    assert one_compartment() == one_compartment()
    assert dataclasses.replace(m, parameters={**m.parameters, "CL2": 1.0}) != m
    assert one_compartment(lag_h=0.5) != one_compartment()
    assert parse("CL / V", "k") == parse(" CL / V ", "k")


def test_kept_occupancy_weights_follow_parameters_and_calibration():
    """Occupancy weights kept for one subject are keyed by the parameter values and the
    calibration: a changed Ki or calibration gives the occupancy of a fresh model."""
    t = np.linspace(0.0, 4.0, 9)
    d = ketasim.Doses.single(35.0, "iv", duration_h=0.67)
    m = ketasim.load_model("ketamine-iv")
    base = ketasim.simulate(m, d, t, outputs=["occupancy"]).output("occupancy")
    for kw in ({"params": {"KI_S": 0.5}}, {"occupancy_calibration": "in-vitro"}):
        got = ketasim.simulate(m, d, t, outputs=["occupancy"], **kw).output("occupancy")
        fresh = ketasim.simulate(ketasim.load_model("ketamine-iv"), d, t, outputs=["occupancy"],
                                 **kw).output("occupancy")
        np.testing.assert_array_equal(got, fresh)
        assert not np.allclose(got, base)
    again = ketasim.simulate(m, d, t, outputs=["occupancy"]).output("occupancy")
    np.testing.assert_array_equal(again, base)


def test_kept_typical_values_follow_an_edited_parameter_dict_and_weight():
    """The typical subject's resolved values are kept with the model; editing its parameter
    dict in place or changing the weight gives the values of a fresh model."""
    m = one_compartment()
    a = m.resolve()
    m.parameters["CL"] = 25.0
    b = m.resolve()
    assert b["CL"][0] == 25.0 and a["CL"][0] == 50.0
    b["CL"][0] = -1.0                       # a caller writing into its copy changes nothing
    assert m.resolve()["CL"][0] == 25.0
    assert m.resolve(weight_kg=80)["WT"][0] == 80.0
    with pytest.raises(ketasim.KetasimInputError, match="weight_kg"):
        m.resolve(weight_kg=-3.0)


def test_a_models_repr_is_the_same_for_the_same_model():
    # (each expression's repr had shown its syntax tree's memory address)
    a, b = ketasim.load_model("ketamine-iv"), ketasim.load_model("ketamine-iv")
    assert repr(a) == repr(b) and " at 0x" not in repr(a)
    assert repr(parse("CL / V", "k")).startswith("Expr(text='CL / V', names=frozenset(")
    assert "tree" not in repr(parse("CL / V", "k"))
