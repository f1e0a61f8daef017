"""Writing Parquet with a table's declared schema, never one inferred from its rows.

DuckDB's `COPY ... (FORMAT parquet)` marks a column required when the rows it copies
happen to hold no NULL, so two stores wrote different schemas for the same table.
Every Parquet file p3log writes (sealed segments, projection snapshots, the export)
goes through here instead: the rows are cast to the declared Arrow schema (names,
order, types and nullability), a NULL in a column declared not null is refused, and
the schema's key-value metadata goes into the file. The same table therefore has
byte-identical schemas in every store, whatever its data.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pa_dataset
import pyarrow.parquet as pq

from p3log.store.errors import StoreError

COMPRESSION = "zstd"
# Key-value metadata keys p3log writes into its Parquet files.
META_STORE_ID = "p3log.store_id"
META_PROJECTION_VERSION = "p3log.projection_version"
META_DIALECT = "p3log.dialect"
META_DIALECT_SHA256 = "p3log.dialect_sha256"


def conform(rows: pa.Table | pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """`rows` as exactly `schema` (metadata included): its columns by name, in the
    schema's order, cast to its types. Refuses a NULL where the schema says not null."""
    table = pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else rows
    columns = []
    for field in schema:
        column = table.column(field.name).cast(field.type)
        if not field.nullable and column.null_count:
            raise StoreError(f"the column {field.name} holds NULL, which its schema forbids")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _encodings(schema: pa.Schema) -> dict[str, Any]:
    """How the columns are encoded: integers and instants (seqs, clocks, mostly rising)
    as deltas, which is what DuckDB did (half the bytes of a dictionary of seqs);
    everything else by dictionary where it repeats."""
    deltas = [
        field.name
        for field in schema
        if pa.types.is_int64(field.type) or pa.types.is_timestamp(field.type)
    ]
    return {
        "compression": COMPRESSION,
        "use_dictionary": [field.name for field in schema if field.name not in deltas],
        "column_encoding": dict.fromkeys(deltas, "DELTA_BINARY_PACKED"),
    }


def write_parquet(batches: Iterable[pa.RecordBatch], path: Path, schema: pa.Schema) -> int:
    """Write `batches` to the file `path` with `schema`; returns how many rows."""
    rows = 0
    with pq.ParquetWriter(path, schema, **_encodings(schema)) as writer:
        for batch in batches:
            if batch.num_rows:
                writer.write_table(conform(batch, schema))
                rows += batch.num_rows
    return rows


def write_partitioned(
    rows: pa.Table, directory: Path, schema: pa.Schema, partitioning: pa.Schema, basename: str
) -> int:
    """Write `rows` under `directory` as Hive-partitioned Parquet, the files with
    `schema` and the path with the `partitioning` columns (typed, not in the files;
    NULL as Hive's default partition, values percent-encoded). Files are named
    `<basename>-<n>.parquet`; returns how many rows."""
    table = conform(rows, pa.schema([*schema, *partitioning], metadata=schema.metadata))
    pa_dataset.write_dataset(
        table,
        directory,
        format="parquet",
        partitioning=pa_dataset.partitioning(partitioning, flavor="hive"),
        basename_template=f"{basename}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        file_options=pa_dataset.ParquetFileFormat().make_write_options(**_encodings(schema)),
    )
    rows_written: int = table.num_rows
    return rows_written
