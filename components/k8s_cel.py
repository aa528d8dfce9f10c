"""The CEL validation rules (`x-kubernetes-validations`) of vendored upstream CRDs, evaluated offline.

The API server runs these rules on every create; a custom resource that passes its CRD's structural
schema can still be refused by one (Karpenter's EC2NodeClass refuses `spec.tags` keys starting with
`kubernetes.io/cluster`, its NodePool refuses labels in the `karpenter.sh` domain). No CEL runtime
is a dependency here, so this evaluates the subset of CEL that CRD rules are mostly written in, by
translating a rule token by token into a Python expression over wrapped values:

- literals, `self`, field access, indexing, `in`, comparisons, `!`, `&&`, `||`, `? :`;
- the macros `all` / `exists` / `exists_one` (bound variable) on lists and maps (over keys);
- string methods `startsWith`, `endsWith`, `contains`, `matches`, `find` (Kubernetes regex
  library), `split`, `lowerAscii`, `size()`, and the functions `size`, `int`, `string`, `has`.

A rule that uses anything else, or a transition rule (`oldSelf`), is not evaluated: `rule_checks`
reports it as skipped, never as passed. A rule that errors at run time (a missing field) is
skipped too. Schema defaults are not applied first (the API server does): a rule that reads a
defaulted field we leave unset is skipped, and `has()` of such a field reads it as absent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from components import upstream

_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|"""
    r"""(?P<op>\|\||&&|==|!=|<=|>=|[!<>()\[\]{},.?:+\-*/%])|(?P<id>[A-Za-z_][A-Za-z0-9_]*))"""
)
_METHODS = {"startsWith", "endsWith", "contains", "matches", "find", "split", "lowerAscii", "size",
            "all", "exists", "exists_one"}  # fmt: skip
_FUNCTIONS = {"size", "int", "string", "has"}


class Unsupported(ValueError):
    """The rule uses CEL this evaluator does not translate."""


class _Str(str):
    def startsWith(self, p: str) -> bool:  # noqa: N802 (CEL's names)
        return self.startswith(p)

    def endsWith(self, p: str) -> bool:  # noqa: N802
        return self.endswith(p)

    def contains(self, p: str) -> bool:
        return p in self

    def matches(self, p: str) -> bool:
        return re.search(p, self) is not None

    def find(self, p: str) -> _Str:  # type: ignore[override]  # Kubernetes CEL regex library
        m = re.search(p, self)
        return _Str(m.group(0) if m else "")

    def split(self, sep: str) -> list[_Str]:  # type: ignore[override]
        return _List(_Str(s) for s in str.split(self, sep))

    def lowerAscii(self) -> _Str:  # noqa: N802
        return _Str(self.lower())

    def size(self) -> int:
        return len(self)


class _List(list):
    def all(self, f: Any) -> bool:
        return all(f(x) for x in self)

    def exists(self, f: Any) -> bool:
        return any(f(x) for x in self)

    def exists_one(self, f: Any) -> bool:
        return sum(1 for x in self if f(x)) == 1

    def size(self) -> int:
        return len(self)


class _Map(dict):
    def all(self, f: Any) -> bool:
        return all(f(k) for k in self)

    def exists(self, f: Any) -> bool:
        return any(f(k) for k in self)

    def exists_one(self, f: Any) -> bool:
        return sum(1 for k in self if f(k)) == 1

    def size(self) -> int:
        return len(self)


