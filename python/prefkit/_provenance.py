"""Provenance: what made a result table, stored in its schema metadata under ``prefkit``.

The record is JSON so that it survives Parquet, IPC and most tools that keep schema metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from prefkit._version import __version__

METADATA_KEY = b"prefkit"


def attach(
    table: pa.Table,
    op: str,
    parameters: Mapping[str, Any],
    accounting: Mapping[str, Any],
    source: pa.Table | None = None,
) -> pa.Table:
    """Return ``table`` with a provenance record in its schema metadata.

    ``accounting`` holds the row counts (``rows_in``, ``rows_out``, ``dropped`` by reason and any
    operation-specific counts). When ``source`` carries a record of its own (the input was made
    by prefkit too), it is kept under ``source`` so that a pipeline's history stays readable.
    """
    record: dict[str, Any] = {
        "op": op,
        "prefkit_version": __version__,
        "parameters": dict(parameters),
        **accounting,
    }
    record.setdefault("rows_out", table.num_rows)
    if source is not None:
        previous = report_of(source)
        if previous:
            record["source"] = previous
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(record, default=str).encode()
    return table.replace_schema_metadata(metadata)


def report_of(table: Any) -> dict:
    """Read the provenance record of a table made by prefkit.

    Parameters
    ----------
    table
        A pyarrow Table (or anything with an Arrow schema, e.g. a Parquet file's schema) made by
        a prefkit operation.

    Returns
    -------
    dict
        ``op``, ``parameters``, ``prefkit_version``, ``rows_in``, ``rows_out``, ``dropped``
        (rows dropped by reason) and operation-specific counts; ``{}`` when the table carries
        no record.

    Examples
    --------
    >>> import prefkit as pk, pyarrow as pa
    >>> data = pa.table({"prompt": ["p", "p"], "response": ["a", "b"], "score": [1.0, 0.0]})
    >>> pk.report_of(pk.mine_pairs(data))["rows_in"]
    2
    """
    schema = table if isinstance(table, pa.Schema) else getattr(table, "schema", None)
    metadata = getattr(schema, "metadata", None) or {}
    raw = metadata.get(METADATA_KEY)
    return json.loads(raw) if raw else {}
