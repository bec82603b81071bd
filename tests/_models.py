"""Small models with closed forms, shared by the tests."""

import ketasim


def one_cpt_spec(V=50.0, CL=10.0, *, KA=None, Q=None, V2=None, observe=False):
    """A one-compartment model as a dict: central (V, L) -> out (CL, L/h), route ``iv``; with
    ``KA`` (1/h) a depot and route ``oral`` (depot -> central); with ``Q``, ``V2`` a peripheral
    compartment (two-compartment model); ``observe``: alias ``plasma`` for central. A bolus D
    (mg) gives C = D/V exp(-CL/V t) mg/L."""
    spec = {"parameters": {"V": V, "CL": CL}, "compartments": {"central": "V"},
            "flows": [{"from": "central", "to": "out", "cl": "CL"}],
            "routes": {"iv": {"to": "central"}}}
    if KA is not None:
        spec["parameters"]["KA"] = KA
        spec["compartments"] = {"depot": 0, "central": "V"}
        spec["flows"].append({"from": "depot", "to": "central", "k": "KA"})
        spec["routes"]["oral"] = {"to": "depot"}
    if Q is not None:
        spec["parameters"].update(Q=Q, V2=V2)
        spec["compartments"]["periph"] = "V2"
        spec["flows"] += [{"from": "central", "to": "periph", "cl": "Q"},
                          {"from": "periph", "to": "central", "cl": "Q"}]
    if observe:
        spec["observe"] = {"plasma": "central"}
    return spec


def one_cpt(V=50.0, CL=10.0, **kw) -> ketasim.Model:
    """:func:`one_cpt_spec` as a model."""
    return ketasim.Model.from_dict(one_cpt_spec(V, CL, **kw))
