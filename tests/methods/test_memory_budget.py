"""The memory budget bounds the measured peak (RSS over the call's baseline, in a fresh
process) at every budget down to a stated floor; below it an InputError names the minimum.
Step and sample counts that expand the batch have a stated maximum, and Gauss-Legendre
nodes stay exact (and cheap) at large counts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import explainer as ex
from explainer._runtime import Runtime, chunk_size, chunks, network_cost, parse_bytes
from explainer.methods._ig.quadrature import MAX_STEPS, gauss_legendre
from explainer.methods.gradient_shap import MAX_SAMPLES

# A peak may exceed the budget by this factor plus this many bytes: the interpreter's own
# allocations while a method runs, and page granularity, are not under the budget's control.
# (The allocator's retention is: the budget counts it, see explainer._runtime.allocator_slack.)
TOLERANCE, SLACK = 1.1, 8e6

# One fresh process per measurement: no run inherits another's allocator state. The network
# is a small CNN at 224 px (strided, so that 2048 rows of IG take seconds, not minutes); its
# first convolution has 3 input channels, whose padded copies oneDNN allocates unseen by
# any operator, the case the budget once undercounted.
PROBE = textwrap.dedent(
    """
    import json, sys, torch
    from torch import nn
    import explainer as ex

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    ).eval()
    model = ex.wrap(net, modality="image")
    x = torch.rand(8, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    method, params, budget = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    if method == "gradient_shap":
        params["background"] = torch.rand(4, 3, 224, 224, generator=torch.Generator().manual_seed(2))

    def status(key):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key))

    # Warm up the code paths (imports, kernels) of the same method on a tiny input, so that
    # the measured peak is the call's own and not the first use of torch.
    small = {k: v[:, :, :32, :32] if torch.is_tensor(v) else v for k, v in params.items()}
    ex.explain(model, x[:1, :, :32, :32], method, target=0, progress=False, **small)
    base = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the high-water mark VmHWM to the current RSS
    try:
        ex.explain(model, x, method, target=0, progress=False, memory_budget=budget, **params)
    except ex.InputError as err:
        print(json.dumps({"error": str(err)}))
    else:
        print(json.dumps({"peak": status("VmHWM:") - base}))
    """
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/status and clear_refs"
)


def measure(method: str, params: dict, budget: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, method, json.dumps(params), budget],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def stated_minimum(error: str) -> int:
    return int(re.search(r"at least (\d+) bytes", error).group(1))


CASES = [
    ("integrated_gradients", {"n_steps": 256}),
    ("smoothgrad", {"n_samples": 32}),
    ("gradient_shap", {"n_samples": 32}),
]


@linux_only
@pytest.mark.parametrize(
    "budget", ["50MB", "200MB", pytest.param("1GB", marks=pytest.mark.slow)]
)  # 50 and 200 MB were overshot 1.5-2.6x before; 1 GB, honoured then, takes longest
@pytest.mark.parametrize(("method", "params"), CASES, ids=[c[0] for c in CASES])
def test_the_peak_rss_stays_within_the_budget(method, params, budget):
    result = measure(method, params, budget)
    assert "peak" in result, result
    limit = parse_bytes(budget) * TOLERANCE + SLACK
    assert result["peak"] <= limit, f"peak {result['peak'] / 1e6:.1f} MB over {budget}"


@linux_only
def test_a_budget_below_the_floor_names_a_minimum_that_then_works():
    method, params = "integrated_gradients", {"n_steps": 16}  # one row a chunk at the floor
    refused = measure(method, params, "5MB")
    assert "error" in refused, refused
    assert "`memory_budget`" in refused["error"] and "Pass memory_budget=" in refused["error"]
    floor = stated_minimum(refused["error"])
    assert floor > 5e6
    at_floor = measure(method, params, str(floor))
    assert "peak" in at_floor, at_floor
    assert at_floor["peak"] <= floor * TOLERANCE + SLACK


def cnn() -> ex.Model:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    )
    return ex.wrap(net.eval(), modality="image")


def test_one_byte_below_the_stated_minimum_is_refused_and_the_minimum_runs_one_row_a_chunk():
    model, x = cnn(), torch.rand(2, 3, 8, 8)

    def run(budget):
        return ex.explain(model, x, "ig", target=0, n_steps=8, progress=False, memory_budget=budget)

    with pytest.raises(ex.InputError, match="memory_budget") as err:
        run(1)
    floor = stated_minimum(str(err.value))
    assert "one row's forward+backward pass" in str(err.value)
    with pytest.raises(ex.InputError, match=f"at least {floor} bytes"):
        run(floor - 1)
    torch.testing.assert_close(run(floor).attributions, run(None).attributions)


def test_chunks_at_the_floor_hold_one_row_and_grow_with_the_budget():
    model, sample = cnn(), torch.rand(3, 8, 8)
    with model.evaluating():
        cost = network_cost(model, sample)
        floor = cost.peak(1)
        assert chunk_size(model, sample, Runtime(False, floor)) == 1
        assert chunk_size(model, sample, Runtime(False, 100 * floor)) > 10
        with pytest.raises(ex.InputError, match="at least"):
            chunk_size(model, sample, Runtime(False, floor - 1))
        # Under the default budget nothing is refused: chunks are at least one row.
        assert chunk_size(model, sample, Runtime(False)) >= 1


def test_the_measured_row_cost_counts_the_gradient_and_the_activations():
    model = cnn()
    sample = torch.rand(3, 8, 8)
    with model.evaluating():
        cost = network_cost(model, sample)
    # per row at least: the input's gradient and the conv's (4, 8, 8) output, float32
    assert cost.per_row >= 4 * (3 * 8 * 8 + 4 * 8 * 8)


def test_chunks_cover_the_range_in_order():
    assert [(s.start, s.stop) for s in chunks(7, 3)] == [(0, 3), (3, 6), (6, 7)]


def tiny() -> ex.Model:
    torch.manual_seed(0)
    return ex.wrap(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), modality="tabular")


@pytest.mark.parametrize("n_steps", [MAX_STEPS + 1, 10**9])
def test_n_steps_above_the_maximum_is_an_input_error_not_a_memory_error(n_steps):
    with pytest.raises(ex.InputError, match=f"at most {MAX_STEPS}.*tolerance="):
        ex.explain(tiny(), torch.ones(1, 4), "ig", target=0, n_steps=n_steps, progress=False)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_middle"])
def test_the_maximum_step_count_runs_and_is_complete(rule):
    e = ex.explain(tiny(), torch.ones(1, 4), "ig", target=0, n_steps=MAX_STEPS, rule=rule,
                   progress=False)  # fmt: skip
    assert e.params["n_steps"] == MAX_STEPS
    assert float(e.extras["relative_gap"][0]) < 1e-3


def test_max_steps_of_the_adaptive_rule_has_the_same_maximum():
    with pytest.raises(ex.InputError, match=f"`max_steps`.*at most {MAX_STEPS}"):
        ex.explain(tiny(), torch.ones(1, 4), "ig", target=0, tolerance=0.01,
                   max_steps=10**9, progress=False)  # fmt: skip


def test_gradient_shap_n_samples_above_the_maximum_is_an_input_error():
    with pytest.raises(ex.InputError, match=f"`n_samples`.*at most {MAX_SAMPLES}"):
        ex.explain(tiny(), torch.ones(1, 4), "gradient_shap", target=0, n_samples=10**9,
                   background=torch.zeros(2, 4), progress=False)  # fmt: skip


def test_kernel_shap_n_samples_above_the_maximum_is_an_input_error():
    from explainer.methods.kernel_shap import MAX_EVALUATIONS

    with pytest.raises(ex.InputError, match=f"`n_samples`.*at most {MAX_EVALUATIONS}"):
        ex.explain(tiny(), torch.ones(1, 4), "kernel_shap", target=0, n_samples=10**9,
                   background=torch.zeros(2, 4), progress=False)  # fmt: skip


@pytest.mark.parametrize("n", [1, 2, 7, 64, 256])
def test_gauss_legendre_is_numpys_leggauss_up_to_256_nodes(n):
    nodes, weights = gauss_legendre(n)
    ref_nodes, ref_weights = np.polynomial.legendre.leggauss(n)
    assert np.array_equal(nodes, ref_nodes) and np.array_equal(weights, ref_weights)


@pytest.mark.parametrize("n", [257, 300, 1001, 2000])
def test_gauss_legendre_nodes_agree_with_numpy_beyond(n):
    nodes, weights = gauss_legendre(n)
    ref_nodes, ref_weights = np.polynomial.legendre.leggauss(n)
    np.testing.assert_allclose(nodes, ref_nodes, rtol=0, atol=1e-15)
    # numpy's own weights are off by up to ~1e-8 relative at the ends for n ~ 1000-2000
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-7, atol=0)


@pytest.mark.parametrize("n", [4000, MAX_STEPS])
def test_gauss_legendre_at_large_n_integrates_polynomials_exactly(n):
    nodes, weights = gauss_legendre(n)
    assert np.all(np.diff(nodes) > 0) and np.array_equal(nodes, -nodes[::-1])
    assert abs(weights.sum() - 2) < 1e-13
    for degree in (2, 10, 100, 2 * n - 2):  # exact up to degree 2n - 1
        exact = 2 / (degree + 1)
        assert abs(weights @ nodes**degree - exact) <= 1e-12 * exact + 1e-15
