"""The results schema: JSON Schemas for cell records and the run manifest, checked on write and
on read.

The record schema is generated from the typed record (harness.records.record.CellRecord and the
cell it names, harness.records.cell.Cell): each field's ``doc`` is its description, so the schema
cannot drift from the code. ``python -m harness.records.schema`` writes it to
``harness/records/schemas/record.schema.json`` for readers (a test checks that file is current).
The manifest's schema is ``schemas/manifest.schema.json``. Every file a run writes carries
``"schema_version": SCHEMA_VERSION``. Files of an older version are migrated on read
(harness.records.migrate); a newer or unknown version is refused with a message that says which
version wrote it; any other mismatch names the file, the JSON path of the offending value and
what was expected there.

Bump SCHEMA_VERSION (and add a migration) whenever a change would make files of the old version
fail the new schema, or make the old readers misread new files.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from harness.errors import SchemaError
from harness.records import migrate
from harness.records.cell import Cell, TimeCell
from harness.records.dataclass_schema import SchemaBuilder
from harness.records.record import CellRecord

SCHEMA_VERSION = "2"
SCHEMA_DIR = Path(__file__).parent / "schemas"
KINDS = {"record": "cell record", "manifest": "run manifest"}


class SchemaVersionError(SchemaError):
    """A results file was written with another results schema version (or none)."""


def schema_path(kind: str, version: str = SCHEMA_VERSION) -> Path:
    """The JSON Schema file of ``kind`` ("record" or "manifest") for ``version`` (older
    versions' schemas are kept under schemas/v<version>/, to check a file before migrating it)."""
    if kind not in KINDS:
        raise ValueError(f"unknown schema {kind!r}; known: {', '.join(KINDS)}")
    folder = SCHEMA_DIR if version == SCHEMA_VERSION else SCHEMA_DIR / f"v{version}"
    return folder / f"{kind}.schema.json"


def record_schema() -> dict[str, Any]:
    """The cell record's JSON Schema, generated from harness.records.record.CellRecord (and the
    cell it names, harness.records.cell.Cell)."""
    builder = SchemaBuilder()
    top = builder.object_schema(CellRecord)
    top["properties"]["cell"] = {"$ref": f"#/$defs/{builder.define(Cell, (TimeCell,))}",
                                 "description": top["properties"]["cell"]["description"]}
    top["properties"]["schema_version"] = {
        "const": SCHEMA_VERSION, "description": top["properties"]["schema_version"]["description"]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"urn:wsfm-bench:results:record:{SCHEMA_VERSION}",
            "title": f"wsfm-bench cell record, results schema version {SCHEMA_VERSION}",
            "description": " ".join((CellRecord.__doc__ or "").split()),
            **top, "$defs": builder.defs}


@functools.cache
def load_schema(kind: str, version: str = SCHEMA_VERSION) -> dict[str, Any]:
    """The schema of ``kind`` at ``version`` (the current record schema is generated)."""
    if kind == "record" and version == SCHEMA_VERSION:
        return record_schema()
    return json.loads(schema_path(kind, version).read_text())


@functools.cache
def _validator(kind: str, version: str = SCHEMA_VERSION) -> Draft202012Validator:
    schema = load_schema(kind, version)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _json_path(error: ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 5] + " ..."


def _describe(error: ValidationError) -> str:
    """'at $.a.b: what is wrong' for one validation error; a missing field gets its own path."""
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [f for f in error.validator_value if f not in error.instance]
        if missing:
            where = _json_path(error)
            return f"at {where}.{missing[0]}: required field {missing[0]!r} is missing"
    if error.validator == "dependentRequired" and isinstance(error.instance, dict):
        for present, needs in error.validator_value.items():
            missing = [f for f in needs if present in error.instance and f not in error.instance]
            if missing:
                return (f"at {_json_path(error)}.{missing[0]}: required field {missing[0]!r} is "
                        f"missing ({present!r} is present, and requires it)")
    message = _short(error.message)
    if error.validator == "additionalProperties" and error.validator_value is False:
        return f"at {_json_path(error)}: {message} (no other fields are allowed there)"
    return f"at {_json_path(error)}: {message}"


# Fields every version of a record or manifest has had: a file with none of them is no
# results file at all (an empty or foreign JSON), whatever its version.
_FIELDS_OF_ANY_VERSION = frozenset({"cell_id", "task", "method", "metrics", "run_id", "suite",
                                    "config_hash"})


def _check_version(obj: Any, source: str, what: str, writing: bool) -> None:
    if not isinstance(obj, dict):
        verb = "refusing to write" if writing else "cannot read"
        raise SchemaError(f"{verb} {source}: a {what} must be a JSON object, "
                          f"got {type(obj).__name__}")
    if "schema_version" not in obj and not writing and not set(obj) & _FIELDS_OF_ANY_VERSION:
        raise SchemaError(f"{source} is not a {what}: it holds none of a {what}'s fields "
                          f"({', '.join(sorted(_FIELDS_OF_ANY_VERSION))}); it is empty or "
                          "foreign: delete it (a cell record: the cell is run again)")
    if "schema_version" not in obj:
        if writing:
            raise SchemaVersionError(f"refusing to write {source}: the {what} has no "
                                     f"schema_version (this wsfm-bench writes version "
                                     f"{SCHEMA_VERSION})")
        raise SchemaVersionError(
            f"{source} has no schema_version: it was written by an older wsfm-bench, before "
            f"results were versioned; this wsfm-bench reads version {SCHEMA_VERSION}: rerun "
            "the suite with this version, or read it with the wsfm-bench that wrote it"
        )
    version = obj["schema_version"]
    if version == SCHEMA_VERSION or (not writing and version in migrate.MIGRATIONS):
        return
    if not isinstance(version, str):
        verb = "refusing to write" if writing else "cannot read"
        raise SchemaVersionError(f"{verb} {source}: schema_version must be a string (this "
                                 f"wsfm-bench {'writes' if writing else 'reads'} version "
                                 f"\"{SCHEMA_VERSION}\"), got {version!r}")
    if writing:
        raise SchemaVersionError(f"refusing to write {source}: the {what} carries results "
                                 f"schema version {version}, but this wsfm-bench writes version "
                                 f"{SCHEMA_VERSION}")
    readable = ", ".join([*migrate.MIGRATIONS, SCHEMA_VERSION])
    raise SchemaVersionError(
        f"{source} was written with results schema version {version}; this wsfm-bench reads "
        f"versions {readable}: read it with the wsfm-bench that wrote it (or a newer one), or "
        "rerun the suite with this version"
    )


def _check(kind: str, obj: dict[str, Any], version: str, source: str, writing: bool,
           hint: str | None) -> None:
    """Raise SchemaError unless ``obj`` matches the schema of ``kind`` at ``version``."""
    error = best_match(_validator(kind, version).iter_errors(obj))
    if error is None:
        return
    what = KINDS[kind]
    problem = (f"does not match the results schema (version {version}, "
               f"{schema_path(kind, version).name}): {_describe(error)}")
    if writing:
        raise SchemaError(f"refusing to write {what} {source}: it {problem}; the code that "
                          "built it (the runner or a plugin) produced a value the schema does "
                          "not allow")
    raise SchemaError(f"{what} {source} {problem}" + (f"; {hint}" if hint else ""))


def _validate(kind: str, obj: Any, source: str | Path, writing: bool,
              hint: str | None) -> dict[str, Any]:
    """``obj`` checked against its version's schema and, when older, migrated to this version
    and checked again: what a reader of this version can use."""
    source = str(source)
    _check_version(obj, source, KINDS[kind], writing)
    version = obj["schema_version"]
    _check(kind, obj, version, source, writing, hint)
    if version == SCHEMA_VERSION:
        return obj
    current = migrate.to_current(kind, obj)
    _check(kind, current, SCHEMA_VERSION, f"{source} (migrated from version {version})", False,
           hint)
    return current


def validate_record(
    obj: Any, source: str | Path, *, writing: bool = False, hint: str | None = None
) -> dict[str, Any]:
    """The cell record ``obj``, valid and of this version (an older one migrated); SchemaError
    (SchemaVersionError for a version this wsfm-bench cannot read) otherwise. ``source`` names
    it in the message (usually its path); ``writing`` words the message for a file about to be
    written (which must be of this version); ``hint`` (what to do) ends a read error."""
    return _validate("record", obj, source, writing, hint)


def validate_manifest(
    obj: Any, source: str | Path, *, writing: bool = False, hint: str | None = None
) -> dict[str, Any]:
    """The run manifest ``obj``, valid and of this version; the arguments and errors are
    validate_record's."""
    return _validate("manifest", obj, source, writing, hint)


def main() -> None:
    """Write the generated record schema to schemas/record.schema.json (for readers)."""
    path = schema_path("record")
    path.write_text(json.dumps(record_schema(), indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
