"""Devices: checked by name, the default budget read from the device, results on the CPU.

No GPU is needed: the decisions are tested on the CPU (the free-memory reader is a plain
function the budget takes), and the one test that runs a model on CUDA is skipped without one.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import explainer as ex
from explainer._checks import check_device
from explainer._runtime import default_memory_budget
from explainer.cli import app

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")

GIB = 2**30


def test_cpu_device_is_accepted():
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "", 3, None])
def test_unknown_device_name_is_an_input_error_listing_the_kinds(name):
    with pytest.raises(ex.InputError, match=r"cpu, cuda, cuda:N or mps") as info:
        check_device(name)
    assert 'device="cpu"' in str(info.value)


def test_cuda_device_that_is_not_available_is_a_clear_input_error():
    # no machine has 100 GPUs: the check refuses it with or without CUDA
    with pytest.raises(ex.InputError, match=r"'cuda:99', but this machine has") as info:
        check_device("cuda:99", "--device")
    assert "--device=" in str(info.value)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_device_that_is_not_available_is_a_clear_input_error():
    with pytest.raises(ex.InputError, match="Metal backend is not available"):
        check_device("mps")


def test_budget_of_a_cuda_device_is_a_quarter_of_its_free_memory():
    asked = []

    def free_memory(device: torch.device) -> int:
        asked.append(device)
        return 8 * GIB

    assert default_memory_budget("cuda:1", free_memory=free_memory) == 2 * GIB
    assert asked == [torch.device("cuda:1")]
    # capped at 4 GiB, at least 256 MiB, as for the host
    assert default_memory_budget("cuda", free_memory=lambda d: 100 * GIB) == 4 * GIB
    assert default_memory_budget("cuda", free_memory=lambda d: GIB // 8) == 256 * 2**20


@pytest.mark.parametrize("device", [None, "cpu", "mps"])
def test_budget_of_the_host_never_reads_gpu_memory(device):
    def free_memory(device: torch.device) -> int:
        raise AssertionError("the GPU's free memory was read for a host device")

    budget = default_memory_budget(device, free_memory=free_memory)
    assert 256 * 2**20 <= budget <= 4 * GIB


def test_results_of_a_cpu_model_are_cpu_tensors():
    model = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
    e = ex.explain(model, np.ones((2, 3), dtype=np.float32), "saliency", progress=False)
    assert {t.device.type for t in (e.attributions, e.inputs, e.scores, e.targets)} == {"cpu"}


def _cli_files(tmp_path) -> list[str]:
    model, data = tmp_path / "net.pt", tmp_path / "x.npy"
    torch.manual_seed(0)
    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()).save(str(model))
    np.save(data, np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4))
    return ["--model", str(model), "--data", str(data), "--modality", "tabular"]


def test_cli_explain_with_device_cpu_works(tmp_path):
    store = tmp_path / "s.zarr"
    args = ["explain", *_cli_files(tmp_path), "--store", str(store), "--method", "saliency"]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["evaluate", str(store), "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("device", ["cuda:99", "tpu"])
def test_cli_unavailable_device_is_one_line_error_before_any_work(tmp_path, device):
    store = tmp_path / "s.zarr"
    args = ["explain", *_cli_files(tmp_path), "--store", str(store), "--device", device]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "error: `--device`" in result.output and "Traceback" not in result.output
    assert not store.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_computes_there_and_returns_cpu_results():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x, background = torch.randn(4, 5), torch.randn(6, 5)
    on_cpu = ex.wrap(net, modality="tabular")
    on_gpu = ex.wrap(copy.deepcopy(net).cuda(), modality="tabular")
    for method, options in [
        ("integrated_gradients", {"baselines": background[:1]}),
        ("gradient_shap", {"background": background, "seed": 0}),
        ("kernel_shap", {"background": background, "n_samples": 64, "seed": 0}),
    ]:
        e = ex.explain(on_gpu, x, method, target=0, progress=False, **options)
        assert e.attributions.device.type == "cpu"
        if method != "gradient_shap":  # its draws come from the device's generator
            reference = ex.explain(on_cpu, x, method, target=0, progress=False, **options)
            torch.testing.assert_close(e.attributions, reference.attributions, rtol=1e-3, atol=1e-4)
