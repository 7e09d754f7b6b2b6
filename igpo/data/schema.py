"""The canonical table every data source becomes, the quarantine table, and their Parquet I/O.

One schema for every source (MetaMathQA, OpenR1-Math, GSM8K, MATH500, AMC, the demo task) so that tables
concatenate and every downstream stage reads the same columns. Source-specific fields live in one
``metadata`` column holding a JSON object, rather than in per-source columns that would make the schemas
differ. Rows that cannot be ingested are not dropped silently: they go to the quarantine table with a
reason and the raw row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CANONICAL_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("reasoning", pa.string(), nullable=False),  # may be "" for evaluation sets
        pa.field("answer", pa.string(), nullable=False),
        pa.field("metadata", pa.string(), nullable=False),  # a JSON object of source-specific fields
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("row", pa.string(), nullable=False),  # upstream id, or the row's index in its file
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),  # the offending row as JSON (unserialisable values as repr)
    ]
)

COLUMNS = tuple(CANONICAL_SCHEMA.names)
_NONEMPTY = ("id", "source", "split", "question", "answer")


class SchemaError(ValueError):
    """A table does not follow the canonical (or quarantine) schema."""


class DataFileError(ValueError):
    """A data file cannot be read as the format it claims to be; the message names the file."""


def raw_json(row: Any) -> str:
    """A row as JSON for the quarantine table; values JSON cannot hold are written as their repr."""
    return json.dumps(row, ensure_ascii=False, default=repr)


def rows_to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema = CANONICAL_SCHEMA) -> pa.Table:
    """Build a table of ``schema`` from row dicts (extra keys are an error, so typos cannot hide)."""
    columns: dict[str, list] = {name: [] for name in schema.names}
    for row in rows:
        if set(row) != set(schema.names):
            raise SchemaError(f"row keys {sorted(row)} differ from the schema columns {sorted(schema.names)}")
        for name in schema.names:
            columns[name].append(row[name])
    return pa.table(columns, schema=schema)


def empty_table(schema: pa.Schema = CANONICAL_SCHEMA) -> pa.Table:
    """A table with the schema's columns and no rows."""
    return schema.empty_table()


def validate_table(table: pa.Table, schema: pa.Schema = CANONICAL_SCHEMA) -> pa.Table:
    """Check ``table`` against ``schema`` and return it with exactly the schema's column order.

    For the canonical schema also checks that ids are unique, the required text fields are non-empty and
    every metadata value is a JSON object: these are the invariants downstream stages rely on.
    """
    names = set(table.column_names)
    missing, extra = set(schema.names) - names, names - set(schema.names)
    if missing or extra:
        raise SchemaError(f"table columns differ from the schema: missing {sorted(missing)}, unexpected {sorted(extra)}")
    table = table.select(schema.names)
    for field in schema:
        column = table.column(field.name)
        if column.type != field.type:
            raise SchemaError(f"column {field.name!r} has type {column.type}, expected {field.type}")
        if not field.nullable and column.null_count:
            raise SchemaError(f"column {field.name!r} has {column.null_count} null value(s)")
    if schema.equals(CANONICAL_SCHEMA):
        _check_canonical_values(table)
    return table.cast(schema)  # carries the non-nullable flags even if the input's fields were nullable


def _check_canonical_values(table: pa.Table) -> None:
    ids = table.column("id").to_pylist()
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise SchemaError(f"duplicate id {dup!r}")
    for name in _NONEMPTY:
        for index, value in enumerate(table.column(name).to_pylist()):
            if not value.strip():
                raise SchemaError(f"row {index} (id {ids[index]!r}) has an empty {name!r}")
    for index, value in enumerate(table.column("metadata").to_pylist()):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as err:
            raise SchemaError(f"row {index} (id {ids[index]!r}): metadata is not JSON ({err.msg})") from None
        if not isinstance(parsed, dict):
            raise SchemaError(f"row {index} (id {ids[index]!r}): metadata is not a JSON object")


def concat_tables(tables: Iterable[pa.Table], schema: pa.Schema = CANONICAL_SCHEMA) -> pa.Table:
    """Concatenate tables of one schema (validated, so ids must stay unique across them)."""
    tables = list(tables)
    if not tables:
        return empty_table(schema)
    return validate_table(pa.concat_tables([t.cast(schema) for t in tables]), schema)


def write_table(table: pa.Table, path: str | Path, schema: pa.Schema = CANONICAL_SCHEMA) -> Path:
    """Validate and write ``table`` as Parquet; returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(validate_table(table, schema), path)
    return path


def read_table(path: str | Path, schema: pa.Schema = CANONICAL_SCHEMA) -> pa.Table:
    """Read and validate a Parquet table written by :func:`write_table`.

    Raises DataFileError naming the file when it is not Parquet, and SchemaError (also naming it) when
    it is Parquet of another schema.
    """
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataFileError(f"{path}: not a readable Parquet file ({_first_line(err)})") from None
    try:
        return validate_table(table, schema)
    except SchemaError as err:
        raise SchemaError(f"{path}: {err}") from None


def metadata_of(table: pa.Table) -> list[dict[str, Any]]:
    """The metadata column parsed back into dicts."""
    return [json.loads(m) for m in table.column("metadata").to_pylist()]


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
