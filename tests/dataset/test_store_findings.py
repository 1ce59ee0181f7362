"""Findings of a result store: `explainer findings STORE` proposes on some rows, measures on
others, saves the result; `explainer report STORE` shows it; bad requests are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import explainer as ex
from explainer.cli import app
from explainer.dataset.store_findings import stored_findings
from explainer.demo import CLASS_NAMES, load_demo_cnn, make_shapes
from explainer.demo.shapes import watermark_box
from explainer.errors import InputError
from explainer.reporting.html import render_report

runner = CliRunner()


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """160 training-split shapes (most carry their class's watermark, as the demo CNN was
    trained) explained by the demo CNN with gradient x input, into a store."""
    where = tmp_path_factory.mktemp("findings")
    data = make_shapes(160, split="train", seed=5)
    np.savez(where / "shapes.npz", x=data.images.numpy(), y=data.labels.numpy())
    path = where / "s.zarr"
    _ok(
        [
            "explain",
            "--model",
            "demo",
            "--data",
            str(where / "shapes.npz"),
            "--store",
            str(path),
            "--method",
            "gradient_x_input",
            "--target",
            "label",
            "--batch-size",
            "32",
            "--no-progress",
        ]
    )
    return path


def test_the_cli_finds_each_watermark_on_other_rows_saves_it_and_the_report_shows_it(
    store, tmp_path
):
    assert "findings</b></td><td>not computed" in ex.open_store(store)._repr_html_()
    result = _ok(["findings", str(store), "--sample", "64", "--holdout", "96", "--no-progress"])
    assert "saved 4 finding(s)" in result.output
    assert "96 other rows (labelled by their label)" in result.output
    saved = ex.open_store(store)
    found = {f.class_name: f for f in stored_findings(saved)}
    assert set(found) == set(CLASS_NAMES)
    for c, name in enumerate(CLASS_NAMES):
        rows, cols = watermark_box(c)  # the box (top, left, height, width) is the watermark's
        assert found[name].where == (rows.start, cols.start, 6, 6)
        assert found[name].effect_others >= 0.05 and found[name].ci_others[0] > 0
        assert found[name].preview.shape == (64, 64, 3)
        assert found[name].sentence in result.output
    # the measured rows are not the proposing rows
    record = saved.group.attrs["findings"]["rows"]
    assert set(record["explained"]).isdisjoint(record["holdout"])
    assert len(record["explained"]) == 64 and len(record["holdout"]) == 96
    assert "findings</b></td><td>computed" in saved._repr_html_()
    out = tmp_path / "r.html"
    _ok(["report", str(store), "--out", str(out)])
    html = out.read_text()
    section = html[html.index('id="findings"') : html.index('id="summary"')]
    assert "4 finding(s)" in section and "not computed" not in section
    assert section.count('<img src="data:image/png;base64,') == 4


def test_a_store_round_trip_keeps_every_number_and_the_previews(store, tmp_path):
    opened = ex.open_store(store)
    found = ex.findings(opened, sample=48, holdout=64, seed=1)
    again = stored_findings(ex.open_store(store))
    assert [f.to_dict() for f in again] == [f.to_dict() for f in found]
    assert [f.to_dict() for f in again.rejected] == [f.to_dict() for f in found.rejected]
    for a, b in zip(again, found, strict=True):
        assert np.array_equal(a.preview, b.preview)


def test_a_report_of_a_store_without_findings_says_so(tmp_path):
    data = make_shapes(8, split="test", seed=0)
    path = tmp_path / "plain.zarr"
    ex.explain_dataset(
        load_demo_cnn(), data.images, ["saliency"], path, labels=data.labels, progress=False
    )
    html = render_report(ex.open_store(path))
    section = html[html.index('id="findings"') : html.index('id="summary"')]
    assert "Findings were not computed" in section and "explainer findings STORE" in section


def test_bad_requests_are_refused_before_anything_is_written(store):
    opened = ex.open_store(store)
    before = dict(opened.group.attrs).get("findings")
    with pytest.raises(InputError, match="beyond the explained sample"):
        ex.findings(opened, sample=10_000)  # every row proposes: none is left to measure
    with pytest.raises(InputError, match="number of other rows"):
        ex.findings(opened, holdout=(torch.zeros(2, 3, 64, 64), torch.zeros(2)))
    with pytest.raises(InputError, match=r"holdout"):
        ex.findings(opened, holdout=0)
    exp = next(iter(opened[[0, 1, 2]].values()))
    with pytest.raises(InputError, match="only with a store"):
        ex.findings(exp, load_demo_cnn(), holdout=5)
    with pytest.raises(InputError, match="`model`"):
        ex.findings(exp)
    assert dict(ex.open_store(store).group.attrs).get("findings") == before
    result = runner.invoke(app, ["findings", str(store), "--sample", "100000"])
    assert result.exit_code == 2 and "error:" in result.output
