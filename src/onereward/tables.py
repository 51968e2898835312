"""Data tables of artifacts: Parquet files (readable by HF ``datasets``), images kept as PNG files.

Rows are plain dicts; columns hold str/int/float/bool/None, and images are paths relative to the
artifact directory (e.g. ``images/<item_id>.png``).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

# The contract columns of ``candidates.parquet`` (docs/contracts.md); producers append their own
# extra columns (e.g. the sampler's executed steps, a synthetic candidate's degradations).
CANDIDATE_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("candidate_id", pa.string()),
    ("item_id", pa.string()),
    ("index", pa.int64()),
    ("image", pa.string()),
    ("family", pa.string()),
    ("prompt", pa.string()),
    ("negative_prompt", pa.string()),
    ("steps", pa.int64()),
    ("cfg_scale", pa.float64()),
    ("strength", pa.float64()),
    ("seed", pa.int64()),
    ("guidance", pa.float64()),
    ("feather", pa.int64()),
)


def candidates_schema(*extra: tuple[str, pa.DataType]) -> pa.Schema:
    """Schema of ``candidates.parquet``: the contract columns, then ``extra`` columns in order."""
    return pa.schema([*CANDIDATE_COLUMNS, *extra])


def write_table(
    path: str | os.PathLike[str], rows: list[dict[str, Any]], schema: pa.Schema | None = None
) -> None:
    """Write ``rows`` to a Parquet file atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if rows:
        table = pa.Table.from_pylist(rows, schema=schema)
    elif schema is not None:
        table = schema.empty_table()
    else:
        table = pa.table({})
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_table(
    path: str | os.PathLike[str], *, required: tuple[str, ...] = (), what: str = "table"
) -> list[dict]:
    """Read a Parquet file into a list of dicts; ``required`` columns must exist (clear error otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    table = pq.read_table(path)
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ValueError(f"{what}: {path} lacks column(s) {missing}; has {table.column_names}")
    return table.to_pylist()