def wrap(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _Map({_Str(k): wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return _List(wrap(v) for v in value)
    if isinstance(value, str):
        return _Str(value)
    return value


def _has(expr: str) -> str:
    """`has(a.b)` -> `_has(a, 'b')` (presence, not truth)."""
    m = re.fullmatch(r"(.+)\[('[A-Za-z_][A-Za-z0-9_]*')\]", expr)
    if not m:
        raise Unsupported(f"has({expr})")
    return f"_has({m.group(1)}, {m.group(2)})"


def translate(rule: str) -> str:
    """The Python expression of a CEL rule (over `wrap`ped values), or `Unsupported`."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    rule = rule.strip()
    while pos < len(rule):
        m = _TOKEN.match(rule, pos)
        if not m or m.end() == pos:
            raise Unsupported(rule[pos:])
        pos = m.end()
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
    out: list[str] = []
    i = 0
    # ternaries: Python spells `c ? a : b` as `(a if c else b)`; translated by nesting below.
    while i < len(tokens):
        kind, text = tokens[i]
        prev = tokens[i - 1][1] if i else ""
        if kind == "id":
            if text == "oldSelf":
                raise Unsupported("transition rule")
            if prev == ".":
                if i + 1 >= len(tokens) or tokens[i + 1][1] != "(":
                    # field access: indexing, so a field named like a dict method (`values`) is the field
                    out[-1] = f"[{text!r}]"
                    i += 1
                    continue
                if text not in _METHODS:
                    raise Unsupported(text)
                if text in ("all", "exists", "exists_one"):
                    # .all(v, body) -> .all(lambda v: body)
                    if tokens[i + 1][1] != "(" or tokens[i + 2][0] != "id" or tokens[i + 3][1] != ",":
                        raise Unsupported(text)
                    out += [f"{text}(", f"lambda {tokens[i + 2][1]}: "]
                    i += 4
                    continue
                out.append(text)
            elif text == "has":
                depth, j = 0, i + 1
                inner = []
                while j < len(tokens):
                    t = tokens[j][1]
                    depth += t == "("
                    depth -= t == ")"
                    if depth == 0:
                        break
                    if j > i + 1:
                        inner.append(t)
                    j += 1
                out.append(_has(translate("".join(inner))))
                i = j + 1
                continue
            elif text in ("true", "false", "null"):
                out.append({"true": "True", "false": "False", "null": "None"}[text])
            elif text == "in":
                out.append(" in ")
            elif text in _FUNCTIONS or text == "self" or (i + 1 < len(tokens) and tokens[i + 1][1] != "("):
                out.append({"string": "_Str"}.get(text, text))
            else:
                raise Unsupported(text)
        elif kind == "op":
            if text in ("{", "}", "+", "-", "*", "/", "%"):
                raise Unsupported(text)
            out.append({"!": " not ", "&&": " and ", "||": " or "}.get(text, text))
        else:
            out.append(text)
        i += 1
    return "".join(_ternaries(_groups(out)))


def _groups(frags: list[str]) -> list[Any]:
    """Nest the fragments by brackets: a group is a list that starts with its opener fragment
    (one ending in `(` or `[`) and ends with its closer."""
    root: list[Any] = []
    stack = [root]
    for f in frags:
        if f.endswith(("(", "[")):
            group: list[Any] = [f]
            stack[-1].append(group)
            stack.append(group)
        elif f in (")", "]"):
            if len(stack) == 1:
                raise Unsupported("unbalanced brackets")
            stack[-1].append(f)
            stack.pop()
        else:
            stack[-1].append(f)
    if len(stack) != 1:
        raise Unsupported("unbalanced brackets")
    return root


def _ternaries(items: list[Any]) -> list[str]:
    """Flatten a group, turning CEL's `c ? a : b` (lowest precedence, right-associative) into
    Python's `(a if c else b)` within each comma-separated part."""
    if items and isinstance(items[0], str) and items[0].endswith(("(", "[")):
        opener, body, closer = items[0], items[1:-1], items[-1]
        if body and isinstance(body[0], str) and body[0].startswith("lambda "):  # a macro's bound variable
            return [opener, body[0], *_ternaries(body[1:]), closer]
        return [opener, *_ternaries(body), closer]
    parts: list[list[Any]] = [[]]
    for item in items:
        if item == ",":
            parts.append([])
        else:
            parts[-1].append(item)
    out: list[str] = []
    for n, part in enumerate(parts):
        if n:
            out.append(",")
        out += _ternary(part)
    return out


def _ternary(part: list[Any]) -> list[str]:
    flat = lambda xs: [f for x in xs for f in (_ternaries(x) if isinstance(x, list) else [x])]  # noqa: E731
    if "?" not in part:
        return flat(part)
    q = part.index("?")
    depth, c = 0, None
    for i in range(q + 1, len(part)):
        if part[i] == "?":
            depth += 1
        elif part[i] == ":":
            if depth == 0:
                c = i
                break
            depth -= 1
    if c is None:
        raise Unsupported("? without :")
    cond, then, other = part[:q], part[q + 1 : c], part[c + 1 :]
    return ["((", *_ternary(then), ") if (", *flat(cond), ") else (", *_ternary(other), "))"]


def _has_field(obj: Any, field: str) -> bool:
    return isinstance(obj, Mapping) and field in obj


@dataclass(frozen=True)
class RuleCheck:
    path: str
    message: str
    rule: str
    outcome: str
    """`passed`, `failed` or `skipped: <why>`."""


def evaluate(rule: str, value: Any) -> bool:
    """The rule's verdict on `value` (`self`); raises `Unsupported` or the run-time error."""
    expr = translate(rule)
    env = {"self": wrap(value), "size": len, "int": int, "_Str": _Str, "_has": _has_field, "__builtins__": {}}
    return bool(eval(expr, env))  # noqa: S307 (translated from a vendored CRD, evaluated over our own manifest)


def _walk(schema: Mapping[str, Any], value: Any, path: str) -> Iterator[RuleCheck]:
    for v in schema.get("x-kubernetes-validations") or []:
        rule = v.get("rule", "")
        message = v.get("message") or rule
        try:
            outcome = "passed" if evaluate(rule, value) else "failed"
        except Unsupported as e:
            outcome = f"skipped: {e}"
        except Exception as e:  # a CEL run-time error (absent field): not the rule's verdict
            outcome = f"skipped: {type(e).__name__}: {e}"
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
    return list(_walk(truth.schema, {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}, ""))


def rule_violations(obj: Mapping[str, Any]) -> list[str]:
    """The CEL rules of its upstream CRD that `obj` breaks: what the API server would refuse it for."""
    name = (obj.get("metadata") or {}).get("name", "?")
    return [f"{obj.get('kind')}/{name} at {c.path}: {c.message}" for c in rule_checks(obj) if c.outcome == "failed"]
