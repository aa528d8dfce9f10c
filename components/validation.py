"""One way to validate a spec: pydantic field types for single values, `@check` for everything else.

Single values (types, bounds, patterns, enums) are pydantic field constraints or
`field_validator`s raising `ValueError("<what is wrong>; <what is allowed>")`. Anything that
reads more than one field, or another section of the stack, is a *check*: a method decorated
with `@check("field", ...)` that yields `Problem`s, each at its own key path below the model:

    @check("node_pools")
    def _unique_pools(self) -> Iterator[Problem]:
        names = [p.name for p in valid(self.node_pools)]
        for name in repeated(names):
            yield Problem(("nodePools",), f"node pool names must be unique, repeated: {name}")

Every problem is reported at once, whatever else is wrong. A check runs whenever the fields it
names are valid, even when other fields of the same model are not: it then sees a `Partial` of
the model, whose invalid fields read as `INVALID` (and a list whose items partly failed holds
the valid items and a `Partial` for each failed one). So a check never says anything about a
field that has its own error (no false follow-ons), and never goes quiet because an unrelated
field is wrong. Problems become pydantic errors (type `aicloud_check`), so the error list of a
stack names every problem at its full key path, in one format:

    aicloud:<key path>: <what is wrong and what is allowed> (got <value>)

Adding a key: declare the field with its type, default and docstring; put a single-value rule in
the type or a `field_validator`; put anything that reads a second field (or another section:
`StackConfig`'s checks in `stacks/config.py`) in a `@check` naming every field it reads, and let
it skip values that read as `INVALID`. Cloud rules cite their source in a comment beside them.
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

CHECK_ERROR = "aicloud_check"
"""The pydantic error type of a problem found by a check."""


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __bool__(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self  # a field of an invalid field is invalid too

    def __iter__(self) -> Iterator[Any]:
        return iter(())


INVALID: Any = _Marker("INVALID")
"""What an invalid field reads as in a `Partial` (falsy)."""
NOTHING: Any = _Marker("NOTHING")
"""`Problem.got` when there is no single offending value to show."""
SECRET = "[secret]"
"""A secure config value (`pulumi config set --secret`) in the offline plan: it cannot be
decrypted there, so it is a secret unknown, accepted wherever a string is and shown as is.
Under `pulumi up` the engine hands the program the decrypted value, which is validated."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem a check found: where (key path below the model, camelCase), what, the value."""

    loc: tuple[str | int, ...]
    message: str
    got: Any = NOTHING


@dataclass
class Partial:
    """The valid fields of a model that failed validation; other fields read as `INVALID`."""

    model: type
    values: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name in ("model", "values") or name.startswith("__"):
            raise AttributeError(name)
        if name in self.model.model_fields:
            return self.values.get(name, INVALID)
        member = getattr(self.model, name, None)
        if callable(member) and not isinstance(member, type):
            return member.__get__(self)  # a helper method of the model, bound to the partial
        raise AttributeError(f"{self.model.__name__} has no field {name!r}")


def is_valid(value: Any) -> bool:
    """Whether `value` is a fully validated value (not `INVALID`, not a `Partial`)."""
    return value is not INVALID and not isinstance(value, Partial)


def valid(items: Iterable[Any] | Any) -> list[Any]:
    """The fully valid items of a (possibly partly valid) list; [] when the list is `INVALID`."""
    if items is INVALID or items is None:
        return []
    return [i for i in items if is_valid(i)]


def repeated(values: Iterable[Any]) -> list[Any]:
    """Values that occur more than once, sorted."""
    seen: list[Any] = list(values)
    return sorted({v for v in seen if seen.count(v) > 1})


def check(*fields: str) -> Callable[[Callable[..., Iterable[Problem]]], Callable[..., Iterable[Problem]]]:
    """Mark a method as a check that runs when every field in `fields` is valid (or partly valid
    lists, for list fields). The method receives the model, or a `Partial` of it."""

    def mark(fn: Callable[..., Iterable[Problem]]) -> Callable[..., Iterable[Problem]]:
        fn.__aicloud_check__ = fields  # type: ignore[attr-defined]
        return fn

    return mark


@functools.cache
def checks_of(model: type) -> tuple[tuple[tuple[str, ...], Callable[..., Iterable[Problem]]], ...]:
    """The checks of a model class (its own and inherited), in definition order."""
    out: dict[str, tuple[tuple[str, ...], Callable[..., Iterable[Problem]]]] = {}
    for klass in reversed(model.__mro__):
        for name, member in vars(klass).items():
            fields = getattr(member, "__aicloud_check__", None)
            if fields is not None:
                out[name] = (fields, member)
    return tuple(out.values())


# --------------------------------------------------------------------------- shared value rules

RESERVED_NAMESPACES: tuple[str, ...] = ("default", "kube-system", "kube-public", "kube-node-lease")
"""Namespaces every cluster already has (Kubernetes docs, "Namespaces: initial namespaces")."""
OWNED_NAMESPACES: tuple[str, ...] = ("aicloud-training", "kubeflow", "monitoring", "keda", "kserve", "istio-system")
"""Namespaces aicloud or the add-ons it installs create for their own workloads."""


