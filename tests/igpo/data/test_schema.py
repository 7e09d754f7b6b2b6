"""The canonical table: validation invariants and Parquet round trips."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from igpo.data.schema import (
    CANONICAL_SCHEMA,
    QUARANTINE_SCHEMA,
    DataFileError,
    SchemaError,
    concat_tables,
    metadata_of,
    read_table,
    rows_to_table,
    validate_table,
    write_table,
)


def _row(i: int, **over) -> dict:
    row = {"id": f"s-{i}", "source": "s", "split": "train", "question": f"q{i}?", "reasoning": "", "answer": str(i),
           "metadata": json.dumps({"k": i})}
    row.update(over)
    return row


def test_parquet_round_trip_keeps_rows_and_schema(tmp_path):
    table = rows_to_table([_row(0), _row(1, reasoning="1+1=2\n\\boxed{2}")])
    path = write_table(table, tmp_path / "t.parquet")
    back = read_table(path)
    assert back.schema.equals(CANONICAL_SCHEMA)
    assert back.to_pylist() == table.to_pylist()
    assert metadata_of(back) == [{"k": 0}, {"k": 1}]


@pytest.mark.parametrize(
    "rows, message",
    [
        ([_row(0), _row(0)], "duplicate id 's-0'"),
        ([_row(0, question="  ")], "empty 'question'"),
        ([_row(0, answer="")], "empty 'answer'"),
        ([_row(0, metadata="{not json")], "metadata is not JSON"),
        ([_row(0, metadata="[1, 2]")], "not a JSON object"),
    ],
)
def test_validate_rejects_broken_invariants(rows, message):
    with pytest.raises(SchemaError, match=message):
        validate_table(rows_to_table(rows))


def test_validate_rejects_wrong_columns_and_types():
    table = rows_to_table([_row(0)])
    with pytest.raises(SchemaError, match="missing \\['answer'\\]"):
        validate_table(table.drop_columns(["answer"]))
    with pytest.raises(SchemaError, match="unexpected \\['extra'\\]"):
        validate_table(table.append_column("extra", pa.array([1])))
    wrong = table.set_column(table.schema.get_field_index("answer"), "answer", pa.array([1]))
    with pytest.raises(SchemaError, match="'answer' has type int64"):
        validate_table(wrong)
    with pytest.raises(SchemaError, match="differ from the schema"):
        rows_to_table([{**_row(0), "typo": 1}])


def test_validate_reorders_columns_and_concat_checks_ids_across_tables():
    table = rows_to_table([_row(0)])
    shuffled = table.select(list(reversed(table.column_names)))
    assert validate_table(shuffled).column_names == list(CANONICAL_SCHEMA.names)
    joined = concat_tables([rows_to_table([_row(0)]), rows_to_table([_row(1)])])
    assert joined.num_rows == 2
    with pytest.raises(SchemaError, match="duplicate id"):
        concat_tables([rows_to_table([_row(0)]), rows_to_table([_row(0)])])


def test_read_table_names_the_file_on_garbage_and_on_foreign_parquet(tmp_path):
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"\x00\x01not parquet at all" * 10)
    with pytest.raises(DataFileError, match="garbage.parquet: not a readable Parquet file"):
        read_table(garbage)
    foreign = write_table(rows_to_table([{"source": "s", "row": "1", "reason": "r", "raw": "{}"}], QUARANTINE_SCHEMA),
                          tmp_path / "q.parquet", QUARANTINE_SCHEMA)
    with pytest.raises(SchemaError, match="q.parquet: table columns differ"):
        read_table(foreign)
