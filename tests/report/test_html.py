"""The HTML report: one self-contained file, escaped user strings, atomic writes."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import explainer as ex

HOSTILE = ["<img src=x onerror=alert(1)>", "</script><script>alert(1)</script>", "ok & fine"]


@pytest.fixture()
def image_explanations():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 3))
    model = ex.wrap(net, class_names=HOSTILE, modality="image", name="<b>net</b>")
    x = torch.rand(3, 3, 16, 16)
    return ex.explain_many(model, x, ["saliency", "integrated_gradients"], progress=False)


def test_report_is_one_offline_file_with_inline_images(image_explanations, tmp_path):
    path = ex.report(image_explanations, path=tmp_path / "sub" / "r.html", title="run")
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert len(re.findall(r'<img class="thumb[^"]*" src="data:image/png;base64,', html)) == 3 * 3  # input + 2 methods per sample
    resource_urls = re.findall(r'(?:src|href)\s*=\s*["\']?(https?:)', html)
    assert resource_urls == []
    assert "http://" not in html and "https://" not in html


def test_user_strings_are_escaped_in_report(image_explanations, tmp_path):
    html = ex.report(image_explanations, path=tmp_path / "r.html", title="<script>alert(2)</script>").read_text()
    assert "<img src=x onerror" not in html
    assert "</script><script>alert(1)" not in html
    assert "<script>alert(2)" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;net&lt;/b&gt;" in html


def test_report_is_written_atomically(image_explanations, tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("old")

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", explode)
    with pytest.raises(OSError):
        ex.report(image_explanations, path=target)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_report_from_saved_files_round_trips(image_explanations, tmp_path):
    files = [e.save(tmp_path / f"{e.method}.npz") for e in image_explanations]
    direct = ex.report(image_explanations, path=tmp_path / "a.html").read_text()
    loaded = ex.report([str(f) for f in files], path=tmp_path / "b.html").read_text()
    strip = lambda s: re.sub(r"generated [^<]*", "", s)  # noqa: E731
    assert strip(direct) == strip(loaded)


def test_tabular_report_shows_feature_bars(tmp_path):
    net = nn.Linear(4, 2)
    model = ex.wrap(net, modality="tabular", class_names=["no", "yes"])
    exp = ex.explain(model, torch.randn(2, 4), "gradient_x_input", feature_names=HOSTILE + ["plain"], progress=False)
    html = ex.report(exp, path=tmp_path / "t.html").read_text()
    assert "plain" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count('class="bar-row"') == 2 * 4
