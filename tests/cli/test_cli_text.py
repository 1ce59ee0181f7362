"""The command line on texts: .txt and .jsonl data, the demo text model, a user's text model
as a state_dict with --factory and --tokenizer."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

import explainer as ex
from explainer.cli import app
from explainer.demo.text import load_text_model

runner = CliRunner()


def test_texts_from_a_txt_file_are_explained_evaluated_and_reported(tmp_path):
    data = tmp_path / "reviews.txt"
    data.write_text("the film was great\n\nindeed the plot was awful\nthe acting felt dull\n")
    store = tmp_path / "t.zarr"
    result = runner.invoke(app, ["explain", "--model", "demo-text", "--data", str(data), "--store",
                                 str(store), "--method", "kernel_shap", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    opened = ex.open_store(store)
    assert opened.n == 3 and opened.modality == "text"  # the empty line is skipped
    assert opened[1:2]["kernel_shap"].tokens[0][1] == "indeed"
    assert runner.invoke(app, ["evaluate", str(store), "--no-progress"]).exit_code == 0
    out = tmp_path / "r.html"
    assert runner.invoke(app, ["report", str(store), "--out", str(out)]).exit_code == 0
    assert 'class="tok"' in out.read_text()


def test_a_jsonl_file_gives_texts_and_labels_and_a_state_dict_takes_factory_and_tokenizer(tmp_path):
    data = tmp_path / "r.jsonl"
    data.write_text(
        '{"review": "the film was great", "y": 1}\n{"review": "the plot was dull", "y": 0}\n'
    )
    weights = tmp_path / "w.pt"
    torch.save(load_text_model().state_dict(), weights)
    store = tmp_path / "j.zarr"
    result = runner.invoke(app, [
        "explain", "--model", str(weights), "--factory", "explainer.demo.text:TinyTransformer",
        "--modality", "text", "--tokenizer", "explainer.demo.text:WordTokenizer",
        "--data", str(data), "--text-field", "review", "--label-field", "y", "--target", "label",
        "--store", str(store), "--method", "gradient_x_input", "--no-progress",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    opened = ex.open_store(store)
    assert opened.labels.tolist() == [1, 0] and opened.targets.tolist() == [1, 0]


def test_bad_text_options_are_one_line_errors(tmp_path):
    data = tmp_path / "r.jsonl"
    data.write_text('{"text": "fine"}\nnot json\n')
    for args in (
        ["--model", "demo-text", "--data", str(data)],
        ["--model", "demo-text", "--data", str(tmp_path / "x.txt")],
        ["--model", "demo", "--data", "demo", "--tokenizer", "no.such:thing"],
    ):
        result = runner.invoke(
            app, ["explain", *args, "--store", str(tmp_path / "s.zarr"), "--no-progress"]
        )
        assert result.exit_code == 2 and result.output.startswith("error:"), result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "s.zarr").exists()
