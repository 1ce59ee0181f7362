"""The package is layered: every import points down, lazy imports are only optional heavy
dependencies, and no import cycle exists (see docs/architecture.md)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from layering import LAYERS, layer_of, module_names, violations

import explainer

ROOT = Path(explainer.__file__).parent


def test_every_import_of_the_package_points_down_a_layer():
    found = violations(ROOT)
    assert not found, "layering broken:\n" + "\n".join(found)


def test_every_module_has_a_layer():
    for name in module_names(ROOT, "explainer"):
        layer_of(name)  # raises KeyError naming the module


def _fake_tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "explainer"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    return root


def test_a_reporting_import_inside_a_method_function_is_caught(tmp_path):
    root = _fake_tree(
        tmp_path,
        {
            "reporting/html.py": "def report(): ...\n",
            "methods/saliency.py": """
                def saliency():
                    from explainer.reporting.html import report
                    return report()
            """,
        },
    )
    found = violations(root)
    assert any(
        "explainer.methods.saliency line 3: imports explainer.reporting.html (reporting) from "
        "the lower layer methods" in v
        for v in found
    ), found
    assert any("inside a function" in v for v in found)


@pytest.mark.parametrize(
    "statement",
    [
        "from ..reporting import html",
        "from ..reporting.html import report",
        "import explainer.reporting.html",
    ],
)
def test_each_form_of_an_upward_module_level_import_is_caught(tmp_path, statement):
    root = _fake_tree(
        tmp_path,
        {"reporting/html.py": "def report(): ...\n", "methods/saliency.py": statement + "\n"},
    )
    assert any("from the lower layer methods" in v for v in violations(root))


def test_a_downward_import_and_an_allowed_lazy_dependency_pass(tmp_path):
    root = _fake_tree(
        tmp_path,
        {
            "errors.py": "class ExplainerError(Exception): ...\n",
            "viz/figures.py": """
                from ..errors import ExplainerError

                def figure():
                    import matplotlib  # allowed: heavy, listed with its reason
                    return matplotlib, ExplainerError
            """,
        },
    )
    assert violations(root) == []


def test_a_lazy_third_party_import_that_is_not_listed_is_caught(tmp_path):
    root = _fake_tree(tmp_path, {"viz/figures.py": "def f():\n    import scipy\n"})
    assert any("imports scipy inside a function" in v for v in violations(root))


def test_an_import_cycle_inside_one_layer_is_caught(tmp_path):
    root = _fake_tree(
        tmp_path,
        {
            "dataset/store.py": "from . import writer\n",
            "dataset/writer.py": "from . import store\n",
        },
    )
    cycles = [v for v in violations(root) if v.startswith("import cycle")]
    assert (
        cycles
        and "explainer.dataset.store" in cycles[0]
        and "explainer.dataset.writer" in cycles[0]
    )


def test_typing_only_imports_may_point_sideways_but_not_up(tmp_path):
    root = _fake_tree(
        tmp_path,
        {
            "model.py": "from . import _checks\n",
            "_checks.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .model import Model\n",
            "api.py": "",
            "viz/figures.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..api import x\n",
        },
    )
    found = violations(root)
    assert not any("cycle" in v for v in found)  # the typing import never runs
    assert any("explainer.viz.figures" in v and "(api)" in v for v in found)


def test_layers_are_listed_lowest_first_with_the_public_api_on_top():
    names = [name for name, _ in LAYERS]
    assert names[0] == "errors" and names[-1] == "programs"
    assert layer_of("explainer") == len(LAYERS) - 1
