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
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 3)
    )
    model = ex.wrap(net, class_names=HOSTILE, modality="image", name="<b>net</b>")
    x = torch.rand(3, 3, 16, 16)
    return ex.explain_many(model, x, ["saliency", "integrated_gradients"], progress=False)


def test_report_is_one_offline_file_with_inline_images(image_explanations, tmp_path):
    path = ex.report(image_explanations, path=tmp_path / "sub" / "r.html", title="run")
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert (
        len(re.findall(r'<img class="thumb[^"]*" src="data:image/png;base64,', html)) == 3 * 3
    )  # input + 2 methods per sample
    resource_urls = re.findall(r'(?:src|href)\s*=\s*["\']?(https?:)', html)
    assert resource_urls == []
    assert "http://" not in html and "https://" not in html


def test_user_strings_are_escaped_in_report(image_explanations, tmp_path):
    html = ex.report(
        image_explanations, path=tmp_path / "r.html", title="<script>alert(2)</script>"
    ).read_text()
    assert "<img src=x onerror" not in html
    assert "</script><script>alert(1)" not in html
    assert "<script>alert(2)" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;net&lt;/b&gt;" in html


def test_report_gets_normal_file_permissions(image_explanations, tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the result must be readable like any
    file the user creates (0666 minus the umask), e.g. when served by a web server."""
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    path = ex.report(image_explanations, path=tmp_path / "r.html")
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


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
    exp = ex.explain(
        model,
        torch.randn(2, 4),
        "gradient_x_input",
        feature_names=HOSTILE + ["plain"],
        progress=False,
    )
    html = ex.report(exp, path=tmp_path / "t.html").read_text()
    assert "plain" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count('class="bar-row"') == 2 * 4


def test_report_of_32_samples_and_3_methods_stays_under_5_mb(tmp_path):
    from explainer.demo import CLASS_NAMES, load_demo_cnn, make_shapes

    data = make_shapes(32, split="test", seed=7)
    model = ex.wrap(load_demo_cnn(), class_names=CLASS_NAMES)
    exps = ex.explain_many(
        model,
        data.images,
        {"saliency": {}, "integrated_gradients": {"n_steps": 8}, "gradient_x_input": {}},
        progress=False,
    )
    path = ex.report(exps, path=tmp_path / "big.html", labels=data.labels.tolist())
    html = path.read_text()
    assert html.count('class="sample"') == 32
    assert path.stat().st_size < 5 * 2**20
    # every thumbnail is embedded once (the overlay toggle keeps its source in memory)
    uris = re.findall(r'class="thumb[^"]*" src="(data:image/png;base64,[^"]+)"', html)
    assert all(html.count(uri) == 1 for uri in set(uris)) and len(uris) >= 32 * 4


def test_shared_scale_is_accepted_and_unknown_scale_refused(image_explanations, tmp_path):
    assert ex.report(image_explanations, path=tmp_path / "s.html", scale="shared").exists()
    with pytest.raises(ex.InputError, match="scale"):
        ex.report(image_explanations, path=tmp_path / "x.html", scale="global")


def test_misclassified_samples_are_marked_for_the_filter(image_explanations, tmp_path):
    preds = image_explanations[0].predictions.tolist()
    labels = [(p + 1) % 3 if i == 0 else p for i, p in enumerate(preds)]
    html = ex.report(image_explanations, path=tmp_path / "m.html", labels=labels).read_text()
    assert html.count('data-correct="false"') == 1 and html.count('data-correct="true"') == 2
    assert "misclassified only" in html
