"""JSON Schema (draft 2020-12) from annotated dataclasses: the results schema is generated from
the typed record, never kept by hand.

Each field becomes a property typed from its annotation (str, int, float, bool, None, Enum
subclasses, unions, ``dict[str, X]``, ``list[X]``, ``Any`` and nested dataclasses, which go to
``$defs``), described by its metadata ``doc`` and refined by its metadata ``schema`` (extra
keywords such as ``{"minimum": 1}``). Fields without a default are required; no other
properties are allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Any

_SIMPLE = {str: "string", int: "integer", float: "number", bool: "boolean",
           type(None): "null"}


class SchemaBuilder:
    """Collects the ``$defs`` of the dataclasses it meets while typing fields."""

    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}

    def of_type(self, tp: Any) -> dict[str, Any]:
        """The schema of a type annotation (already resolved)."""
        if tp is Any:
            return {}
        if tp in _SIMPLE:
            return {"type": _SIMPLE[tp]}
        if isinstance(tp, type) and issubclass(tp, Enum):
            return {"enum": [m.value for m in tp]}
        if dataclasses.is_dataclass(tp):
            return {"$ref": f"#/$defs/{self.define(tp)}"}
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (types.UnionType, typing.Union):
            parts = [self.of_type(a) for a in args]
            if all(set(p) == {"type"} for p in parts):
                return {"type": [p["type"] for p in parts]}
            return {"anyOf": parts}
        if origin is dict:
            value = self.of_type(args[1]) if args else {}
            return {"type": "object", "additionalProperties": value or True}
        if origin is list or origin is tuple:
            return {"type": "array", **({"items": self.of_type(args[0])} if args else {})}
        raise TypeError(f"no JSON Schema for the annotation {tp!r}")

    def object_schema(self, cls: type, extra: tuple[type, ...] = ()) -> dict[str, Any]:
        """The object schema of dataclass ``cls``; fields of ``extra`` classes (subclasses that
        add optional fields) are allowed too, never required."""
        props: dict[str, Any] = {}
        required: list[str] = []
        for klass, may_require in ((cls, True), *((e, False) for e in extra)):
            hints = typing.get_type_hints(klass)
            for f in dataclasses.fields(klass):
                if f.name in props or not f.init:
                    continue
                doc = f.metadata.get("doc")
                if not doc:
                    raise TypeError(f"{klass.__name__}.{f.name} has no doc: every field of the "
                                    "results schema is documented")
                props[f.name] = {**self.of_type(hints[f.name]), **f.metadata.get("schema", {}),
                                 "description": doc}
                has_default = (f.default is not dataclasses.MISSING
                               or f.default_factory is not dataclasses.MISSING)
                if may_require and not has_default and not f.kw_only:
                    required.append(f.name)
        first_line = (cls.__doc__ or cls.__name__).strip().splitlines()[0]
        return {"type": "object", "description": first_line, "required": required,
                "additionalProperties": False, "properties": props}

    def define(self, cls: type, extra: tuple[type, ...] = ()) -> str:
        """Add ``cls`` to ``$defs`` (once) and return its name there."""
        name = cls.__name__
        if name not in self.defs:
            self.defs[name] = {}  # reserved first: a class may refer to itself
            self.defs[name] = self.object_schema(cls, extra)
        return name
