"""Crafted model files never run code and never exhaust memory: every zip is rebuilt from
checked members before torch reads it, under a stated size limit.

The crafted archives are built here from a real ``torch.export.save`` file (nothing binary
is committed). ``OpensAFile`` stands in for any payload: if its marker file exists, the
pickle ran.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import tracemalloc
import zipfile

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import explainer as ex
from explainer.cli import app

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


class OpensAFile:
    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


@pytest.fixture
def pt2(tmp_path):
    path = tmp_path / "good.pt2"
    program = torch.export.export(
        small_net(), (torch.randn(2, 5),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, path)
    return path


def rewrite(src, dst, edit=None, drop=(), add=None, compression=zipfile.ZIP_STORED):
    """Copy archive ``src`` to ``dst``: ``edit(name, data) -> data``, drop names ending in
    one of ``drop``, then add ``{name_below_root: bytes}``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            if any(info.filename.endswith(d) for d in drop):
                continue
            data = zin.read(info)
            zout.writestr(info.filename, edit(info.filename, data) if edit else data)
        for name, data in (add or {}).items():
            zout.writestr(f"{root}/{name}", data)
    return dst


def payload(marker) -> bytes:
    return pickle.dumps(OpensAFile(marker))


def edit_config(which: str, change):
    def edit(name, data):
        if name.endswith(f"model_{which}_config.json"):
            config = json.loads(data)
            change(config["config"])
            return json.dumps(config).encode()
        return data

    return edit


def refused(path, marker=None, match=None, **kwargs):
    with pytest.raises(ex.ModelError, match=match) as info:
        ex.load_model(path, **kwargs)
    if marker is not None:
        assert not marker.exists(), "the payload ran"
    text = str(info.value)
    assert ": expected " in text and ", got " in text, text
    return text


# -- code execution ------------------------------------------------------------------------
def test_weight_named_in_upper_case_that_torch_resolves_to_a_json_pickle_never_runs(pt2, tmp_path):
    # The reported hole: torch's archive reader matches names ignoring case, the old
    # check skipped members ending in ".json" case-sensitively.
    marker = tmp_path / "pwned"

    def to_evil(config):
        config["l.weight" if "l.weight" in config else next(iter(config))].update(
            path_name="EVIL.JSON", use_pickle=True
        )

    bad = rewrite(
        pt2,
        tmp_path / "bad.pt2",
        edit=edit_config("weights", to_evil),
        drop=("weights/weight_0",),
        add={"data/weights/evil.json": payload(marker)},
    )
    refused(bad, marker, match="EVIL.JSON")


def test_weight_pickle_with_exact_name_ending_in_json_is_checked_and_refused(pt2, tmp_path):
    marker = tmp_path / "pwned"
    bad = rewrite(
        pt2,
        tmp_path / "bad.pt2",
        edit=edit_config(
            "weights",
            lambda c: next(iter(c.values())).update(path_name="evil.json", use_pickle=True),
        ),
        drop=("weights/weight_0",),
        add={"data/weights/evil.json": payload(marker)},
    )
    refused(bad, marker, match="unpickle")


@pytest.mark.parametrize("name", ["opaque_obj_0.JSON", "opaque_obj_0", "custom_obj_0"])
def test_constant_stored_as_a_python_object_is_refused_before_torch_unpickles_it(
    pt2, tmp_path, name
):
    marker = tmp_path / "pwned"
    bad = rewrite(
        pt2,
        tmp_path / "bad.pt2",
        edit=edit_config(
            "constants", lambda c: c.update(x={"path_name": name, "use_pickle": True})
        ),
        add={f"data/constants/{name.lower()}": payload(marker)},
    )
    refused(bad, marker, match="Python object")


def test_members_differing_only_in_case_are_refused(pt2, tmp_path):
    marker = tmp_path / "pwned"
    bad = rewrite(pt2, tmp_path / "bad.pt2", add={"data/weights/WEIGHT_0": payload(marker)})
    refused(bad, marker, match="ignoring case")


def test_a_member_torch_does_not_write_is_refused(pt2, tmp_path):
    marker = tmp_path / "pwned"
    bad = rewrite(pt2, tmp_path / "bad.pt2", add={"data/weights/notes.pkl": payload(marker)})
    refused(bad, marker, match="unknown members")


def test_compiled_aotinductor_code_is_refused(pt2, tmp_path):
    bad = rewrite(pt2, tmp_path / "bad.pt2", add={"data/aotinductor/model/model.so": b"\x7fELF"})
    refused(bad, match="native code")