def namespace_name(value: str, *, default: str | None = None) -> str:
    """`value` if it is a namespace a stack may name for aicloud to create (ValueError if not):
    a DNS-1123 label of at most 63 characters (Kubernetes docs, "Object names: RFC 1123 label
    names"), not one every cluster has, no `kube-` prefix (reserved for Kubernetes system
    namespaces, same page), and not a namespace of another aicloud workload or add-on."""
    if value == default:
        return value
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value):
        raise ValueError(
            "a namespace is a DNS label: at most 63 lowercase letters, digits or '-', starting and ending "
            "with a letter or digit"
        )
    if value in RESERVED_NAMESPACES or value.startswith("kube-"):
        raise ValueError(
            f"{value!r} is a Kubernetes system namespace (every cluster has it, and `kube-` is reserved); "
            "aicloud creates the namespace it deploys to: choose another name"
        )
    if value in OWNED_NAMESPACES:
        raise ValueError(f"{value!r} belongs to another aicloud workload or add-on; choose another name")
    return value


# --------------------------------------------------------------------------- bookkeeping
#
# While a model validates, a frame records the fields that validated (by name) and, for a field
# being validated, every nested model result in order (list items). Frames live on a context
# variable, so nested `model_validate` calls made by before-validators take part too.


@dataclass
class _Frame:
    values: dict[str, Any] = field(default_factory=dict)
    current: str | None = None
    items: list[Any] = field(default_factory=list)


_FRAMES: contextvars.ContextVar[tuple[_Frame | None, ...]] = contextvars.ContextVar("aicloud_frames", default=())


def _push(frame: _Frame | None) -> contextvars.Token[tuple[_Frame | None, ...]]:
    return _FRAMES.set((*_FRAMES.get(), frame))


def _parent() -> _Frame | None:
    frames = _FRAMES.get()
    return frames[-1] if frames else None


def _note_item(value: Any) -> None:
    parent = _parent()
    if parent is not None and parent.current is not None:
        parent.items.append(value)


def _models_of(annotation: Any) -> tuple[type, ...]:
    """The model classes a field holds directly (`X`, `X | None`), not inside a dict or list."""
    members = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return tuple(m for m in members if isinstance(m, type) and hasattr(m, "model_fields"))


def _takes_text(annotation: Any) -> bool:
    if annotation is str:
        return True
    return get_origin(annotation) in (Union, UnionType) and str in get_args(annotation)


def validate_field(value: Any, handler: Callable[[Any], Any], name: str, annotation: Any = None) -> Any:
    """Field wrap-validator body: record the field's value (or its partly valid items); a secret
    unknown passes unchecked where the field takes text."""
    if value == SECRET and isinstance(value, str):
        if not _takes_text(annotation):
            raise ValueError(
                "a secret (secure:) value cannot be planned here: the plan sizes or places resources "
                "with it; set it in plain text"
            )
        return value
    frame = _parent()
    if frame is None:
        return handler(value)
    outer, frame.current, frame.items = (frame.current, frame.items), name, []
    try:
        result = handler(value)
    except ValidationError:
        if isinstance(value, list) and frame.items and len(frame.items) == len(value):
            frame.values[name] = list(frame.items)
        elif (
            isinstance(value, dict)
            and len(frame.items) == 1
            and isinstance(frame.items[0], Partial)
            and frame.items[0].model in _models_of(annotation)
        ):
            frame.values[name] = frame.items[0]
        raise
    else:
        frame.values[name] = result
        return result
    finally:
        frame.current, frame.items = outer


def problem_errors(problems: Iterable[Problem]) -> list[dict[str, Any]]:
    """Pydantic line errors (for `ValidationError.from_exception_data`) of `problems`."""
    return [{"type": PydanticCustomError(CHECK_ERROR, p.message), "loc": p.loc, "input": p.got} for p in problems]


def _line_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"type": PydanticCustomError(e["type"], e["msg"]), "loc": e["loc"], "input": e.get("input")}
        for e in exc.errors(include_url=False)
    ]


def _run_checks(model: type, subject: Any, failed: set[str]) -> list[Problem]:
    problems: list[Problem] = []
    token = _push(None)  # models built inside a check belong to no field
    try:
        for fields, fn in checks_of(model):
            if any(f in failed and not isinstance(getattr(subject, f), list | Partial) for f in fields):
                continue
            if isinstance(subject, Partial) and any(getattr(subject, f) is INVALID for f in fields):
                continue
            try:
                problems.extend(fn(subject))
            except (TypeError, AttributeError):
                if not isinstance(subject, Partial):
                    raise
                # A check reading or comparing an invalid value (INVALID) stays quiet: the value
                # has its own error, and a stack file must never end in a traceback.
    finally:
        _FRAMES.reset(token)
    return problems


def validate_model(model: type, data: Any, handler: Callable[[Any], Any]) -> Any:
    """Model wrap-validator body: validate, then run the model's checks on the result (or on the
    valid part of it), and raise every error and problem together."""
    frame = _Frame()
    token = _push(frame)
    try:
        result = handler(data)
    except ValidationError as exc:
        _FRAMES.reset(token)
        errors = _line_errors(exc)
        failed = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        partial = Partial(model, {k: v for k, v in frame.values.items()})
        problems = _run_checks(model, partial, failed) if isinstance(data, dict) else []
        _note_item(partial)
        raise ValidationError.from_exception_data(model.__name__, [*errors, *problem_errors(problems)]) from None
    _FRAMES.reset(token)
    problems = _run_checks(model, result, set())
    if problems:
        _note_item(Partial(model, {k: getattr(result, k) for k in model.model_fields}))
        raise ValidationError.from_exception_data(model.__name__, problem_errors(problems))
    _note_item(result)
    return result


def iter_problems(*groups: Iterable[Problem] | None) -> Iterator[Problem]:
    """Chain problem lists, skipping `None`."""
    for group in groups:
        if group:
            yield from group
