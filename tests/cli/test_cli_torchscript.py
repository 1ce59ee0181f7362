"""A scripted and a traced TorchScript model with in-place ReLU, saved with torch.jit.save,
through `explainer explain` -> `explainer evaluate` -> `explainer report`.

Before: `explain` died on the scripted model with "Can't set constant 'inplace'" (evaluating
wrote ``inplace = False`` on script modules) and `evaluate` on the traced one (the
randomization check's deep copy made its parameters non-leaf); both as raw tracebacks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attribution_helpers import make_inplace_relu_cnn
from typer.testing import CliRunner

from explainer.cli import app

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_model_goes_through_explain_evaluate_report(tmp_path, how):
    x = np.random.default_rng(0).random((6, 3, 12, 12), dtype=np.float32)
    data, model_file = tmp_path / "x.npz", tmp_path / f"{how}.pt"
    np.savez(data, x=x, y=np.arange(6) % 3)
    net = make_inplace_relu_cnn()
    compiled = (
        torch.jit.script(net) if how == "script" else torch.jit.trace(net, torch.from_numpy(x))
    )
    torch.jit.save(compiled, str(model_file))
    store, page = tmp_path / "s.zarr", tmp_path / "r.html"

    out = _run(
        "explain",
        "--model",
        str(model_file),
        "--data",
        str(data),
        "--store",
        str(store),
        "--method",
        "saliency",
        "--method",
        "integrated_gradients",
        "--param",
        "integrated_gradients.n_steps=16",
        "--batch-size",
        "3",
        "--no-progress",
    )
    assert "6/6 samples" in out
    out = _run("evaluate", str(store), "--sample", "6", "--no-progress")
    assert "model randomization sanity check" in out and "saved trust scores" in out
    _run("report", str(store), "--out", str(page))
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "integrated_gradients" in html
