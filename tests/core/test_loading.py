"""load_model reads TorchScript, torch.export and state_dict files and never unpickles code;
argument errors and files it cannot load give a message in the project's format."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import pytest
import torch
from error_checks import assert_message_format
from torch import nn

import explainer as ex
from explainer.demo.cnn import DemoCNN, load_demo_cnn

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


class OpensAFile:
    """Unpickling this creates a file: the stand-in for any code a pickle can run."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def export(net: nn.Module, path, batch_dynamic: bool = True) -> None:
    x = torch.randn(2, 5)
    shapes = ({0: torch.export.Dim("batch")},) if batch_dynamic else None
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=shapes), path)


# -- formats ------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_round_trip_gives_identical_outputs(tmp_path, how):
    net, x = small_net(), torch.randn(4, 5)
    compiled = torch.jit.script(net) if how == "script" else torch.jit.trace(net, x)
    compiled.save(tmp_path / "net.bin")  # no telling suffix: detected by content
    model = ex.load_model(tmp_path / "net.bin", modality="tabular")
    assert model.name == "net" and not model.net.training
    torch.testing.assert_close(model.net(x), net(x), rtol=0, atol=0)


def test_export_round_trip_gives_identical_outputs_and_gradients_for_saliency(tmp_path):
    net, x = small_net(), torch.randn(4, 5)
    export(net, tmp_path / "net.pt2")
    model = ex.load_model(tmp_path / "net.pt2", modality="tabular", class_names=["a", "b", "c"])
    torch.testing.assert_close(model.net(x), net(x), rtol=0, atol=0)
    got = ex.explain(model, x, "saliency", target=0, progress=False).attributions
    want = ex.explain(ex.wrap(net, modality="tabular"), x, "saliency", target=0, progress=False)
    torch.testing.assert_close(got, want.attributions)


def test_export_with_a_fixed_batch_size_says_to_export_a_dynamic_batch(tmp_path):
    export(small_net(), tmp_path / "static.pt2", batch_dynamic=False)
    model = ex.load_model(tmp_path / "static.pt2", modality="tabular")
    with pytest.raises(ex.ModelError, match="dynamic_shapes"):
        ex.explain(model, torch.randn(3, 5), "saliency", progress=False)


def test_state_dict_with_factory_string_builds_the_demo_cnn(tmp_path):
    torch.save(load_demo_cnn().state_dict(), tmp_path / "cnn.pt")
    model = ex.load_model(tmp_path / "cnn.pt", factory="explainer.demo.cnn:DemoCNN")
    assert isinstance(model.net, DemoCNN) and model.modality == "image"
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(model.net(x), load_demo_cnn()(x), rtol=0, atol=0)
    exp = ex.explain(model, x, "saliency", progress=False)
    assert exp.attributions.shape == x.shape and exp.attributions.abs().sum() > 0


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict"])
def test_state_dict_inside_a_training_checkpoint_with_callable_factory(tmp_path, key):
    net, x = small_net(), torch.randn(3, 5)
    torch.save({key: net.state_dict(), "epoch": 7}, tmp_path / "ckpt.pt")
    model = ex.load_model(tmp_path / "ckpt.pt", factory=small_net, name="mine")
    assert model.name == "mine" and not model.net.training
    torch.testing.assert_close(model.net(x), net(x), rtol=0, atol=0)


def test_demo_names_load_the_shipped_models_with_their_metadata():
    cnn = ex.load_model("demo")
    assert cnn.modality == "image" and cnn.class_names[0] == "circle"
    tab = ex.load_model("demo-tabular")
    assert tab.modality == "tabular" and tab.class_names == ("malignant", "benign")


# -- refusing unsafe files ----------------------------------------------------------------
def test_pickled_whole_model_is_refused_with_the_safe_alternatives(tmp_path):
    torch.save(small_net(), tmp_path / "whole.pt")
    with pytest.raises(ex.ModelError) as info:
        ex.load_model(tmp_path / "whole.pt", factory=small_net)
    text = str(info.value)
    assert "weights_only" in text and "state_dict" in text and "torch.jit" in text
    assert "Sequential" in text  # torch's reason: the global it refused
    assert_message_format(info.value)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_not_executed(tmp_path, writer):
    marker, path = tmp_path / "pwned", tmp_path / "model.pt"
    if writer == "torch.save":
        torch.save(OpensAFile(marker), path)
    else:
        path.write_bytes(pickle.dumps(OpensAFile(marker), protocol=2))
    with pytest.raises(ex.ExplainerError):
        ex.load_model(path, factory=small_net)
    assert not marker.exists()