def test_a_member_outside_the_archive_folder_is_refused(pt2, tmp_path):
    # torch.export.load falls back to an older layout read from the archive's top level,
    # whose example inputs it unpickles without restriction.
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(pt2) as zin, zipfile.ZipFile(tmp_path / "bad.pt2", "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        zout.writestr("version", b"8.7")
        zout.writestr("serialized_example_inputs.pt", payload(marker))
    refused(tmp_path / "bad.pt2", marker, match="one archive folder")


def test_a_repeated_member_name_is_refused(pt2, tmp_path):
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(pt2) as zin, zipfile.ZipFile(tmp_path / "bad.pt2", "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        root = zin.namelist()[0].split("/")[0]
        with pytest.warns(UserWarning, match="Duplicate"):
            zout.writestr(f"{root}/data/sample_inputs/model.pt", payload(marker))
    refused(tmp_path / "bad.pt2", marker, match="twice")


def test_the_checked_archive_still_loads_and_runs(pt2):
    model = ex.load_model(pt2, modality="tabular")
    x = torch.randn(4, 5)
    torch.testing.assert_close(model.net(x), small_net()(x), rtol=0, atol=0)


def test_cli_explain_with_a_crafted_file_prints_one_error_and_runs_nothing(pt2, tmp_path):
    marker = tmp_path / "pwned"
    bad = rewrite(
        pt2,
        tmp_path / "bad.pt2",
        edit=edit_config(
            "constants",
            lambda c: c.update(x={"path_name": "opaque_obj_0.JSON", "use_pickle": True}),
        ),
        add={"data/constants/opaque_obj_0.json": payload(marker)},
    )
    store = tmp_path / "s.zarr"
    result = CliRunner().invoke(
        app, ["explain", "--model", str(bad), "--data", "demo", "--store", str(store)]
    )
    assert result.exit_code == 2 and result.output.count("error:") == 1, result.output
    assert not marker.exists() and not store.exists()


# -- zip bombs -----------------------------------------------------------------------------
def deflated_zeros(zout: zipfile.ZipFile, name: str, size: int) -> None:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zout.open(info, "w", force_zip64=True) as fh:
        block = bytes(2**20)
        for _ in range(size // len(block)):
            fh.write(block)


def bomb(pt2, dst, member: str, size: int):
    with zipfile.ZipFile(pt2) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        deflated_zeros(zout, f"{root}/{member}", size)
    return dst


@pytest.mark.parametrize("member", ["extra/bomb_config.json", "data/weights/weight_9"])
def test_a_zip_bomb_is_refused_without_being_decompressed(pt2, tmp_path, member):
    bad = bomb(pt2, tmp_path / "bomb.pt2", member, 1 << 30)  # 1 GiB of zeros in ~1 MB
    assert bad.stat().st_size < 3 * 2**20
    tracemalloc.start()
    try:
        text = refused(bad, match="zip bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB allocated while refusing"
    assert "1.1 GB" in text


def test_a_member_whose_header_understates_its_size_is_read_no_further(pt2, tmp_path):
    # A lying header must not make us read (or allocate) more than it declares.
    bad = tmp_path / "liar.pt2"
    with zipfile.ZipFile(pt2) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        root = zin.namelist()[0].split("/")[0]
        zout.writestr(f"{root}/extra/big.txt", b"a" * 100_000)
    raw = bytearray(bad.read_bytes())
    # the last copy of the name is in the central directory entry (the uncompressed size
    # at +24 from its signature), which is what zip readers trust
    entry = raw.rindex(b"PK\x01\x02", 0, raw.rindex(b"extra/big.txt"))
    assert struct.unpack_from("<I", raw, entry + 24)[0] == 100_000
    struct.pack_into("<I", raw, entry + 24, 1000)
    bad.write_bytes(bytes(raw))
    refused(bad, match="big.txt")


def test_the_size_limit_is_stated_and_can_be_raised(pt2, tmp_path):
    text = refused(pt2, max_size="2KB")
    assert "max_size" in text and "2,000 bytes" in text
    assert ex.load_model(pt2, max_size="1GB").net is not None
    assert ex.load_model(pt2, max_size=None).net is not None


@pytest.mark.parametrize("bad", [0, -1, "lots", True])
def test_a_bad_size_limit_is_an_input_error(pt2, bad):
    with pytest.raises(ex.InputError, match="max_size"):
        ex.load_model(pt2, max_size=bad)


def test_a_state_dict_zip_bomb_is_refused_before_torch_reads_it(tmp_path):
    good = tmp_path / "w.pt"
    torch.save(small_net().state_dict(), good)
    bad = tmp_path / "bomb.pt"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        deflated_zeros(zout, f"{root}/data/99", 256 * 2**20)
    refused(bad, match="zip bomb", factory=small_net)


def test_a_torchscript_zip_bomb_is_refused(tmp_path):
    good = tmp_path / "s.pt"
    torch.jit.script(small_net()).save(good)
    bad = tmp_path / "bomb.pt"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        deflated_zeros(zout, f"{root}/extra/big", 256 * 2**20)
    refused(bad, match="zip bomb")


def test_rebuilt_torchscript_and_state_dict_archives_load_identically(tmp_path):
    net, x = small_net(), torch.randn(3, 5)
    torch.jit.script(net).save(tmp_path / "s.pt")
    torch.save(net.state_dict(), tmp_path / "w.pt")
    for model in (
        ex.load_model(tmp_path / "s.pt", modality="tabular"),
        ex.load_model(tmp_path / "w.pt", factory=small_net, modality="tabular"),
    ):
        torch.testing.assert_close(model.net(x), net(x), rtol=0, atol=0)


def test_archive_reader_is_the_only_way_torch_sees_a_zip(pt2, monkeypatch):
    # What torch reads must be the rebuilt archive (one root, stored members, checked).
    seen = []
    real = torch.export.load
    monkeypatch.setattr(torch.export, "load", lambda f, *a, **k: seen.append(f) or real(f, *a, **k))
    ex.load_model(pt2)
    (buffer,) = seen
    assert isinstance(buffer, io.BytesIO) and buffer.getvalue() != pt2.read_bytes()
    with zipfile.ZipFile(buffer) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
