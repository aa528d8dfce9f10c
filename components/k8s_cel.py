"""The CEL validation rules (`x-kubernetes-validations`) of vendored upstream CRDs, evaluated offline.

The API server runs these rules on every create; a custom resource that passes its CRD's structural
schema can still be refused by one (Karpenter's EC2NodeClass refuses `spec.tags` keys starting with
`kubernetes.io/cluster`, its NodePool refuses labels in the `karpenter.sh` domain). The rules are
parsed and evaluated by `cel-python` (`celpy`, a maintained CEL implementation with RE2 regexes,
as Kubernetes uses); this module only

- binds `self` as the API server does: the value at the rule's schema node, converted by that
  node's schema (Kubernetes' type mapping: `integer` -> int, `number` -> double, `string` with
  `format: byte` -> bytes, `duration` -> duration, `date`/`date-time` -> timestamp; objects and
  maps -> maps, arrays -> lists), the schema's defaults applied to unset properties (the API server
  defaults before it validates), property names escaped (`namespace` is read as `__namespace__`,
  `x-prop` as `x__dash__prop`), the root with `apiVersion`, `kind` and of `metadata` only `name`
  and `generateName`;
- adds the Kubernetes CEL library functions celpy lacks (`KUBERNETES_FUNCTIONS`: the regex
  library's `find`/`findAll` and the strings extension's `split`, `join`, `lowerAscii`,
  `upperAscii`, `trim`, `replace`, `indexOf`, `lastIndexOf`, `substring`, `charAt`);
- walks the schema to every node our object sets.

A rule that calls a function neither celpy nor the adapter provides (Kubernetes' lists, URL, IP,
quantity, semver libraries; celpy's own `min`/`reduce` extensions), or a transition rule (`oldSelf`:
evaluated on update only), is not evaluated: `rule_checks` reports it as skipped, never as passed.
A rule that errors at run time (a missing field) or yields no bool is skipped too. Lists of
`x-kubernetes-list-type: set/map` compare by order here (the API server ignores order): that only
matters to `self == oldSelf`, which is skipped. Defaults are applied throughout the value a rule
sees; the rules of a node that only defaulting would create are not walked.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import celpy
import re2
from celpy import celtypes
from lark import Token

from components import upstream


class Unsupported(ValueError):
    """The rule uses CEL this evaluator cannot run (a transition rule, an unknown function)."""


# ------------------------------------------------------------------ Kubernetes CEL library adapter
# https://kubernetes.io/docs/reference/using-api/cel/ (regex library; cel-go ext strings library).


def _find(s: str, regex: str) -> celtypes.StringType:
    """`'abc 123'.find('[0-9]+') == '123'`; `''` when nothing matches."""
    m = re2.search(str(regex), str(s))
    return celtypes.StringType(m.group(0) if m else "")


def _find_all(s: str, regex: str, limit: int = -1) -> celtypes.ListType:
    """`'123 abc 456'.findAll('[0-9]+') == ['123', '456']`; a limit < 0 is no limit."""
    found = [celtypes.StringType(m.group(0)) for m in re2.finditer(str(regex), str(s))]
    return celtypes.ListType(found if int(limit) < 0 else found[: int(limit)])


def _split(s: str, sep: str, n: int = -1) -> celtypes.ListType:
    """Go `strings.SplitN`: `n < 0` all parts, `n == 0` none, `n > 0` at most n (the last holds the
    rest); an empty separator splits into characters."""
    s, sep, n = str(s), str(sep), int(n)
    if n == 0:
        return celtypes.ListType([])
    if sep == "":
        parts = list(s) if n < 0 or n >= len(s) else [*s[: n - 1], s[n - 1 :]]
    else:
        parts = s.split(sep) if n < 0 else s.split(sep, n - 1)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _join(items: list[Any], sep: str = "") -> celtypes.StringType:
    """`['a', 'b'].join('-') == 'a-b'`; `.join()` joins with nothing."""
    return celtypes.StringType(str(sep).join(str(i) for i in items))


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _replace(s: str, old: str, new: str, n: int = -1) -> celtypes.StringType:
    """All occurrences (`n < 0`), none (`n == 0`) or the first n."""
    return celtypes.StringType(str(s).replace(str(old), str(new), int(n)))


def _index_of(s: str, sub: str, start: int = 0) -> celtypes.IntType:
    """Code-point index of the first `sub` at or after `start`, -1 when absent; an out-of-range
    start is an error."""
    s, start = str(s), int(start)
    if not 0 <= start <= len(s):
        raise IndexError(f"index out of range: {start}")
    return celtypes.IntType(s.find(str(sub), start))


def _last_index_of(s: str, sub: str, end: int | None = None) -> celtypes.IntType:
    """Code-point index of the last `sub` starting at or before `end`, -1 when absent."""
    s = str(s)
    end = len(s) if end is None else int(end)
    if not 0 <= end <= len(s):
        raise IndexError(f"index out of range: {end}")
    return celtypes.IntType(s.rfind(str(sub), 0, end + len(str(sub))))


def _substring(s: str, start: int, end: int | None = None) -> celtypes.StringType:
    s = str(s)
    start, end = int(start), len(s) if end is None else int(end)
    if not 0 <= start <= end <= len(s):
        raise IndexError(f"substring({start}, {end}) out of range of a {len(s)}-character string")
    return celtypes.StringType(s[start:end])


def _char_at(s: str, i: int) -> celtypes.StringType:
    """The character at `i`; `''` at `i == size`; an error beyond."""
    s, i = str(s), int(i)
    if not 0 <= i <= len(s):
        raise IndexError(f"index out of range: {i}")
    return celtypes.StringType(s[i : i + 1])


KUBERNETES_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "find": _find,
    "findAll": _find_all,
    "split": _split,
    "join": _join,
    "lowerAscii": lambda s: celtypes.StringType(str(s).translate(_ASCII_LOWER)),
    "upperAscii": lambda s: celtypes.StringType(str(s).translate(_ASCII_UPPER)),
    "trim": lambda s: celtypes.StringType(str(s).strip()),
    "replace": _replace,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "substring": _substring,
    "charAt": _char_at,
}
"""Kubernetes CEL library functions celpy 0.5 lacks, as `name -> (target, *args)`."""

_MACROS = {"has", "dyn", "all", "exists", "exists_one", "map", "filter"}
_CELPY_FUNCTIONS = set(celpy.evaluation.base_functions) - {"min", "reduce"}  # celpy's own extensions


# ------------------------------------------------------------------ evaluation


@functools.cache
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    ast = env.compile(rule)
    for node in ast.iter_subtrees():
        for tok in node.children:
            if not isinstance(tok, Token) or tok.type != "IDENT":
                continue
            if tok.value == "oldSelf":
                raise Unsupported("transition rule")
            if node.data in ("member_dot_arg", "ident_arg"):
                name = tok.value
                if name not in _MACROS and name not in _CELPY_FUNCTIONS and name not in KUBERNETES_FUNCTIONS:
                    raise Unsupported(f"function {name}() (not in celpy nor the Kubernetes adapter)")
    return env.program(ast, functions=KUBERNETES_FUNCTIONS)


_RESERVED = {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
             "import", "let", "loop", "package", "namespace", "return"}  # fmt: skip
_ACCESSIBLE = re.compile(r"[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*")


def cel_field_name(name: str) -> str | None:
    """The name a CRD property is read by in CEL (`self.x__dash__prop` for `x-prop`, `__namespace__`
    for `namespace`), or None when CEL cannot read it; map keys are not escaped."""
    if name in _RESERVED:
        return f"__{name}__"
    if not _ACCESSIBLE.fullmatch(name):
        return None
    for raw, escaped in (("__", "__underscores__"), (".", "__dot__"), ("-", "__dash__"), ("/", "__slash__")):
        name = name.replace(raw, escaped)
    return name


def to_cel(value: Any, schema: Mapping[str, Any] | None = None, *, root: bool = False) -> Any:
    """`value` as the API server binds it to `self` at a node of `schema`: Kubernetes' CEL type
    mapping, the schema's defaults applied to an object's unset properties, escaped property names;
    at the root, of `metadata` only `name` and `generateName`. Without a schema (or where it says
    nothing) by the JSON type."""
    schema = schema or {}
    if isinstance(value, Mapping):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        if props:  # an object: escaped field names, defaults of unset fields
            fields = {**{k: p["default"] for k, p in props.items() if "default" in p}, **value}
            if root and isinstance(fields.get("metadata"), Mapping):
                fields["metadata"] = {k: v for k, v in fields["metadata"].items() if k in ("name", "generateName")}
            out = {}
            for k, v in fields.items():
                name = cel_field_name(k) if k in props else k
                if name is not None:
                    out[celtypes.StringType(name)] = to_cel(v, props.get(k))
            return celtypes.MapType(out)
        sub = extra if isinstance(extra, Mapping) else None
        return celtypes.MapType({celtypes.StringType(k): to_cel(v, sub) for k, v in value.items()})
    if isinstance(value, list):
        items = schema.get("items")
        return celtypes.ListType([to_cel(v, items if isinstance(items, Mapping) else None) for v in value])
    kind, fmt = schema.get("type"), schema.get("format")
    if isinstance(value, bool) or value is None:
        return celpy.json_to_cel(value)
    if kind == "number" and isinstance(value, int | float):
        return celtypes.DoubleType(value)
    if isinstance(value, str) and kind == "string":
        if fmt == "byte":
            return celtypes.BytesType(base64.b64decode(value))
        if fmt == "duration":
            return celtypes.DurationType(value)
        if fmt in ("date", "date-time", "datetime"):
            return celtypes.TimestampType(value if fmt != "date" else f"{value}T00:00:00Z")
    return celpy.json_to_cel(value)


@dataclass(frozen=True)
class RuleCheck:
    path: str
    message: str
    rule: str
    outcome: str
    """`passed`, `failed` or `skipped: <why>`."""


def evaluate(rule: str, value: Any, schema: Mapping[str, Any] | None = None, *, root: bool = False) -> bool:
    """The rule's verdict on `value` (`self`, typed by `schema`); raises `Unsupported`, or
    `celpy.CELEvalError` for a run-time error (a missing field) or a non-bool result."""
    result = _program(rule).evaluate({"self": to_cel(value, schema, root=root)})
    if isinstance(result, celpy.CELEvalError):
        raise result
    if not isinstance(result, celtypes.BoolType):
        raise celpy.CELEvalError(f"the rule yields {type(result).__name__}, not bool")
    return bool(result)


def _why(e: Exception) -> str:
    text = str(e.args[0]) if e.args else str(e)
    return f"{type(e).__name__}: {text[:160]}"


def _walk(schema: Mapping[str, Any], value: Any, path: str) -> Iterator[RuleCheck]:
    for v in schema.get("x-kubernetes-validations") or []:
        rule = v.get("rule", "")
        message = v.get("message") or rule
        try:
            outcome = "passed" if evaluate(rule, value, schema, root=not path) else "failed"
        except Unsupported as e:
            outcome = f"skipped: {e}"
        except Exception as e:  # a CEL run-time error (absent field): not the rule's verdict
            outcome = f"skipped: {_why(e)}"
        yield RuleCheck(path or ".", message, rule, outcome)
    if isinstance(value, Mapping):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                yield from _walk(props[key], sub, f"{path}.{key}")
            elif isinstance(extra, Mapping):
                yield from _walk(extra, sub, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for n, item in enumerate(value):
            yield from _walk(schema["items"], item, f"{path}[{n}]")


def rule_checks(obj: Mapping[str, Any]) -> list[RuleCheck]:
    """Every CEL rule of `obj`'s vendored upstream CRD that applies to a field `obj` sets, with its
    outcome; empty for a kind without a vendored CRD."""
    truth = upstream.crd(str(obj.get("apiVersion")), str(obj.get("kind")))
    if truth is None:
        return []
    return list(_walk(truth.schema, dict(obj), ""))


def rule_violations(obj: Mapping[str, Any]) -> list[str]:
    """The CEL rules of its upstream CRD that `obj` breaks: what the API server would refuse it for."""
    name = (obj.get("metadata") or {}).get("name", "?")
    return [f"{obj.get('kind')}/{name} at {c.path}: {c.message}" for c in rule_checks(obj) if c.outcome == "failed"]
