"""Checks on the errors explainer raises: the message format (what, expected, got, fix);
`raises`, which also checks that the model is left exactly as it was; and the rows of the
bad-input tables (`case`, with `explain` to build their calls)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from attribution_helpers import assert_same_state, make_images, make_rows, model_state

import explainer as ex


def assert_message_format(err: Exception) -> None:
    """what: expected ..., got .... fix — the project's message format."""
    text = str(err)
    assert ": expected " in text and ", got " in text and text.count(".") >= 2, text


def raises(error: type[Exception], *keywords: str, model: ex.Model, call: Callable[[], object]):
    """Run ``call``; check the error type, that the message holds every keyword, and the model state."""
    before = model_state(model.net)
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in keywords:
        assert word in message, f"{word!r} not in message: {message}"
    assert isinstance(info.value, ex.ExplainerError)
    assert_same_state(before, model_state(model.net))
    return info.value


def with_nan(t: torch.Tensor, value: float = float("nan")) -> torch.Tensor:
    """A copy of ``t`` with one element (flat index 3) set to ``value``."""
    t = t.clone()
    t.view(-1)[3] = value
    return t


# The built-in exception each error class also is, so that existing `except` clauses work.
BUILTIN_BASE = {
    ex.InputError: ValueError,
    ex.ModelError: RuntimeError,
    ex.UnknownMethodError: KeyError,
    ex.StoreError: OSError,
}
# The fields of a `case`, for pytest.mark.parametrize.
CASE_FIELDS = ("model", "call", "error", "words", "absent")


def case(spec: str, model, call, error: type[Exception], *words: str, absent: tuple[str, ...] = ()):
    """One row of a bad-input table, its id ``spec`` saying what is wrong: ``model`` is
    "image" or "tabular" (the test module's ``image_model``/``tabular_model`` fixtures) or a
    function building the Model; ``call(model)`` must raise ``error`` with every one of
    ``words`` and none of ``absent`` in its message."""
    return pytest.param(model, call, error, words, absent, id=spec)


def explain(method: str = "saliency", inputs=None, **params):
    """A row's ``call``: ex.explain of the model on ``inputs()`` (default: two samples of
    the model's modality), without a progress bar unless ``progress`` is given."""

    def call(model: ex.Model):
        x = inputs() if inputs else make_images(2) if model.modality == "image" else make_rows(2)
        return ex.explain(model, x, method, **{"progress": False, **params})

    return call


def check_case(request: pytest.FixtureRequest, model, call, error, words, absent) -> Exception:
    """Run one `case` row: the error, its words, its built-in base, an unchanged model.
    Returns the error."""
    model = request.getfixturevalue(f"{model}_model") if isinstance(model, str) else model()
    err = raises(error, *words, model=model, call=lambda: call(model))
    assert not [word for word in absent if word in str(err)], str(err)
    assert isinstance(err, BUILTIN_BASE[error])
    if isinstance(err, KeyError):
        assert not str(err).startswith("'"), "the message must not be quoted like a bare KeyError"
    return err
