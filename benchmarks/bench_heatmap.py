"""ms per 224x224 overlay PNG: ours (numpy LUT + PIL) vs captum's visualize_image_attr + savefig.

Same maps, same images, same run; the headline is the ratio. Usage:
    python -m benchmarks.bench_heatmap [--n 32]
"""

from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np


def run(n: int = 32, size: int = 224, seed: int = 0) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from captum.attr import visualization as viz

    from explainer.viz.heatmap import encode_png, render_overlay, spec_for

    rng = np.random.default_rng(seed)
    attrs = rng.normal(size=(n, 3, size, size)).astype(
        np.float32
    )  # channels-first, like our tensors
    images = rng.random((n, 3, size, size)).astype(np.float32)
    spec = spec_for("integrated_gradients")

    def ours(a, im):
        return encode_png(render_overlay(im, a, spec))

    def captum(a, im):
        fig, _ = viz.visualize_image_attr(
            a.transpose(1, 2, 0),
            im.transpose(1, 2, 0),
            method="blended_heat_map",
            sign="all",
            use_pyplot=False,
        )
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        return buf.getvalue()

    out = {"n_images": n, "size": size}
    for name, fn in (("explainer", ours), ("captum_visualize_image_attr", captum)):
        fn(attrs[0], images[0])  # warm-up (imports, caches)
        times = []
        for a, im in zip(attrs, images, strict=True):
            t = time.perf_counter()
            fn(a, im)
            times.append(time.perf_counter() - t)
        out[f"{name}_ms_per_image"] = 1e3 * float(np.median(times))
    out["speedup_vs_captum"] = (
        out["captum_visualize_image_attr_ms_per_image"] / out["explainer_ms_per_image"]
    )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=32)
    print(json.dumps(run(parser.parse_args().n), indent=2))
