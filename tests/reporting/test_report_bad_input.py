"""ex.report on bad arguments: a clear InputError before anything is rendered or written;
and the page's Content-Security-Policy pins its one inline script by hash."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re

import numpy as np
import pytest
import torch
from torch import nn

import explainer as ex


def assert_message_format(err: Exception) -> None:
    """what: expected ..., got .... fix — the project's message format."""
    text = str(err)
    assert ": expected " in text and ", got " in text and text.count(".") >= 2, text


@pytest.fixture(scope="module")
def explanation():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    model = ex.wrap(net, class_names=["cat", "dog"], modality="image")
    return ex.explain(model, torch.rand(2, 3, 8, 8), "saliency", progress=False)


def report_fails(tmp_path, explanations, match: str, **kwargs) -> ex.InputError:
    """ex.report raises an InputError matching ``match`` and writes nothing at all."""
    out = tmp_path / "new" / "r.html"
    with pytest.raises(ex.InputError, match=match) as info:
        ex.report(explanations, path=out, **kwargs)
    assert_message_format(info.value)
    assert not out.parent.exists()  # not even the parent folder
    return info.value


# -- what is explained -------------------------------------------------------------------
@pytest.mark.parametrize("bad", [None, 3, torch.zeros(2), [], [3]])
def test_report_of_something_that_is_not_an_explanation_is_an_input_error(tmp_path, bad):
    report_fails(tmp_path, bad, "`explanations`")


# -- options -----------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_max_samples_below_one_or_not_an_int_is_an_input_error(tmp_path, explanation, bad):
    report_fails(tmp_path, explanation, "`max_samples`", max_samples=bad)


@pytest.mark.parametrize("bad", [5, "one title", [1, 2]])
def test_section_titles_not_a_list_of_strings_is_an_input_error(tmp_path, explanation, bad):
    report_fails(tmp_path, explanation, "`section_titles`", section_titles=bad)


def test_render_report_and_notebook_views_check_max_samples_too(explanation):
    from explainer.reporting.html import render_report

    with pytest.raises(ex.InputError, match="`max_samples`"):
        render_report(explanation, max_samples=0)
    with pytest.raises(ex.InputError, match="`max_samples`"):
        ex.compare([explanation], max_samples=-1)._repr_html_()


def test_scores_that_are_not_evaluate_results_are_an_input_error(tmp_path, explanation):
    report_fails(tmp_path, explanation, "`scores`", scores=3)


# -- the output path ---------------------------------------------------------------------
def test_existing_folder_as_path_is_an_input_error_and_leaves_it_empty(tmp_path, explanation):
    (tmp_path / "out").mkdir()
    with pytest.raises(ex.InputError, match="folder") as info:
        ex.report(explanation, path=tmp_path / "out")
    assert_message_format(info.value)
    assert "report.html" in str(info.value)  # suggests a file name inside it
    assert list((tmp_path / "out").iterdir()) == []  # no temp file left behind


def test_path_below_a_file_is_an_input_error(tmp_path, explanation):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ex.InputError, match="notes.txt") as info:
        ex.report(explanation, path=tmp_path / "notes.txt" / "r.html")
    assert_message_format(info.value)
    assert (tmp_path / "notes.txt").read_text() == "x"


def test_path_that_is_not_a_path_is_an_input_error(tmp_path, explanation):
    with pytest.raises(ex.InputError, match="`path`"):
        ex.report(explanation, path=3)


# -- class names and labels --------------------------------------------------------------
@pytest.mark.parametrize(
    "names, got",
    [({0: "cat", 1: "dog"}, "dict"), ({0: "cat"}, "dict"), (("cat",), "1 names"), ("cd", "str")],
)
def test_class_names_that_are_not_one_string_per_class_are_an_input_error(
    tmp_path, explanation, names, got
):
    bad = dataclasses.replace(explanation, class_names=names)
    err = report_fails(tmp_path, bad, "`class_names`")
    assert got in str(err) and "2 strings" in str(err)
    with pytest.raises(ex.InputError, match="`class_names`"):
        bad._repr_html_()  # the notebook view


@pytest.mark.parametrize(
    "labels, match",
    [
        ([5, 5], r"\[0, 1\]"),  # IndexError in the report before
        ([-1, 0], r"\[0, 1\]"),  # silently the last class name before
        ({0: 1, 1: 0}, "dict"),  # its keys were read as labels before
        (["cat", "dog"], "not class names"),
        (7, "sequence"),
        ([[0, [1]]], "one class number per sample"),
    ],
)
def test_labels_out_of_range_or_malformed_are_an_input_error(tmp_path, explanation, labels, match):
    report_fails(tmp_path, explanation, match, labels=labels)


@pytest.mark.parametrize(
    "labels", [torch.tensor([1, 0]), np.array([1, 0]), [1, 0], [np.array([1, 0])]]
)
def test_labels_as_tensor_array_or_list_mark_the_misclassified(tmp_path, explanation, labels):
    html = ex.report(explanation, path=tmp_path / "r.html", labels=labels).read_text()
    predicted = explanation.predictions.tolist()
    want = [str(p == t).lower() for p, t in zip(predicted, [1, 0], strict=True)]
    assert re.findall(r'data-correct="(\w+)"', html) == want


# -- Content-Security-Policy -------------------------------------------------------------
def csp_of(html: str) -> dict[str, list[str]]:
    content = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html)
    assert content, "no CSP meta tag"
    directives = [d.split() for d in content[1].split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


def test_csp_allows_exactly_the_inline_script_in_the_file_by_its_sha256(tmp_path, explanation):
    html = ex.report(explanation, path=tmp_path / "r.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    assert len(scripts) == 1 and "addEventListener" in scripts[0]
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode()
    csp = csp_of(html)
    assert csp["script-src"] == [f"'sha256-{digest}'"]  # no 'unsafe-inline', nothing else
    assert csp["default-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"] and csp["form-action"] == ["'none'"]
    assert csp["img-src"] == ["data:"]


def test_report_script_cannot_close_its_own_script_element():
    from explainer.reporting.html import report_script

    script, source = report_script()
    assert "</script" not in script.lower() and "\r" not in script
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/]{43}='", source)
