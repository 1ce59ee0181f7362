"""Every error the dataset, metrics and entry-point modules build says how to fix it: the
fourth part of ``describe(what, expected, got, fix)`` is never missing or empty."""

from __future__ import annotations

import ast
from pathlib import Path

import explainer

ROOT = Path(explainer.__file__).parent
CHECKED = [
    *sorted((ROOT / "dataset").glob("*.py")),
    *sorted((ROOT / "metrics").glob("*.py")),
    ROOT / "api.py",
    ROOT / "records.py",
    ROOT / "_checks.py",
]


def describe_calls_without_a_fix(source: str) -> list[int]:
    """Line numbers of ``describe(...)`` calls whose fix is missing or blank."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "describe":
            fix = node.args[3] if len(node.args) > 3 else None
            if fix is None or (isinstance(fix, ast.Constant) and not str(fix.value).strip()):
                lines.append(node.lineno)
    return lines


def test_every_describe_call_has_a_fix():
    found = [
        f"{path.relative_to(ROOT.parent)} line {line}"
        for path in CHECKED
        for line in describe_calls_without_a_fix(path.read_text(encoding="utf-8"))
    ]
    assert not found, "describe(...) without a fix:\n" + "\n".join(found)


def test_the_scan_finds_blank_and_missing_fixes():
    source = 'describe("`x`", "an int", "a str", " ")\ndescribe("`y`", "a", "b")\nok = 1\n'
    assert describe_calls_without_a_fix(source) == [1, 2]
