"""The model fingerprint is computed once per model state: a cheap key says whether the
weights changed since the last full hash."""

from __future__ import annotations

import torch
from torch import nn

import explainer as ex
from explainer.fingerprint import full_fingerprint


def make(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, 30), nn.BatchNorm1d(30), nn.Linear(30, 2))


def test_the_fingerprint_is_the_full_hash_and_is_reused_while_the_weights_stay():
    net = make()
    model = ex.wrap(net, modality="tabular")
    assert model.fingerprint() == full_fingerprint(net)
    assert ex.wrap(net, modality="tabular").fingerprint() == model.fingerprint()


def test_every_kind_of_weight_update_gives_a_new_fingerprint():
    net = make()
    model = ex.wrap(net, modality="tabular")
    seen = {model.fingerprint()}
    updates = [
        lambda: torch.optim.SGD(net.parameters(), lr=0.1).step(),  # needs grads: set below
        lambda: net[0].weight.data.mul_(2.0),  # through .data: not counted by autograd
        lambda: net.load_state_dict(make(seed=1).state_dict()),
        lambda: net[1].running_mean.add_(1.0),  # a buffer
        lambda: setattr(net[2], "weight", nn.Parameter(torch.ones(2, 30))),  # replaced
    ]
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    for update in updates:
        with torch.no_grad():
            update()
        now = model.fingerprint()
        assert now == full_fingerprint(net) and now not in seen
        seen.add(now)


def test_explanations_record_the_fingerprint_of_the_weights_they_were_computed_with():
    net = make().eval()
    model = ex.wrap(net, modality="tabular")
    before = ex.explain(model, torch.ones(2, 40), "saliency", progress=False)
    with torch.no_grad():
        net[0].bias.add_(1.0)
    after = ex.explain(model, torch.ones(2, 40), "saliency", progress=False)
    assert before.manifest["model"]["fingerprint"] != after.manifest["model"]["fingerprint"]
    try:
        ex.evaluate(before, model, progress=False)
    except ex.InputError as err:
        assert "fingerprint" in str(err)
    else:
        raise AssertionError("evaluate accepted an explanation of other weights")


def test_the_key_reads_every_dtype_and_reuses_the_hash_of_weights_holding_nan(monkeypatch):
    import explainer.fingerprint as fp

    hashes = []
    real = fp.full_fingerprint
    monkeypatch.setattr(fp, "full_fingerprint", lambda net: hashes.append(1) or real(net))
    net = make()
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")  # NaN != NaN: a key of values would never match
    fp.fingerprint(net), fp.fingerprint(net)
    assert len(hashes) == 1
    for dtype in (torch.bfloat16, torch.float16, torch.float64):  # torch's path and numpy's
        other = make().to(dtype)
        before = fp.fingerprint(other)
        other[0].weight.data[0, 0] += 1.0  # through .data: only the sampled values see it
        assert fp.fingerprint(other) != before


def test_a_reused_sample_view_still_sees_writes_new_storage_and_odd_layouts():
    import explainer.fingerprint as fp

    net = make()
    first = fp.fingerprint(net)
    fp.fingerprint(net)  # the views made by the first key are read now
    net[0].weight.data[0, 0] += 1.0  # through .data, at a sampled position
    second = fp.fingerprint(net)
    assert second != first and second == full_fingerprint(net)
    net[0].weight.data = net[0].weight.data.clone()  # the same values on a new storage
    assert fp.fingerprint(net) == second  # the digest is of the values
    net[0].weight.data[0, 0] += 1.0  # and the new storage's writes are seen
    assert fp.fingerprint(net) not in (first, second)
    odd = nn.Linear(4, 3)
    odd.weight = nn.Parameter(torch.randn(4, 3).t())  # not contiguous: read through torch
    before = fp.fingerprint(odd)
    odd.weight.data[0, 0] += 1.0
    assert fp.fingerprint(odd) != before
