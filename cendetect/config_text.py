"""mmdetection config text read as data, never executed.

mmdetection 2.x keeps the full config text in ``meta['config']``, 3.x (mmengine) in ``meta['cfg']``,
and a training run leaves it as a ``.py`` file. Both are Python source made of ``name = value``
assignments. :func:`parse_config_text` never executes it: it walks the syntax tree and accepts
only literal displays, ``dict(...)`` calls and references to earlier names; anything else
(imports, other calls, attribute access, operators, lambdas, f-strings) is a
:class:`ConfigError` that names the source and the line. :func:`read_config_file` reads a
``.py`` file the same way, with its ``_base_`` files merged in. What the parsed names mean for
the model and its pre-processing is :mod:`cendetect.config`'s business.
"""

from __future__ import annotations

import ast
import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cendetect.errors import ConfigError

__all__ = ["ConfigError", "parse_config_text", "read_config_file"]

# Names for the constructs a config may not use, for error messages.
_CONSTRUCT_NAMES: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Lambda: "a lambda",
    ast.JoinedStr: "an f-string",
    ast.BinOp: "an operator expression",
    ast.BoolOp: "a boolean operator",
    ast.Compare: "a comparison",
    ast.IfExp: "a conditional expression",
    ast.Subscript: "subscripting",
    ast.ListComp: "a list comprehension",
    ast.DictComp: "a dict comprehension",
    ast.SetComp: "a set comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.Starred: "star-unpacking",
    ast.NamedExpr: "an assignment expression",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.Import: "an import statement",
    ast.ImportFrom: "an import statement",
    ast.FunctionDef: "a function definition",
    ast.ClassDef: "a class definition",
}


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        try:
            return f"a call to {ast.unparse(node.func)!r}"
        except Exception:  # unparse is best-effort, for the message only
            return "a function call"
    return _CONSTRUCT_NAMES.get(type(node), f"{type(node).__name__} syntax")


class _Reader:
    """Evaluates the whitelisted subset of Python expressions; never calls into user code."""

    def __init__(self, source: str):
        self.source = source
        self.names: dict[str, Any] = {}

    def fail(self, node: ast.AST, what: str) -> ConfigError:
        lineno = getattr(node, "lineno", None)
        where = f"{self.source}:{lineno}" if lineno is not None else self.source
        return ConfigError(
            f"{where}: {what} is not allowed in a config (configs are read as data, never "
            "executed; only literals, dict(...) and names assigned earlier are accepted)",
            source=self.source,
            lineno=lineno,
        )

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Expr):
            if isinstance(stmt.value, ast.Constant):
                return  # a docstring or a stray literal: inert
            raise self.fail(stmt, _describe(stmt.value))
        if not isinstance(stmt, ast.Assign):
            if type(stmt) in _CONSTRUCT_NAMES:
                raise self.fail(stmt, _describe(stmt))
            raise self.fail(stmt, f"a statement of kind {type(stmt).__name__}")
        if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
            raise self.fail(stmt, "an assignment to anything but a single plain name")
        self.names[stmt.targets[0].id] = self.value(stmt.value)

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            if node.value is Ellipsis or isinstance(node.value, complex):
                raise self.fail(node, f"the literal {node.value!r}")
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.value(node.operand)
            if isinstance(operand, bool) or not isinstance(operand, (int, float)):
                raise self.fail(node, "a sign on a non-number")
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.List):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self.value(e) for e in node.elts)
        if isinstance(node, ast.Set):
            return {self.hashable(e) for e in node.elts}
        if isinstance(node, ast.Dict):
            out: dict[Any, Any] = {}
            for key, val in zip(node.keys, node.values):
                if key is None:  # {**name}
                    out.update(self.mapping(val))
                else:
                    out[self.hashable(key)] = self.value(val)
            return out
        if isinstance(node, ast.Call):
            return self.dict_call(node)
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                raise self.fail(node, f"the name {node.id!r} (not assigned earlier in the config)")
            # A copy, so that two config entries never share one mutable object.
            return copy.deepcopy(self.names[node.id])
        raise self.fail(node, _describe(node))

    def hashable(self, node: ast.expr) -> Any:
        val = self.value(node)
        try:
            hash(val)
        except TypeError:
            raise self.fail(node, f"an unhashable key or set item {val!r}") from None
        return val

    def mapping(self, node: ast.expr) -> dict[Any, Any]:
        val = self.value(node)
        if not isinstance(val, dict):
            raise self.fail(node, "**-unpacking of a non-dict")
        return val

    def dict_call(self, node: ast.Call) -> dict[str, Any]:
        if not (isinstance(node.func, ast.Name) and node.func.id == "dict") or node.args:
            raise self.fail(node, _describe(node))
        out: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:  # dict(**name)
                out.update(self.mapping(kw.value))
            else:
                out[kw.arg] = self.value(kw.value)
        return out


