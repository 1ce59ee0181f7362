"""Cost of trust scores: ``ex.evaluate`` with the default metrics on 8 demo images x 3 methods.

Reports seconds per metric group and the total, and the cost of captum's own
``infidelity`` / ``sensitivity_max`` on the same explanations (same number of perturbations)
for scale. 8 images take about 95 s on 2 cores (32, the earlier default, 378 s), so
``benchmarks.run_all`` runs it only when asked (``--only metrics``). Usage:
    python -m benchmarks.bench_metrics [--quick] [--n 32]
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def run(quick: bool = False, n: int | None = None) -> dict:
    """Seconds per metric group on ``n`` images (default 8; ``quick``: 4)."""
    from captum.metrics import infidelity as captum_infidelity
    from captum.metrics import sensitivity_max as captum_sensitivity_max

    import explainer as ex
    from explainer.demo import CLASS_NAMES, load_demo_cnn, make_shapes
    from explainer.metrics.suite import METRIC_GROUPS

    torch.set_num_threads(2)
    n = n or (4 if quick else 8)
    data = make_shapes(n, split="test", seed=5)
    model = ex.wrap(load_demo_cnn(), class_names=CLASS_NAMES)
    methods = {
        "saliency": {},
        "integrated_gradients": {"n_steps": 32},
        "kernel_shap": {"n_samples": 256},
    }
    exps = ex.explain_many(model, data.images, methods, progress=False)
    out: dict = {"n_images": n, "methods": list(methods), "seconds_by_group": {}}
    for group in METRIC_GROUPS:
        t = time.perf_counter()
        ex.evaluate(exps, model, metrics=[group], masks={"object": data.masks}, progress=False)
        out["seconds_by_group"][group] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    scores = ex.evaluate(exps, model, masks={"object": data.masks}, progress=False)
    out["seconds_default_total"] = round(time.perf_counter() - t, 3)
    out["rows"] = len(scores)

    ig = exps[1]
    gen = torch.Generator().manual_seed(0)
    std = 0.1 * float(data.images.std())

    def perturb(inputs):
        noise = torch.randn(inputs.shape, generator=gen) * std
        return noise, inputs - noise

    t = time.perf_counter()
    captum_infidelity(
        model.net.eval(),
        perturb,
        data.images,
        ig.attributions,
        target=ig.targets,
        n_perturb_samples=8,
    )
    out["captum_infidelity_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    ex.evaluate([ig], model, metrics=["infidelity"], progress=False)
    out["explainer_infidelity_s"] = round(time.perf_counter() - t, 3)

    def saliency(inputs, target):
        as_tuple = isinstance(
            inputs, tuple
        )  # captum passes (and expects back) a tuple on its first call
        attr = ex.explain(
            model, inputs[0] if as_tuple else inputs, "saliency", target=target, progress=False
        ).attributions
        return (attr,) if as_tuple else attr

    t = time.perf_counter()
    captum_sensitivity_max(
        saliency,
        data.images,
        n_perturb_samples=8,
        target=exps[0].targets,
        max_examples_per_batch=8 * n,
    )
    out["captum_sensitivity_max_saliency_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    ex.evaluate([exps[0]], model, metrics=["robustness"], n_sensitivity=8, progress=False)
    out["explainer_max_sensitivity_saliency_s"] = round(time.perf_counter() - t, 3)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None, help="images (default 8)")
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.n), indent=2))
