"""Every error explainer raises on purpose says how to fix it.

The rule, checked on the source of every module under explainer/ (parsed with ``ast``, so a
branch no test reaches is checked too):

1. An error of the tree (``ExplainerError``, its subclasses in explainer/errors.py and any
   class of the package derived from one) is built from a message made by
   ``describe(what, expected, got, fix)``: its first argument is a ``describe(...)`` call,
   or a name that the module only ever binds to one. A literal message (a string, an
   f-string, a concatenation), another expression, or no message at all is refused.
2. The ``fix`` of every ``describe`` call holds words: a string or f-string with some
   non-blank literal text (or a module constant in its placeholders that has some), a name
   whose every assignment in the module does, or a concatenation or conditional whose every
   outcome does. ``""``, ``f""`` and ``f"{x}"`` are refused.
3. A function that passes one of its parameters on as the ``fix`` (e.g. ``_refuse`` in
   explainer/_archive.py) is a forwarder: its default and the argument of every call to it
   in the package follow rule 2.

The format itself ("what: expected ..., got .... fix") is what ``describe`` builds; the last
test pins that, and the tests of each entry point check their messages' words.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from error_checks import assert_message_format

import explainer
from explainer.errors import describe

ROOT = Path(explainer.__file__).parent
BASE_ERRORS = {"ExplainerError", "InputError", "UnknownMethodError", "ModelError", "StoreError"}
FIX = 3  # position of `fix` in describe(what, expected, got, fix)


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def _is_describe(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and (
        isinstance(node.func, ast.Name)
        and node.func.id == "describe"
        or isinstance(node.func, ast.Attribute)
        and node.func.attr == "describe"
        and _name(node.func.value) == "errors"
    )


def _argument(call: ast.Call, index: int, name: str) -> ast.expr | None:
    if len(call.args) > index and not any(isinstance(a, ast.Starred) for a in call.args):
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == name), None)


@dataclass
class Module:
    path: Path
    tree: ast.Module
    constants: dict[str, ast.expr] = field(default_factory=dict)  # NAME = "..." at top level
    bindings: dict[str, list[ast.expr]] = field(default_factory=dict)  # every `name = value`

    @classmethod
    def parse(cls, path: Path, source: str | None = None) -> Module:
        tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
        module = cls(path, tree)
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Name):
                        module.constants[target.id] = node.value
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        module.bindings.setdefault(target.id, []).append(node.value)
        return module

    def where(self, node: ast.AST) -> str:
        path = self.path.relative_to(ROOT.parent) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{node.lineno}"

    def blank(self, node: ast.expr, seen: frozenset[str] = frozenset()) -> bool:
        """True where the fix ``node`` holds no words (rule 2). A name is blank where a value
        the module binds it to is; a parameter is checked where it is given (rule 3)."""
        if isinstance(node, ast.Constant):
            return not (isinstance(node.value, str) and node.value.strip())
        if isinstance(node, ast.JoinedStr):  # words only in its literal parts and constants
            parts = [v.value if isinstance(v, ast.FormattedValue) else v for v in node.values]
            known = [
                p
                for p in parts
                if isinstance(p, ast.Constant) or isinstance(p, ast.Name) and p.id in self.constants
            ]
            return all(self.blank(p, seen) for p in known)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.blank(node.left, seen) and self.blank(node.right, seen)
        if isinstance(node, ast.IfExp):
            return self.blank(node.body, seen) or self.blank(node.orelse, seen)
        if isinstance(node, ast.Name) and node.id not in seen:  # a constant or a variable
            values = self.bindings.get(node.id, []) or [self.constants.get(node.id)]
            return any(v is not None and self.blank(v, seen | {node.id}) for v in values)
        return False


def error_classes(modules: list[Module]) -> set[str]:
    """The error tree's class names, with every class of the package derived from one."""
    names = set(BASE_ERRORS)
    grew = True
    while grew:
        grew = False
        for module in modules:
            for node in ast.walk(module.tree):
                if (
                    isinstance(node, ast.ClassDef)
                    and node.name not in names
                    and any(_name(base) in names for base in node.bases)
                ):
                    names.add(node.name)
                    grew = True
    return names


