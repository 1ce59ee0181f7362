"""The one reader of model archives: every zip torch would open is rebuilt here first.

torch's own zip reader (miniz) resolves member names case-insensitively, trusts the sizes
in the archive's directory, and ``torch.export.load`` unpickles some members without
restriction. Checking the user's file and then handing *that file* to torch leaves room
for the two readers to disagree on what a name means. So the rule is safe by construction:

1. the archive is read once with a size budget (declared sizes summed before anything is
   decompressed, each member's compression ratio bounded, every read capped at its
   declared size);
2. names are checked (one root folder, no ``..``/absolute/backslash parts, unique when
   case-folded, as miniz compares them);
3. for a ``torch.export`` program every member gets a role from an allow-list of the
   paths torch reads (JSON, text, raw tensor bytes, or pickle); payload paths named in
   the configs must match a member exactly; whatever torch could unpickle is loaded with
   ``weights_only=True`` first, whatever its name; opaque Python objects, compiled code
   (AOTInductor) and any member with no role are refused;
4. the members that passed are written into a new, uncompressed archive, and only that
   archive reaches torch. What was checked is, byte for byte, what torch reads.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from dataclasses import dataclass

import torch

from .errors import ModelError, describe

__all__ = ["DEFAULT_MAX_SIZE", "MAX_RATIO", "ZipMembers", "read_zip", "safe_export_archive"]

DEFAULT_MAX_SIZE = 4 * 2**30  # bytes, all members decompressed; override with max_size=
MAX_RATIO = 200  # torch stores weights uncompressed; JSON deflates ~10x; bombs ~1000x
_RATIO_FROM = 2**20  # the ratio rule applies to members larger than this
_MAX_MEMBERS = 100_000
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_TEXT = {
    "archive_format",
    "archive_version",
    "byteorder",
    ".data/version",
    ".data/serialization_id",
}
_RESAVE = (
    "If the file comes from a source you trust, re-export it with torch.export.save(...) "
    "from plain tensors (no Python objects as constants), or save a state_dict instead."
)


def _refuse(what: str, expected: str, got: str, fix: str = _RESAVE) -> ModelError:
    return ModelError(describe(what, expected, got, fix))


@dataclass
class ZipMembers:
    """An archive read under a size budget: the root folder and the members by their path
    below it, in archive order (bytes, each at most its declared size)."""

    root: str
    members: dict[str, bytes]

    def rebuilt(self) -> bytes:
        """The members as a new uncompressed archive under the same root."""
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, data in self.members.items():
                zf.writestr(f"{self.root}/{name}", data)
        return out.getvalue()


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _checked_infos(zf: zipfile.ZipFile, what: str, max_size: int | None) -> list[zipfile.ZipInfo]:
    """Member entries whose names and declared sizes are acceptable (nothing decompressed)."""
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > _MAX_MEMBERS:
        raise _refuse(what, f"at most {_MAX_MEMBERS:,} archive members", f"{len(infos):,}")
    total = sum(i.file_size for i in infos)
    if max_size is not None and total > max_size:
        raise _refuse(
            what,
            f"at most {_human(max_size)} once decompressed (the limit on model files)",
            f"members declaring {_human(total)}",
            "If the file is a model you trust that is this large, pass a larger "
            "max_size= to load_model (CLI: --max-model-size), or max_size=None for no limit.",
        )
    for i in infos:
        if i.file_size > _RATIO_FROM and i.file_size > MAX_RATIO * max(i.compress_size, 1):
            raise _refuse(
                what,
                f"members compressed at most {MAX_RATIO}:1 (torch stores weights uncompressed)",
                f"{i.filename!r}: {_human(i.compress_size)} expanding to {_human(i.file_size)}, "
                "the shape of a zip bomb",
            )
    return infos


def _split_names(infos: list[zipfile.ZipInfo], what: str) -> tuple[str, list[str]]:
    """(root folder, paths below it); refuses what two zip readers could read differently."""
    roots, rests = set(), []
    for i in infos:
        name = i.filename
        parts = name.split("/")
        bad = (
            "\\" in name
            or name.startswith("/")
            or len(parts) < 2
            or any(p in ("", ".", "..") for p in parts)
            or "\x00" in name
        )
        if bad:
            raise _refuse(what, "member paths inside one archive folder", f"a member {name!r}")
        roots.add(parts[0])
        rests.append("/".join(parts[1:]))
    if len(roots) != 1:
        raise _refuse(what, "every member in one archive folder", f"folders {sorted(roots)[:4]}")
    folded: dict[str, str] = {}
    for rest in rests:
        other = folded.get(rest.casefold())
        folded[rest.casefold()] = rest
        if other is not None:
            # torch's reader matches names ignoring case, Python's zipfile exactly: two
            # members that differ only in case (or repeat) could be read as either one
            raise _refuse(
                what,
                "member names that are unique ignoring case",
                f"{other!r} and {rest!r}" if other != rest else f"{rest!r} twice",
            )
    return roots.pop(), rests


def _read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> bytes:
    """A member's bytes, never more than its declared size (zipfile stops there and checks
    the CRC, so a lying header is an error, not an allocation)."""
    try:
        with zf.open(info) as fh:
            data = fh.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as err:
        raise _refuse(
            what, "an intact archive", f"member {info.filename!r}: {err}", "Re-save the file."
        ) from err
    if len(data) != info.file_size:
        raise _refuse(
            what,
            f"member {info.filename!r} of its declared {info.file_size} bytes",
            f"{len(data)} bytes",
            "The file is damaged or crafted; re-save it.",
        )
    return data


def read_zip(data: bytes, what: str, max_size: int | None = DEFAULT_MAX_SIZE) -> ZipMembers:
    """Read every member of the zip archive ``data`` under the size and name rules."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise _refuse(what, "a readable zip archive", str(err), "Re-save the file.") from err
    with zf:
        infos = _checked_infos(zf, what, max_size)
        root, rests = _split_names(infos, what)
        return ZipMembers(
            root, {r: _read_capped(zf, i, what) for r, i in zip(rests, infos, strict=True)}
        )


