"""Completeness warnings in the HTML report: a visible notice next to the method's maps
(under the report's unchanged CSP), a mark in the summary, and, for a store, the worst gap
per method in the dataset section, the run warning once however many batches it had."""

from __future__ import annotations

import os
import re
import warnings

import pytest
import torch
from attribution_helpers import init_parameters, make_linear, make_rows
from torch import nn

import explainer as ex

ROWS = torch.linspace(-1, 1, 12).reshape(3, 4)
CHROMIUM = os.environ.get("EXPLAINER_CHROMIUM", "/usr/bin/chromium")


def saturating_mlp() -> ex.Model:
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    return ex.wrap(init_parameters(net, seed=0, scale=4.0).eval(), modality="tabular", name="mlp")


def coarse_ig(model: ex.Model, x: torch.Tensor) -> ex.Explanation:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ex.ExplainerWarning)
        return ex.explain(model, x, "ig", target=0, n_steps=2, progress=False)


def test_the_report_shows_a_completeness_warning_next_to_the_method_maps(tmp_path):
    exp = coarse_ig(saturating_mlp(), ROWS)
    [warning] = exp.warnings
    html = ex.report(exp, tmp_path / "r.html", title="coarse IG").read_text()
    notice = f'<p class="notice" role="note"><b>warning</b> {warning}</p>'
    assert html.count(notice) == 1
    # in the method's samples section, before its grid
    assert html.index('id="samples-0"') < html.index(notice) < html.index(' id="grid-0"')
    assert '⚠ 1 warning(s), shown with <a href="#samples-0">its maps</a>' in html
    # the strict policy is unchanged: no inline scripts beyond the pinned one
    [csp] = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert "default-src 'none'" in csp and re.search(r"script-src 'sha256-[^' ]+';", csp)
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def test_a_report_without_a_gap_shows_no_warning(tmp_path):
    exp = coarse_ig(ex.wrap(make_linear(), modality="tabular"), make_rows(3))
    html = ex.report(exp, tmp_path / "r.html").read_text()
    assert exp.warnings == () and 'class="notice" role="note"' not in html and "⚠" not in html


def test_a_store_warns_once_and_reports_its_worst_gap_per_method(tmp_path):
    model = saturating_mlp()
    x = torch.linspace(-2, 2, 24).reshape(6, 4)  # every gap far above 1%
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ex.ExplainerWarning)
        store = ex.explain_dataset(
            model,
            x,
            {"integrated_gradients": {"n_steps": 2}, "saliency": {}},
            tmp_path / "s.zarr",
            batch_size=2,  # three batches, and a dry run: still one warning
            progress=False,
        )
    issued = [str(w.message) for w in caught if issubclass(w.category, ex.ExplainerWarning)]
    direct = coarse_ig(model, x)
    summary = store.completeness()
    assert list(summary) == ["integrated_gradients"]  # saliency has no completeness property
    ig = summary["integrated_gradients"]
    gaps = direct.extras["relative_gap"]
    assert ig["n"] == 6 and ig["over"] == int((gaps > 0.01).sum()) and ig["tolerance"] == 0.01
    assert ig["worst"] == pytest.approx(float(gaps.max()), rel=1e-4)
    assert issued == store.warnings == [ig["warning"]]
    assert ig["over"] == 6 and "in 6 of 6 samples" in ig["warning"]
    # explanations read from the store carry the warning of the rows they hold
    assert store[0:2]["integrated_gradients"].warnings
    html = ex.report(store, tmp_path / "r.html", max_samples=4).read_text()
    dataset = html[html.index('id="dataset"') : html.index('id="samples-0"')]
    assert f"worst {100 * ig['worst']:.2f}% over 6 samples" in dataset
    assert f'<p class="notice" role="note"><b>warning</b> {ig["warning"]}</p>' in dataset


@pytest.mark.browser
def test_the_notice_is_visible_beside_the_map_in_a_browser(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium not found at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    path = ex.report(coarse_ig(saturating_mlp(), ROWS), tmp_path / "r.html")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.resolve().as_uri())
        notice = page.locator("#samples-0 ~ p.notice").first
        assert notice.is_visible() and "integrated_gradients" in notice.inner_text()
        box, grid = notice.bounding_box(), page.locator("#grid-0").bounding_box()
        assert box["y"] < grid["y"] < box["y"] + box["height"] + 200  # right above the map
        browser.close()
    assert errors == []