def test_malicious_member_in_an_export_archive_is_not_executed(tmp_path):
    # torch.export.load retries sample inputs with weights_only=False when the safe load
    # fails, so a poisoned member would run: load_model must refuse the archive first.
    marker, good, bad = tmp_path / "pwned", tmp_path / "good.pt2", tmp_path / "bad.pt2"
    export(small_net(), good)
    poison = io.BytesIO()
    torch.save(OpensAFile(marker), poison)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, poison.getvalue() if "sample_inputs" in info.filename else data)
    with pytest.raises(ex.ModelError, match="sample_inputs") as info:
        ex.load_model(bad)
    assert not marker.exists()
    assert_message_format(info.value)


def test_export_payload_path_outside_its_folder_is_refused(tmp_path):
    good, bad = tmp_path / "good.pt2", tmp_path / "bad.pt2"
    export(small_net(), good)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("weights_config.json"):
                config = json.loads(data)
                next(iter(config["config"].values()))["path_name"] = "../../.data/version"
                data = json.dumps(config).encode()
            dst.writestr(info, data)
    with pytest.raises(ex.ModelError, match="outside its folder"):
        ex.load_model(bad)


def test_torchscript_archive_missing_a_member_is_a_model_error_naming_it(tmp_path):
    torch.jit.script(small_net()).save(tmp_path / "whole.pt")
    with (
        zipfile.ZipFile(tmp_path / "whole.pt") as src,
        zipfile.ZipFile(tmp_path / "cut.pt", "w") as dst,
    ):
        for info in src.infolist():
            if not info.filename.endswith("/data.pkl"):
                dst.writestr(info, src.read(info))
    with pytest.raises(ex.ModelError, match="cut.pt: .*data.pkl") as info:
        ex.load_model(tmp_path / "cut.pt")
    assert "compatible torch version" in str(info.value)
    assert_message_format(info.value)


def test_unreadable_file_is_a_model_error(tmp_path):
    (tmp_path / "notes.pt").write_text("not a model")
    with pytest.raises(ex.ModelError) as info:
        ex.load_model(tmp_path / "notes.pt", factory=small_net)
    assert_message_format(info.value)


# -- argument errors ----------------------------------------------------------------------
def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(ex.InputError, match="does not exist") as info:
        ex.load_model(tmp_path / "nope.pt")
    assert_message_format(info.value)


def test_state_dict_without_factory_asks_for_one(tmp_path):
    torch.save(small_net().state_dict(), tmp_path / "w.pt")
    with pytest.raises(ex.InputError, match="factory=") as info:
        ex.load_model(tmp_path / "w.pt")
    assert_message_format(info.value)


@pytest.mark.parametrize(
    "factory, hint",
    [
        ("explainer.demo.cnn.DemoCNN", "colon"),
        ("explainer.no_such_module:Net", "No module named"),
        ("explainer.demo.cnn:NoSuchNet", "DemoCNN"),  # lists the names that exist
        ("explainer.demo.cnn:WEIGHTS_PATH", "PosixPath"),  # not callable
        ("explainer.demo.cnn:load_demo_cnn.__doc__", "str"),
        ("explainer.demo.shapes:make_shapes", "no arguments"),
        (lambda: torch.zeros(3), "Tensor"),  # returns a non-Module
    ],
)
def test_bad_factory_is_an_input_error(tmp_path, factory, hint):
    torch.save(small_net().state_dict(), tmp_path / "w.pt")
    with pytest.raises(ex.InputError, match=hint) as info:
        ex.load_model(tmp_path / "w.pt", factory=factory)
    assert_message_format(info.value)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = small_net().state_dict()
    state["extra.weight"] = state.pop("0.weight")
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ex.ModelError) as info:
        ex.load_model(tmp_path / "w.pt", factory=small_net)
    text = str(info.value)
    assert "missing keys ['0.weight']" in text and "unexpected keys ['extra.weight']" in text
    assert_message_format(info.value)


def test_weights_of_the_wrong_shape_are_a_model_error(tmp_path):
    torch.save(small_net().state_dict(), tmp_path / "w.pt")
    wider = lambda: nn.Sequential(nn.Linear(5, 9), nn.ReLU(), nn.Linear(9, 3))  # noqa: E731
    with pytest.raises(ex.ModelError, match="size mismatch for 0.weight") as info:
        ex.load_model(tmp_path / "w.pt", factory=wider)
    assert_message_format(info.value)