# -- torch.export programs ----------------------------------------------------------------
@dataclass
class _Roles:
    """How torch.export.load reads each member."""

    json: set[str]
    text: set[str]
    raw: set[str]
    pickled: set[str]

    def all(self) -> set[str]:
        return self.json | self.text | self.raw | self.pickled


def _json(members: ZipMembers, name: str, what: str) -> object:
    try:
        return json.loads(members.members[name])
    except (ValueError, RecursionError, UnicodeDecodeError) as err:
        raise _refuse(what, f"{name!r} as JSON", f"unparseable content ({err})") from err


def _payloads(members: ZipMembers, config_name: str, folder: str, roles: _Roles, what: str):
    """Give every payload a weights/constants config names its role (raw or pickled)."""
    config = _json(members, config_name, what)
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise _refuse(what, f"{config_name!r} holding a config mapping", type(entries).__name__)
    for fqn, meta in entries.items():
        path = meta.get("path_name") if isinstance(meta, dict) else None
        if not isinstance(path, str) or not _NAME.fullmatch(path):
            raise _refuse(
                what,
                "plain payload file names",
                f"{path!r} for {fqn!r}, a path outside its folder",
            )
        if folder == "data/constants/" and path.startswith(("custom_obj_", "opaque_obj_")):
            raise _refuse(
                what,
                "constants that are tensors",
                f"{fqn!r} stored as a Python object ({path!r}), which torch.export.load "
                "unpickles without restriction (unpickling can run arbitrary code)",
            )
        if folder == "data/constants/" and not path.startswith("tensor_"):
            raise _refuse(what, "constant payloads named tensor_*", f"{path!r}")
        member = folder + path
        if member not in members.members:  # exact: torch would match ignoring case
            raise _refuse(
                what, f"the payload {member!r} named by {config_name!r}", "no such member"
            )
        use_pickle = meta.get("use_pickle")
        if use_pickle is not False and use_pickle is not True:
            raise _refuse(what, "use_pickle true or false", f"{use_pickle!r} for {fqn!r}")
        (roles.pickled if use_pickle else roles.raw).add(member)


def _roles(members: ZipMembers, what: str) -> _Roles:
    roles = _Roles(set(), set(), set(), set())
    names = members.members
    roles.text |= {n for n in names if n in _TEXT or n.startswith("extra/")}
    models = [n for n in names if n.startswith("models/")]
    if not models or names.get("archive_format") != b"pt2":
        raise _refuse(what, "a torch.export program (archive_format pt2, models/*.json)", "none")
    for file in models:
        model = file.removeprefix("models/").removesuffix(".json")
        if not file.endswith(".json") or not _NAME.fullmatch(model):
            raise _refuse(what, "models/<name>.json", repr(file))
        roles.json.add(file)
        for folder, kind in (("data/weights/", "weights"), ("data/constants/", "constants")):
            legacy, config = f"{folder}{model}.pt", f"{folder}{model}_{kind}_config.json"
            if legacy in names:
                roles.pickled.add(legacy)
            elif config in names:
                roles.json.add(config)
                _payloads(members, config, folder, roles, what)
        roles.pickled.add(f"data/sample_inputs/{model}.pt")  # read whether it exists or not
    if any(n.startswith(("data/aotinductor/", "data/executorch/", "data/mtia/")) for n in names):
        raise _refuse(
            what,
            "a torch.export program without compiled code",
            "AOTInductor/ExecuTorch binaries, which load native code",
            "Export with torch.export.save, not torch._inductor.aoti_compile_and_package.",
        )
    unknown = sorted(set(names) - roles.all())
    if unknown:
        raise _refuse(
            what, "only the members torch.export.save writes", f"unknown members {unknown[:4]}"
        )
    clash = (roles.json | roles.text) & (roles.raw | roles.pickled)
    if clash:  # e.g. a payload path pointing at a config file
        raise _refuse(what, "payloads separate from configs", f"{sorted(clash)[:3]} used as both")
    return roles


def _check_pickles(members: ZipMembers, pickled: set[str], what: str) -> None:
    for name in sorted(pickled & set(members.members)):
        try:
            torch.load(io.BytesIO(members.members[name]), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, ValueError, KeyError, EOFError) as err:
            raise _refuse(
                what,
                "members that load as plain tensors",
                f"{name!r}, which torch.export.load would unpickle without restriction "
                "(unpickling can run arbitrary code)",
            ) from err


def _check_text(members: ZipMembers, text: set[str], what: str) -> None:
    for name in sorted(text):
        try:
            members.members[name].decode("utf-8")
        except UnicodeDecodeError as err:
            raise _refuse(what, f"{name!r} as UTF-8 text", "binary content") from err


def safe_export_archive(members: ZipMembers, what: str) -> bytes:
    """A ``torch.export`` archive rebuilt from members that passed every check; refuses
    (ModelError) anything torch could unpickle that is not plain tensors."""
    roles = _roles(members, what)
    _check_text(members, roles.text, what)
    _check_pickles(members, roles.pickled, what)
    return members.rebuilt()
