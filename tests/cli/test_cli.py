"""The `explainer` command line: typer's runner, and once as a real subprocess."""

from __future__ import annotations

import subprocess
import sys

import torch
from torch import nn
from typer.testing import CliRunner

import explainer as ex
from explainer.cli import app

runner = CliRunner()


def test_methods_lists_every_registered_method():
    result = runner.invoke(app, ["methods"])
    assert result.exit_code == 0
    for info in ex.list_methods():
        assert info.name in result.output


def test_report_builds_html_from_saved_explanations(tmp_path):
    model = ex.wrap(nn.Linear(3, 2), modality="tabular")
    path = ex.explain(model, torch.randn(2, 3), "saliency", progress=False).save(tmp_path / "s.npz")
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_bad_file_prints_one_line_error_without_traceback(tmp_path):
    result = runner.invoke(
        app, ["report", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


def test_demo_writes_self_contained_report(tmp_path):
    out = tmp_path / "demo.html"
    result = runner.invoke(app, ["demo", "--out", str(out), "--n-images", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    for method in ("saliency", "integrated_gradients", "kernel_shap"):
        assert method in html
    assert "https://" not in html and "http://" not in html


def test_cli_runs_as_a_real_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "explainer.cli", "methods"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "integrated_gradients" in proc.stdout


def test_layers_lists_the_demo_cnns_modules_and_marks_the_default_cam_layer():
    result = runner.invoke(app, ["layers", "--model", "demo", "--shape", "3,64,64"])
    assert result.exit_code == 0, result.output
    marked = [line for line in result.output.splitlines() if line.startswith("→")]
    assert len(marked) == 1 and "features " in marked[0] and "(1, 64, 8, 8)" in marked[0]
    from_data = runner.invoke(app, ["layers", "--model", "demo", "--data", "demo"])
    assert from_data.exit_code == 0 and from_data.output == result.output


def test_layers_needs_one_example_and_says_so_in_one_line():
    for args in ([], ["--shape", "3,x"], ["--shape", "3,64,64", "--data", "demo"]):
        result = runner.invoke(app, ["layers", "--model", "demo", *args])
        assert result.exit_code == 2 and result.output.startswith("error:"), result.output
        assert "Traceback" not in result.output
