"""The public surface is exactly what ``explainer.__all__`` lists, every name resolves, and
every one has a docstring with a ``>>>`` example."""

from __future__ import annotations

import doctest
import inspect

import pytest

import explainer as ex

# Adding a public name is a decision: update this list in the same commit.
PUBLIC = [
    "Comparison",
    "ExplainerError",
    "ExplainerWarning",
    "Explanation",
    "Finding",
    "Findings",
    "ImageFolder",
    "InputError",
    "MethodInfo",
    "MethodResult",
    "Model",
    "ModelError",
    "MultiInputExplanation",
    "Scores",
    "Store",
    "StoreError",
    "UnknownMethodError",
    "compare",
    "evaluate",
    "explain",
    "explain_dataset",
    "explain_generation",
    "explain_many",
    "findings",
    "get_method",
    "layers",
    "list_methods",
    "load_explanation",
    "load_model",
    "open_store",
    "register_method",
    "report",
    "wrap",
]


def test_all_is_pinned_to_the_exact_sorted_public_names():
    assert ex.__all__ == PUBLIC
    assert ex.__all__ == sorted(ex.__all__)


def test_every_public_name_resolves():
    for name in ex.__all__:
        assert getattr(ex, name) is not None, name


def test_star_import_exports_exactly_all():
    namespace: dict = {}
    exec("from explainer import *", namespace)
    assert sorted(k for k in namespace if not k.startswith("__")) == PUBLIC


def test_error_tree_is_as_documented():
    assert issubclass(ex.InputError, ex.ExplainerError) and issubclass(ex.InputError, ValueError)
    assert issubclass(ex.UnknownMethodError, ex.ExplainerError) and issubclass(
        ex.UnknownMethodError, KeyError
    )
    assert issubclass(ex.ModelError, ex.ExplainerError) and issubclass(ex.ModelError, RuntimeError)
    assert issubclass(ex.StoreError, ex.ExplainerError) and issubclass(ex.StoreError, OSError)


def test_public_functions_have_docstrings():
    for name in ex.__all__:
        obj = getattr(ex, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def examples(name: str) -> list[doctest.Example]:
    """The ``>>>`` examples in the docstring of ``ex.<name>`` (for a class: in its own
    docstring and those of its methods)."""
    obj = getattr(ex, name)
    finder = doctest.DocTestFinder(recurse=inspect.isclass(obj), exclude_empty=True)
    return [example for test in finder.find(obj, name) for example in test.examples]


@pytest.mark.parametrize("name", ex.__all__)
def test_every_public_name_has_an_example_in_its_docstring(name):
    # `make test` runs every example (pytest --doctest-modules explainer); here: that there
    # is one, and that it is Python.
    found = examples(name)
    assert found, f"ex.{name}: add a `>>>` example to its docstring (a class: or a method's)"
    for example in found:
        compile(example.source, f"<example of ex.{name}>", "single")


def test_list_methods_names_aliases_modalities_and_descriptions():
    methods = ex.list_methods()
    assert [m.name for m in methods] == sorted(m.name for m in methods)
    for m in methods:
        assert m.description and set(m.modalities) <= {"image", "tabular", "text"}
        for alias in m.aliases:
            assert ex.get_method(alias) is ex.get_method(m.name)
    table = str(methods)
    assert table.splitlines()[0].split() == ["name", "aliases", "modalities", "description"]
    assert "integrated_gradients" in table and "<table>" in methods._repr_html_()


def test_register_method_refuses_a_duplicate_name():
    with pytest.raises(ValueError, match="already registered"):
        ex.register_method("ig")(lambda model, inputs, target, *, runtime: None)
