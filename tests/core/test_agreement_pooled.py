"""Agreement between image maps is ranked on block means of |attribution| (issue 18)."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from explainer._agreement import method_agreement, pooled_abs


def test_two_maps_that_put_their_mass_in_the_same_blocks_agree():
    rng = np.random.default_rng(0)
    mass = np.kron(rng.random((56, 56)), np.ones((4, 4)))  # where each map puts its mass
    a = mass + 0.2 * rng.standard_normal((224, 224))  # pixel noise that reorders ranks
    b = -(mass + 0.2 * rng.standard_normal((224, 224)))  # the sign does not count
    pooled = method_agreement([a[None], b[None]])[0]
    full = spearmanr(np.abs(a).ravel(), np.abs(b).ravel())[0]
    assert pooled > 0.9 > 0.8 > full  # per pixel, the noise dominates the ranks


def test_block_means_equal_the_mean_of_each_block_and_small_maps_stay():
    m = np.arange(2 * 112 * 112, dtype=float).reshape(2, 112, 112) - 5000
    p = pooled_abs(m)
    assert p.shape == (2, 56, 56)
    assert np.isclose(p[1, 3, 7], np.abs(m[1, 6:8, 14:16]).mean())
    odd = pooled_abs(np.ones((1, 100, 90)))  # no whole blocks: adaptive pooling
    assert odd.shape == (1, 56, 56) and np.allclose(odd, 1.0)
    assert pooled_abs(-np.ones((1, 40, 40))).shape == (1, 40, 40)