def parse_config_text(text: str, source: str = "<config>") -> dict[str, Any]:
    """Parse mmdetection config text (2.x ``meta['config']`` or 3.x ``meta['cfg']``) as data.

    Args:
        text: Python-syntax config made of ``name = value`` assignments.
        source: where the text came from, used in error messages.

    Returns:
        The assigned names in file order. Tuples stay tuples, lists stay lists.

    Raises:
        ConfigError: on a syntax error or any construct outside the data subset, with the line.
    """
    try:
        tree = ast.parse(text, filename=source, mode="exec")
    except SyntaxError as exc:
        raise ConfigError(
            f"{source}:{exc.lineno}: not valid config syntax: {exc.msg}",
            source=source,
            lineno=exc.lineno,
        ) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ConfigError(f"{source}: config text cannot be parsed: {exc}", source=source) from None
    reader = _Reader(source)
    try:
        for stmt in tree.body:
            reader.statement(stmt)
    except RecursionError:
        raise ConfigError(f"{source}: config is nested too deeply", source=source) from None
    return reader.names


_MAX_BASE_DEPTH = 8


def _merge_mmdet(base: dict[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child`` over ``base`` as mmcv/mmengine ``Config`` merges inherited files: dicts merge
    key by key, a dict with ``_delete_=True`` replaces the base's, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and value.get("_delete_") is True:
            out[key] = copy.deepcopy({k: v for k, v in value.items() if k != "_delete_"})
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_mmdet(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config_file(path: str | os.PathLike[str], _depth: int = 0) -> dict[str, Any]:
    """An mmdetection config file (``.py``) parsed as data, its ``_base_`` files merged in.

    ``_base_`` (a file name or a list of them) is resolved relative to the file, loaded in
    order, and the file's own names merged over them (``_delete_=True`` replaces a dict).
    Nothing is executed: each file goes through :func:`parse_config_text`. mmcv's
    ``{{_base_.name}}`` text substitution is not a data construct and is refused.

    Raises:
        ConfigError: unreadable file, a construct outside the data subset, a missing base,
            bases nested more than 8 deep.
    """
    path = Path(path)
    if _depth > _MAX_BASE_DEPTH:
        raise ConfigError(f"config {path}: _base_ files nest more than {_MAX_BASE_DEPTH} deep")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: cannot read it: {exc}", source=str(path)) from None
    if "{{" in text and "_base_." in text:
        raise ConfigError(
            f"config {path}: uses mmcv's {{{{_base_.name}}}} substitution, which cendetect does "
            "not evaluate; save the config as mmdetection dumps it (Config.dump, or the "
            "work_dir copy) and pass that file",
            source=str(path),
        )
    names = parse_config_text(text, str(path))
    bases = names.pop("_base_", None)
    if bases is None:
        return names
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"config {path}: _base_ must be a file name or a list of them")
    merged: dict[str, Any] = {}
    for name in bases:
        base = (path.parent / name).resolve()
        if not base.is_file():
            raise ConfigError(f"config {path}: _base_ file {name} not found ({base})")
        merged = _merge_mmdet(merged, read_config_file(base, _depth + 1))
    return _merge_mmdet(merged, names)
