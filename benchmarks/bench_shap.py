"""Shapley estimation error at equal model-evaluation budget: our kernel_shap vs shap and captum.

Games with exact Shapley values from all 2^16 coalitions, computed once per game in the run:

* images: 16 SLIC superpixels of skimage images resized to 64x64, absent superpixels filled
  with the image's channel means, target logit 3 of a small random CNN with weights x2 (the
  anchor of /work/shared/anchors/kernelshap_exact.py, ReLU) and the same network with GELU;
* tabular: an MLP trained on sklearn's breast-cancer data (16 of the 30 columns,
  standardized), v(S) = mean over 20 background rows, rows of the test split explained.

Every method gets the same budget of coalition evaluations (empty and full included) and
the same seeds; errors are relative L2 against the exact values, mean over seeds; s/call is
the median wall time of one call (methods interleaved per seed, same process, 2 threads).
shap's Permutation explainer spends at most the budget in whole antithetic permutations
(99 of 128, 2046 of 2048). Image anchors run exactly as in the anchor script (captum on the
image with the fill as baseline; shap on the coalition indicator space); on tabular games
every anchor runs on the indicator space of the same game. Usage:
    python -m benchmarks.bench_shap [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

BUDGETS = (128, 256, 512, 1024, 2048)
TARGET = 3  # the anchor's logit
M = 16
ANCHORS = (
    "shap_permutation",
    "captum_kernel_shap",
    "captum_shapley_value_sampling",
    "shap_kernel_explainer",
)
# Image games (image, activation); all four anchors run on the first (the anchor game) and on tabular
# games, shap's Permutation explainer (the best anchor everywhere) on all. Each image game costs
# ~21 s of exact enumeration (2^16 forwards) plus ~10 s of methods on 2 cores; to keep the whole
# suite under 15 minutes (with bench_scale) the default runs 3 of the 6 (both networks), keeping
# the anchor game, the one where ours does worst (coffee) and one GELU game; ``--all-images``
# runs all 6 (in the last full runs chelsea/relu, rocket/relu and chelsea/gelu had error ratios
# within the range of the others).
ALL_IMAGES = (
    ("astronaut", "relu"),
    ("coffee", "relu"),
    ("chelsea", "relu"),
    ("rocket", "relu"),
    ("astronaut", "gelu"),
    ("chelsea", "gelu"),
)
FULL_IMAGES = (ALL_IMAGES[0], ALL_IMAGES[1], ALL_IMAGES[4])
FULL_TABULAR_ROWS = (0, 1, 2)


def permutation_evaluations(budget: int) -> int:
    """Coalitions shap's Permutation explainer evaluates for ``max_evals=budget``: whole antithetic
    permutations of 2M + 1 (``ours_matched`` runs at this budget, for a like-for-like wall time)."""
    return budget // (2 * M + 1) * (2 * M + 1)


# -- games ----------------------------------------------------------------------------------


def anchor_cnn(activation: str) -> nn.Module:
    """The anchor's CNN (torch.manual_seed(0) init, weights x2), ReLU or GELU, global RNG untouched."""
    act = {"relu": nn.ReLU, "gelu": nn.GELU}[activation]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            act(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            act(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1),
            act(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(128, 10),
        ).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    return net


def image_and_segments(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(64, 64, 3) float32 image and 16 SLIC labels (the anchor's settings for astronaut)."""
    from skimage import data, segmentation, transform

    img = getattr(data, name)()
    img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
    img = transform.resize(img, (64, 64), anti_aliasing=True).astype(np.float32)
    for compactness, n in itertools.chain(
        [(20, 20)], itertools.product((20, 10, 30, 5, 40, 15), range(12, 60))
    ):
        seg = segmentation.slic(img, n_segments=n, compactness=compactness, start_label=0)
        if seg.max() + 1 == M:
            return img, seg
    raise RuntimeError(f"no SLIC setting gives {M} segments on {name}")


class Game:
    """v(z) for coalition indicator rows z (k, 16), its exact Shapley values, and a row counter."""

    def __init__(
        self, name: str, value: Callable[[torch.Tensor], torch.Tensor], n_ref: int, chunk: int = 64
    ):
        # chunk: coalitions per forward (64 images of 64x64 stay in cache; tabular rows are cheap)
        self.name, self._value, self.n_ref, self.rows, self.chunk = name, value, n_ref, 0, chunk
        start = time.perf_counter()
        table = self(np.array(list(itertools.product([0, 1], repeat=M)), dtype=np.float32))
        self.exact_seconds = time.perf_counter() - start
        codes = np.arange(2**M)
        sizes = np.array([bin(c).count("1") for c in codes])
        weight = np.array(
            [math.factorial(s) * math.factorial(M - s - 1) / math.factorial(M) for s in range(M)]
        )
        self.exact = np.zeros(M)
        for k in range(M):  # player k is bit M-1-k of the code (itertools.product order)
            bit = 1 << (M - 1 - k)
            without = codes[codes & bit == 0]
            self.exact[k] = np.sum(weight[sizes[without]] * (table[without | bit] - table[without]))

    @torch.no_grad()
    def __call__(self, masks) -> np.ndarray:
        masks = torch.as_tensor(np.asarray(masks), dtype=torch.float32)
        out = [self._value(masks[i : i + self.chunk]) for i in range(0, len(masks), self.chunk)]
        return torch.cat(out).double().numpy()

    def error(self, phi: np.ndarray) -> float:
        return float(
            np.linalg.norm(np.asarray(phi, dtype=float) - self.exact) / np.linalg.norm(self.exact)
        )


class Counted(nn.Module):
    """A network that counts the rows it evaluates (coalitions x references)."""

    def __init__(self, net: nn.Module, game_holder: list):
        super().__init__()
        self.net, self.holder = net, game_holder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.holder[0] is not None:  # None while the game enumerates its exact values
            self.holder[0].rows += len(x)
        return self.net(x)


def image_game(image: str, activation: str) -> dict:
    img, seg = image_and_segments(image)
    holder: list = [None]
    net = Counted(anchor_cnn(activation), holder)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]  # the anchor's tensor (channels-last strides)
    fill = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    segt = torch.from_numpy(seg)
    onehot = torch.stack([segt == k for k in range(M)]).float()  # (16, H, W)

    def value(z: torch.Tensor) -> torch.Tensor:
        pix = torch.einsum("nk,khw->nhw", z, onehot)[:, None]
        return net(x * pix + fill * (1 - pix))[:, TARGET]

    game = Game(f"{image}/{activation}", value, n_ref=1)
    holder[0] = game
    mask = segt[None, None].expand(1, 3, 64, 64).contiguous()

    def superpixel_means(a: torch.Tensor) -> np.ndarray:  # captum repeats phi_k on every pixel of k
        return np.array([a[0, 0][segt == k].mean().item() for k in range(M)])

    from captum.attr import KernelShap, ShapleyValueSampling

    import explainer as ex

    model = ex.wrap(net, modality="image")
    methods = {
        "ours": lambda b, s: _ours(
            ex, model, x, b, s, target=TARGET, feature_mask=segt, fill="mean"
        ),
        "ours_matched": lambda b, s: _ours(
            ex,
            model,
            x,
            permutation_evaluations(b),
            s,
            target=TARGET,
            feature_mask=segt,
            fill="mean",
        ),
        "captum_kernel_shap": lambda b, s: superpixel_means(
            _captum(KernelShap, net, x, fill, mask, b, s)
        ),
        "captum_shapley_value_sampling": lambda b, s: superpixel_means(
            _captum(ShapleyValueSampling, net, x, fill, mask, max(1, b // (M + 1)), s)
        ),
    }
    return {"game": game, "methods": {**methods, **_shap_methods(game)}}


def tabular_game(row: int, net: nn.Module, data: dict) -> dict:
    import explainer as ex

    holder: list = [None]
    counted = Counted(net, holder)
    x, background = data["test"][row], data["background"]

    def value(z: torch.Tensor) -> torch.Tensor:
        rows = torch.where(z[:, None, :] > 0.5, x, background[None])  # (k, B, 16)
        return counted(rows.reshape(-1, M))[:, 1].reshape(len(z), -1).mean(1)

    game = Game(f"breast_cancer/row{row}", value, n_ref=len(background), chunk=2048)
    holder[0] = game
    model = ex.wrap(counted, modality="tabular")
    methods = {
        "ours": lambda b, s: _ours(ex, model, x[None], b, s, target=1, background=background),
        "ours_matched": lambda b, s: _ours(
            ex, model, x[None], permutation_evaluations(b), s, target=1, background=background
        ),
    }
    return {"game": game, "methods": {**methods, **_indicator_captum(game), **_shap_methods(game)}}


def breast_cancer_mlp(seed: int = 0) -> tuple[nn.Module, dict]:
    """An MLP (16 -> 32 -> 32 -> 2, weight decay) trained on 16 standardized columns, local RNG."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    columns = list(range(10)) + list(range(20, 26))  # the ten "mean" features and six "worst" ones
    features = bunch.data[:, columns]
    features = (features - features.mean(0)) / features.std(0)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(features), generator=gen)
    xs, ys = torch.tensor(features, dtype=torch.float32)[order], torch.tensor(bunch.target)[order]
    train, test = slice(0, 400), slice(400, None)
    net = nn.Sequential(nn.Linear(M, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (1 / p.shape[-1]) ** 0.5)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xs[train]), ys[train]).backward()
        opt.step()
    net.eval().requires_grad_(False)
    accuracy = float((net(xs[test]).argmax(1) == ys[test]).float().mean())
    return net, {"test": xs[test], "background": xs[train][:20], "accuracy": accuracy}


# -- methods --------------------------------------------------------------------------------


def _ours(ex, model, x, budget, seed, **params):
    exp = ex.explain(model, x, "kernel_shap", n_samples=budget, seed=seed, progress=False, **params)
    return exp.extras["feature_values"][0, :M].numpy(), float(exp.extras["error_estimate"][0])


def _captum(cls, net, x, baseline, mask, n_samples, seed):
    with torch.random.fork_rng():  # captum samples from torch's global generator
        torch.manual_seed(seed)
        return cls(net).attribute(
            x,
            baselines=baseline,
            target=TARGET,
            feature_mask=mask,
            n_samples=n_samples,
            perturbations_per_eval=256,
        )


def _indicator_captum(game: Game) -> dict:
    """captum's samplers on the indicator space: input all ones, baseline all zeros, forward = v."""
    from captum.attr import KernelShap, ShapleyValueSampling

    def forward(z: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(game(z))

    def run(cls, n_samples, seed):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return (
                cls(forward)
                .attribute(
                    torch.ones(1, M),
                    baselines=torch.zeros(1, M),
                    n_samples=n_samples,
                    perturbations_per_eval=256,
                )[0]
                .numpy()
            )

    return {
        "captum_kernel_shap": lambda b, s: run(KernelShap, b, s),
        "captum_shapley_value_sampling": lambda b, s: run(
            ShapleyValueSampling, max(1, b // (M + 1)), s
        ),
    }


def _shap_methods(game: Game) -> dict:
    import shap

    def permutation(budget, seed):
        explainer = shap.explainers.Permutation(
            game, shap.maskers.Independent(np.zeros((1, M))), seed=seed
        )
        return explainer(np.ones((1, M)), max_evals=budget, silent=True).values[0]

    def kernel(budget, seed):
        np.random.seed(
            seed
        )  # shap's KernelExplainer samples from numpy's global generator (restored by the caller)
        explainer = shap.KernelExplainer(game, np.zeros((1, M)))
        return np.array(
            explainer.shap_values(np.ones((1, M)), nsamples=budget, silent=True)
        ).reshape(-1)[:M]

    return {"shap_permutation": permutation, "shap_kernel_explainer": kernel}


# -- the run --------------------------------------------------------------------------------


def measure(spec: dict, budgets, seeds, methods) -> list[dict]:
    game, rows = spec["game"], []
    state = np.random.get_state()
    for name in methods:  # warm-up: imports, caches, the memory probe of kernel_shap
        spec["methods"][name](128, 0)
    np.random.set_state(state)
    for budget in budgets:
        # ours_matched only where shap's whole permutations leave more than 5 % of the budget unused
        names = [
            n
            for n in methods
            if n != "ours_matched" or permutation_evaluations(budget) < 0.95 * budget
        ]
        acc: dict[str, dict] = {
            name: {"errors": [], "seconds": [], "evaluations": [], "estimates": []}
            for name in names
        }
        for seed in seeds:
            for name in names:  # interleaved, so machine load hits every method alike
                state = np.random.get_state()
                game.rows = 0
                start = time.perf_counter()
                out = spec["methods"][name](budget, seed)
                acc[name]["seconds"].append(time.perf_counter() - start)
                np.random.set_state(state)
                phi, estimate = out if isinstance(out, tuple) else (out, None)
                acc[name]["errors"].append(game.error(phi))
                acc[name]["evaluations"].append(game.rows / game.n_ref)
                if estimate is not None:
                    acc[name]["estimates"].append(estimate)
        for name, a in acc.items():
            row = {
                "game": game.name,
                "budget": budget,
                "method": name,
                "error": float(np.mean(a["errors"])),
                "s_per_call": float(np.median(a["seconds"])),
                "evaluations": float(np.mean(a["evaluations"])),
            }
            if a["estimates"]:
                row["errors"], row["error_estimates"] = a["errors"], a["estimates"]
            rows.append(row)
    return rows


def run(quick: bool = False, all_images: bool = False) -> dict:
    """Errors and times of every method on every game; ``quick``: one image game, 2 budgets, 2
    seeds (full: 5 budgets, 3 seeds); ``all_images``: the 6 image games of ALL_IMAGES instead of
    the 3 of FULL_IMAGES."""
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    budgets, seeds = ((128, 512), range(2)) if quick else (BUDGETS, range(3))
    images = FULL_IMAGES[:1] if quick else ALL_IMAGES if all_images else FULL_IMAGES
    tab_rows = () if quick else FULL_TABULAR_ROWS
    start = time.perf_counter()
    rows, exact_seconds = [], {}
    for i, (image, activation) in enumerate(images):
        spec = image_game(image, activation)
        exact_seconds[spec["game"].name] = round(spec["game"].exact_seconds, 1)
        rows += measure(
            spec, budgets, seeds, ["ours", "ours_matched", *(ANCHORS if i == 0 else ANCHORS[:1])]
        )
    if tab_rows:
        net, data = breast_cancer_mlp()
        for row in tab_rows:
            spec = tabular_game(row, net, data)
            exact_seconds[spec["game"].name] = round(spec["game"].exact_seconds, 1)
            rows += measure(spec, budgets, seeds, ["ours", "ours_matched", *ANCHORS])
    return summarize(rows, exact_seconds, budgets, time.perf_counter() - start, quick)


def summarize(rows: list[dict], exact_seconds: dict, budgets, seconds: float, quick: bool) -> dict:
    by = {(r["game"], r["budget"], r["method"]): r for r in rows}
    games = list(dict.fromkeys(r["game"] for r in rows))
    ratios = []
    for game in games:
        for budget in budgets:
            anchors = [by[(game, budget, a)] for a in ANCHORS if (game, budget, a) in by]
            best, fastest, ours = (
                min(anchors, key=lambda r: r["error"]),
                min(anchors, key=lambda r: r["s_per_call"]),
                by[(game, budget, "ours")],
            )
            ratios.append(
                {
                    "game": game,
                    "budget": budget,
                    "ours": ours["error"],
                    "best_anchor": best["method"],
                    "best_anchor_error": best["error"],
                    "error_ratio": ours["error"] / best["error"],
                    "ours_s": ours["s_per_call"],
                    "fastest_anchor": fastest["method"],
                    "fastest_anchor_s": fastest["s_per_call"],
                    "time_ratio": ours["s_per_call"] / fastest["s_per_call"],
                }
            )
            matched = by.get((game, budget, "ours_matched"))
            if matched is not None:
                ratios[-1].update(
                    {
                        "ours_matched": matched["error"],
                        "ours_matched_evaluations": matched["evaluations"],
                        "matched_error_ratio": matched["error"] / best["error"],
                        "matched_time_ratio": matched["s_per_call"] / fastest["s_per_call"],
                    }
                )
    # Equal wall time: our largest budget whose time per call is within the fastest anchor's
    # at this budget (our estimator costs a few ms per call; at equal time it gets fewer
    # evaluations), and its error against the best anchor's at this budget.
    for r in ratios:
        cheaper = [
            by[(r["game"], b, "ours")]
            for b in budgets
            if by[(r["game"], b, "ours")]["s_per_call"] <= r["fastest_anchor_s"]
        ]
        if cheaper:
            pick = max(cheaper, key=lambda row: row["budget"])
            r["equal_time_budget"] = pick["budget"]
            r["equal_time_error_ratio"] = pick["error"] / r["best_anchor_error"]
    true = np.concatenate([r["errors"] for r in rows if "errors" in r])
    estimate = np.concatenate([r["error_estimates"] for r in rows if "errors" in r])
    calibration = {
        "n": len(true),
        "log_log_correlation": float(np.corrcoef(np.log(true), np.log(estimate))[0, 1]),
        "pearson_correlation": float(np.corrcoef(true, estimate)[0, 1]),
        "geometric_mean_estimate_over_true": float(np.exp(np.mean(np.log(estimate / true)))),
        "fraction_estimate_below_half_true": float(np.mean(estimate < true / 2)),
    }
    anchor_game = games[0]
    headline = [
        f"{anchor_game}: ours / best anchor error at budgets {list(budgets)}: "
        + ", ".join(f"{r['error_ratio']:.3f}" for r in ratios if r["game"] == anchor_game)
    ]
    headline.append(
        "worst error ratio over all games per budget: "
        + ", ".join(
            f"{b}: {max(r['error_ratio'] for r in ratios if r['budget'] == b):.3f}" for b in budgets
        )
    )
    headline.append(
        "at equal wall time (our largest budget no slower than the fastest anchor), worst "
        "error ratio over games per anchor budget: "
        + ", ".join(
            f"{b}: "
            + (
                f"{max(vals):.3f}"
                if all("equal_time_error_ratio" in r for r in ratios if r["budget"] == b)
                and (vals := [r["equal_time_error_ratio"] for r in ratios if r["budget"] == b])
                else "n/a (some game has no cheaper budget of ours)"
            )
            for b in budgets
        )
    )
    headline.append(
        f"error estimate vs true error: log-log correlation {calibration['log_log_correlation']:.2f}, "
        f"geometric mean ratio {calibration['geometric_mean_estimate_over_true']:.2f}"
    )
    curves = {
        game: {
            m: [
                [r["evaluations"], r["error"]]
                for r in rows
                if r["game"] == game and r["method"] == m
            ]
            for m in ("ours", "ours_matched", *ANCHORS)
        }
        for game in games
    }
    table = [{k: v for k, v in r.items() if k not in ("errors", "error_estimates")} for r in rows]
    return {
        "headline": headline,
        "quick": quick,
        "seconds": round(seconds, 1),
        "exact_seconds": exact_seconds,
        "ratios": ratios,
        "error_estimate": calibration,
        "results": table,
        "curves": curves,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--all-images", action="store_true", help="6 image games instead of 4")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, all_images=args.all_images), indent=1, default=float))
