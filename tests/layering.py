"""The package's layers, and a checker that reads every import (module-level and inside
functions) and reports each one that points up a layer, each lazy import that is not an
allowed optional dependency, and each import cycle.

The layers are documented in docs/architecture.md; change both together.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

# Lowest first. A module belongs to the longest entry it equals or starts with ("pkg.");
# the package root itself (its __init__, the public API) is listed on its own.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("errors", ("explainer.errors",)),
    ("assets", ("explainer.demo", "explainer.demo.cnn", "explainer.demo.shapes",
                "explainer.demo.tabular", "explainer.demo.masks", "explainer.demo.text")),
    ("core", ("explainer._checks", "explainer._files", "explainer._archive",
              "explainer._agreement", "explainer.model", "explainer._runtime",
              "explainer.registry", "explainer.records", "explainer.loading",
              "explainer.completeness", "explainer.outputs", "explainer.black_box",
              "explainer.inputs", "explainer.model_layers",
              "explainer.hooks", "explainer.text", "explainer.fingerprint",
              "explainer.passes", "explainer.throughput", "explainer.evaluating")),
    ("viz", ("explainer.viz",)),
    ("results", ("explainer.explanation", "explainer.comparison", "explainer.multi_input")),
    ("methods", ("explainer.methods",)),
    ("api", ("explainer.api", "explainer.calls", "explainer.generation")),
    ("metrics", ("explainer.metrics",)),
    ("dataset", ("explainer.dataset",)),
    ("reporting", ("explainer.reporting",)),
    ("programs", ("explainer", "explainer.cli", "explainer.demo.run", "explainer.demo.train")),
)  # fmt: skip

# Imports allowed inside functions: optional or heavy third-party packages, with the reason.
LAZY_ALLOWED: dict[str, str] = {
    "ray": "optional backend (pip install 'explainer[ray]')",
    "playwright": "optional, browser tests only",
    "transformers": "optional, only for HuggingFace models",
    "matplotlib": "heavy (~0.4 s): imported when the first figure or colormap is drawn",
    "sklearn": "heavy: only the demo's tabular data needs it",
    "fcntl": "POSIX only: the store's writer lock",
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (an explainer module, or a top-level third-party name)
    line: int
    lazy: bool  # inside a function
    typing_only: bool  # under `if TYPE_CHECKING:` (never runs)


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package folder ``root``: dotted name -> file."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = (package, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _typing_nodes(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return ids


def _function_nodes(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            ids.update(id(n) for n in ast.walk(node) if n is not node)
    return ids


def imports(root: Path, package: str) -> list[Import]:
    """Every import statement of every module under ``root``, resolved to module names."""
    modules = module_names(root, package)
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        typing, inner = _typing_nodes(tree), _function_nodes(tree)
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                # `from pkg import sub` imports the module pkg.sub
                targets = [
                    f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
                    for a in node.names
                ]
            else:
                continue
            for target in dict.fromkeys(targets):
                if target != package and not target.startswith(package + "."):
                    target = target.split(".")[0]
                found.append(
                    Import(name, target, node.lineno, id(node) in inner, id(node) in typing)
                )
    return found


def layer_of(module: str, package: str = "explainer") -> int:
    """Index in LAYERS of ``module`` (names given for the package ``explainer``)."""
    name = "explainer" + module[len(package) :]
    best, rank = -1, None
    for i, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if name == entry or (entry != "explainer" and name.startswith(entry + ".")):
                if len(entry) > best:
                    best, rank = len(entry), i
    if rank is None:
        raise KeyError(f"{module} is in no layer: add it to LAYERS (tests/layering.py)")
    return rank


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles (each as a path that returns to its start), by depth-first search."""
    state: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def violations(root: Path, package: str = "explainer") -> list[str]:
    """Every breach of the layering under ``root``, one readable line each."""
    out = []
    edges: dict[str, set[str]] = {}
    for imp in imports(root, package):
        where = f"{imp.source} line {imp.line}"
        internal = imp.target == package or imp.target.startswith(package + ".")
        if not internal:
            if imp.lazy and imp.target not in LAZY_ALLOWED:
                out.append(
                    f"{where}: imports {imp.target} inside a function; import it at the top "
                    "(or add it to LAZY_ALLOWED with the reason it must stay lazy)"
                )
            continue
        if imp.lazy and not imp.typing_only:
            out.append(f"{where}: imports {imp.target} inside a function; import it at the top")
        src, dst = layer_of(imp.source, package), layer_of(imp.target, package)
        if dst > src:
            out.append(
                f"{where}: imports {imp.target} ({LAYERS[dst][0]}) from the lower layer "
                f"{LAYERS[src][0]}: imports must point down"
            )
        if not imp.typing_only and imp.target != imp.source:
            edges.setdefault(imp.source, set()).add(imp.target)
    out += [f"import cycle: {' -> '.join(c)}" for c in _cycles(edges)]
    return out
