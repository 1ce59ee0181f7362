"""`explainer explain` states a completeness gap above the method's tolerance on stderr: one
`warning:` line per method after the run, not one per batch, not a Python traceback-style
warning dump."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from attribution_helpers import init_parameters, make_linear
from torch import nn
from typer.testing import CliRunner

from explainer.cli import app

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


def _files(tmp_path, net: nn.Module, n_features: int) -> list[str]:
    """A TorchScript model file and a .npy of 6 rows: the --model / --data arguments."""
    model, data = tmp_path / "net.ts", tmp_path / "x.npy"
    torch.jit.script(net.eval()).save(str(model))
    np.save(data, np.linspace(-2, 2, 6 * n_features, dtype=np.float32).reshape(6, n_features))
    return ["--model", str(model), "--data", str(data), "--modality", "tabular"]


def _explain_args(files: list[str], store) -> list[str]:
    return [
        "explain",
        *files,
        "--store",
        str(store),
        "--method",
        "integrated_gradients",
        "--param",
        "integrated_gradients.n_steps=2",
        "--batch-size",
        "2",
        "--target",
        "0",
        "--no-progress",
    ]


def test_explain_prints_a_large_completeness_gap_once_after_the_run(tmp_path):
    net = init_parameters(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2)), 0, 4.0)
    cmd = [
        sys.executable,
        "-m",
        "explainer.cli",
        *_explain_args(_files(tmp_path, net, 4), tmp_path / "s.zarr"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "6/6 samples" in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    [line] = lines  # three batches and a dry run: one line
    assert line.startswith("warning: integrated_gradients: attributions do not add up")
    assert "of 6 samples" in line and "n_steps (now 2)" in line
    assert "ExplainerWarning" not in done.stderr  # no Python warning dump beside it


def test_explain_prints_no_warning_when_the_attributions_add_up(tmp_path):
    files = _files(tmp_path, make_linear(n_features=4), 4)
    result = CliRunner().invoke(app, _explain_args(files, tmp_path / "s.zarr"))
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "warning" not in result.stderr