def forwarders(modules: list[Module]) -> dict[str, tuple[int, str]]:
    """Functions passing a parameter on as describe's fix: name -> (position, parameter)."""
    found = {}
    for module in modules:
        for func in ast.walk(module.tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            params = [a.arg for a in (*func.args.posonlyargs, *func.args.args)]
            for call in filter(_is_describe, ast.walk(func)):
                fix = _argument(call, FIX, "fix")
                if isinstance(fix, ast.Name) and fix.id in params:
                    offset = 1 if params[:1] in (["self"], ["cls"]) else 0
                    found[func.name] = (params.index(fix.id) - offset, fix.id)
    return found


def defaults(func: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, ast.expr]:
    positional = [*func.args.posonlyargs, *func.args.args]
    named = dict(zip([a.arg for a in positional[::-1]], func.args.defaults[::-1], strict=False))
    named.update(
        (a.arg, d) for a, d in zip(func.args.kwonlyargs, func.args.kw_defaults, strict=True) if d
    )
    return named


def problems(modules: list[Module]) -> list[str]:
    """Every breach of the rule in the module docstring, one readable line each."""
    errors, forwarded = error_classes(modules), forwarders(modules)
    out = []
    for module in modules:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in forwarded:
                default = defaults(node).get(forwarded[node.name][1])
                if default is not None and module.blank(default):
                    out.append(f"{module.where(node)}: {node.name}() has an empty default fix")
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            if _is_describe(node):
                fix = _argument(node, FIX, "fix")
                if fix is None or module.blank(fix):
                    out.append(
                        f"{module.where(node)}: describe(...) without a fix: say how to fix it"
                    )
            elif name in forwarded:
                fix = _argument(node, *forwarded[name])
                if fix is not None and module.blank(fix):
                    out.append(f"{module.where(node)}: {name}(...) is given an empty fix")
            if name in errors and not _built_by_describe(module, node):
                message = ast.unparse(node.args[0])[:60] if node.args else "no message"
                out.append(
                    f"{module.where(node)}: {name}({message}) is not built by describe(what, "
                    "expected, got, fix)"
                )
    return out


def _built_by_describe(module: Module, call: ast.Call) -> bool:
    message = call.args[0] if call.args else None
    if isinstance(message, ast.Name):
        values = module.bindings.get(message.id, [])
        return bool(values) and all(_is_describe(v) for v in values)
    return message is not None and _is_describe(message)


def package_modules() -> list[Module]:
    return [Module.parse(path) for path in sorted(ROOT.rglob("*.py"))]


def test_every_error_of_the_package_is_built_by_describe_with_a_fix():
    found = problems(package_modules())
    assert not found, "errors without a message saying how to fix them:\n" + "\n".join(found)


def check(source: str) -> list[str]:
    return problems([Module.parse(Path("fake.py"), textwrap.dedent(source))])


def test_an_empty_or_missing_fix_is_found():
    found = check(
        """
        from .errors import InputError, describe
        HINT = "  "
        def f(x):
            raise InputError(describe("`x`", "a", repr(x), ""))
        def g(x):
            raise InputError(describe("`x`", "a", repr(x), f""))
        def h(x):
            raise InputError(describe("`x`", "a", repr(x), f"{x}"))
        def i(x):
            raise InputError(describe("`x`", "a", repr(x), HINT + ""))
        def j(x):
            raise InputError(describe("`x`", "a", repr(x), "Fix." if x else ""))
        def k(x):
            raise InputError(describe("`x`", "a", repr(x)))
        def m(x):
            fix = " "
            raise InputError(describe("`x`", "a", repr(x), fix))
        """
    )
    assert [line.split(":")[1] for line in found] == ["5", "7", "9", "11", "13", "15", "18"], found


def test_a_literal_message_and_an_empty_forwarded_fix_are_found():
    found = check(
        """
        from .errors import InputError, ModelError, describe
        class ShapeError(ModelError): ...
        def refuse(what, fix="Pass a tensor."):
            return InputError(describe(what, "a tensor", "a list", fix))
        def f(x):
            raise InputError(f"bad {x}. Pass a tensor.")
        def g():
            raise ShapeError("bad shape")
        def h():
            raise refuse("`x`", fix="")
        def i():
            message = "bad"
            raise InputError(message)
        def j():
            raise ModelError()
        """
    )
    assert [line.split(":")[1] for line in found] == ["7", "9", "11", "14", "16"], found


def test_messages_built_by_describe_with_words_in_the_fix_pass():
    found = check(
        """
        from .errors import InputError, describe
        HINT = "Pass a tensor."
        def refuse(what, fix=HINT):
            return InputError(describe(what, "a tensor", "a list", fix))
        def f(x, fix):
            message = describe("`x`", "a", repr(x), f"Pass e.g. x={x!r}.")
            if x:
                raise InputError(message)
            raise InputError(describe("`x`", "a", repr(x), f"{HINT} " + fix))
        def g():
            raise refuse("`x`")
        """
    )
    assert found == []


def test_describe_format_is_what_the_tests_check():
    assert_message_format(ValueError(describe("`x`", "a", "b", "Fix it.")))
