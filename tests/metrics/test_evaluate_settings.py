"""ex.evaluate's options are checked once into one settings object that every metric group
reads; the groups are one table in METRIC_GROUPS order."""

from __future__ import annotations

import inspect

import pytest
import torch

import explainer as ex
from explainer.dataset import evaluation
from explainer.metrics import METRIC_GROUPS, suite
from explainer.metrics.settings import DEFAULT_GROUPS, EvaluationSettings


def linear_explanations():
    torch.manual_seed(0)
    model = ex.wrap(torch.nn.Linear(4, 3), modality="tabular")
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    return model, ex.explain_many(model, x, ["saliency", "integrated_gradients"], progress=False)


def test_the_group_table_lists_every_metric_group_once_in_order():
    names = [g.name for g in suite._PER_EXPLANATION] + ["agreement"]
    assert names == list(METRIC_GROUPS)


@pytest.mark.parametrize(
    "options, word",
    [
        ({"metrics": ["faithfulness", "fidelity"]}, "`metrics`"),
        ({"metrics": 7}, "`metrics`"),
        ({"features": "pixel"}, "`features`"),
        ({"fill": "noise"}, "`fill`"),
        ({"randomization": "random"}, "`randomization`"),
        ({"steps": 1}, "`steps`"),
        ({"n_perturb": 0}, "`n_perturb`"),
        ({"n_segments": True}, "`n_segments`"),
        ({"n_sensitivity": 1.5}, "`n_sensitivity`"),
        ({"randomization_steps": 1}, "`randomization_steps`"),
        ({"progress": "yes"}, "`progress`"),
        ({"seed": -1}, "`seed`"),
        ({"memory_budget": "0"}, "`memory_budget`"),
    ],
)
def test_each_bad_option_is_an_input_error_naming_it(options, word):
    with pytest.raises(ex.InputError, match=word):
        EvaluationSettings.from_options(**options)


def test_settings_defaults_are_the_documented_ones():
    s = EvaluationSettings.from_options()
    assert s.groups == frozenset(DEFAULT_GROUPS) and s.seed == 0 and s.fill == "blur"
    assert (s.steps, s.n_perturb, s.n_sensitivity, s.n_segments) == (20, 16, 4, 48)
    assert s.randomization == "cascading" and s.randomization_steps == 4
    assert EvaluationSettings.from_options(seed=None).seed == 0
    assert EvaluationSettings.from_options(["default"]).groups == frozenset(DEFAULT_GROUPS)


def test_scoring_with_the_settings_object_equals_evaluate_and_records_it():
    model, exps = linear_explanations()
    kw = dict(steps=6, n_perturb=4, n_sensitivity=2, seed=3, progress=False)
    direct = ex.evaluate(exps, model, ["faithfulness", "infidelity", "robustness"], **kw)
    settings = EvaluationSettings.from_options(["faithfulness", "infidelity", "robustness"], **kw)
    again = suite.score(exps, model, settings)
    assert again.rows == direct.rows
    assert direct.settings == settings.record(model.name)


def test_ex_evaluate_takes_every_option_of_the_settings_with_the_same_defaults():
    public = inspect.signature(ex.evaluate).parameters
    options = inspect.signature(EvaluationSettings.from_options).parameters
    assert ex.evaluate is evaluation.evaluate
    own = {"explanations", "model", "masks", "sample"}  # what is not a scoring option
    assert [p for p in public if p not in own] == list(options)
    for name, p in options.items():
        assert public[name].default == p.default and public[name].kind == p.kind, name
    assert public["sample"].default == 64 and public["sample"].kind is p.KEYWORD_ONLY
