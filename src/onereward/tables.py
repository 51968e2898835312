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


# --- every table of every artifact (docs/contracts.md describes the columns) ----------------------

# pool/items.parquet (synthesize_pool; mask, prompt and target nullable).
POOL_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("task", pa.string()),
        ("image", pa.string()),
        ("mask", pa.string()),
        ("prompt", pa.string()),
        ("meta", pa.string()),
        ("target", pa.string()),
    ]
)

# subset/items.parquet: the pool's columns plus the cluster of each representative.
SUBSET_SCHEMA = pa.schema(
    [
        *POOL_SCHEMA,
        ("cluster_id", pa.int64()),
        ("distance", pa.float64()),
        ("embedding_index", pa.int64()),
    ]
)
# subset/bad_items.parquet and subset/clusters.parquet.
BAD_ITEMS_SCHEMA = pa.schema([("item_id", pa.string()), ("origin", pa.string()), ("reason", pa.string())])
CLUSTERS_SCHEMA = pa.schema(
    [("group", pa.string()), ("cluster_id", pa.int64()), ("size", pa.int64()), ("n_selected", pa.int64())]
)

# candidates/candidates.parquet of generate_candidates: the contract columns plus the sampler's.
GENERATED_CANDIDATES_SCHEMA = candidates_schema(
    ("executed_steps", pa.int64()),  # steps actually run (fewer than ``steps`` when strength < 1)
    ("start_sigma", pa.float64()),  # noise level of the start (1.0 = pure noise)
    ("meta", pa.string()),
)
# candidates.parquet of synth-candidates: meta holds the applied degradations.
SYNTH_CANDIDATES_SCHEMA = candidates_schema(("meta", pa.string()))

# preferences/pairs.parquet (import_annotations): one row per item and dimension.
PAIRS_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("item_id", pa.string()),
        ("task", pa.string()),
        ("dimension", pa.string()),
        ("prompt", pa.string()),
        ("winner", pa.string()),
        ("loser", pa.string()),
        ("winner_image", pa.string()),
        ("loser_image", pa.string()),
        ("source_image", pa.string()),
        ("mask_image", pa.string()),
        ("annotators", pa.string()),
        ("n_annotators", pa.int64()),
        ("agreement", pa.float64()),
        ("ls_task_id", pa.int64()),
    ]
)

# reward_model/test_scores.parquet: P(Yes) of both orders of every held-out pair.
TEST_SCORES_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("item_id", pa.string()),
        ("task", pa.string()),
        ("dimension", pa.string()),
        ("p_yes_winner_first", pa.float64()),
        ("p_yes_loser_first", pa.float64()),
    ]
)

# evaluation/items.parquet: the benchmark items (pool columns), their group and noise seed.
EVAL_ITEMS_SCHEMA = pa.schema([*POOL_SCHEMA, ("group", pa.string()), ("seed", pa.int64())])
# evaluation/results.parquet: one row per (item, model); automatic metrics (null where they do not
# apply), the oracle's raw and normalised scores per dimension as JSON (null outside the synthetic world).
EVAL_RESULTS_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("group", pa.string()),
        ("model", pa.string()),
        ("image", pa.string()),
        ("raw_image", pa.string()),
        ("psnr_outside", pa.float64()),
        ("ssim_outside", pa.float64()),
        ("mse_outside", pa.float64()),
        ("psnr_outside_raw", pa.float64()),
        ("ssim_outside_raw", pa.float64()),
        ("mse_outside_raw", pa.float64()),
        ("seam", pa.float64()),
        ("clip_score", pa.float64()),
        ("ocr_read", pa.string()),
        ("ocr_expected", pa.string()),
        ("ocr_sentence_accuracy", pa.float64()),
        ("ocr_edit_distance", pa.float64()),
        ("removal_success", pa.float64()),
        ("oracle", pa.string()),
    ]
)
# evaluation/judgements.parquet: one row per (item, model other than the base, judge, dimension).
JUDGEMENTS_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("group", pa.string()),
        ("model", pa.string()),
        ("judge", pa.string()),
        ("dimension", pa.string()),
        ("verdict", pa.string()),
        ("p_model_first", pa.float64()),
        ("p_base_first", pa.float64()),
        ("score", pa.float64()),
        ("base_score", pa.float64()),
        ("normalised", pa.float64()),
        ("base_normalised", pa.float64()),
        ("support", pa.float64()),
    ]
)


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


def read_subset_items(
    subset: str | os.PathLike[str], *, stage: str
) -> tuple[Any, Path, list[dict[str, Any]]]:
    """The items of a ``subset`` artifact (or a ``pool`` whose items all have masks) that a
    generator stage (``stage``: generate_candidates, train_policy) works on, every row checked
    before any work: unique ids, known tasks, a prompt for image_fill and none over
    ``tasks.MAX_PROMPT_CHARS``, a mask, image and mask files present. Returns (manifest, root, rows);
    every problem is an InputError naming ``--subset``, the item and the field."""
    from onereward import tasks
    from onereward.artifacts import read_artifact
    from onereward.errors import InputError

    manifest = read_artifact(subset, kind=("subset", "pool"), what="--subset")
    root = Path(subset)
    try:
        rows = read_table(
            root / "items.parquet",
            required=("item_id", "task", "image", "mask", "prompt"),
            what="--subset items.parquet",
        )
    except ValueError as e:  # a missing column
        raise InputError(str(e)) from None
    seen: set[str] = set()
    for row in rows:
        iid = row["item_id"]
        where = f"--subset items.parquet item {iid!r}"
        if iid in seen:
            raise InputError(f"{where}: duplicate item_id")
        seen.add(iid)
        tasks.check_task(row["task"], where=f"{where} field 'task'")
        if row["task"] == tasks.IMAGE_FILL and not tasks.has_user_prompt(row["task"], row["prompt"]):
            raise InputError(f"{where}: field 'prompt' is empty; image_fill items need a prompt")
        if row["prompt"] and len(row["prompt"]) > tasks.MAX_PROMPT_CHARS:
            raise InputError(
                f"{where}: field 'prompt' has {len(row['prompt'])} characters; expected at most "
                f"{tasks.MAX_PROMPT_CHARS}"
            )
        if not row.get("mask"):
            raise InputError(
                f"{where}: field 'mask' is null; {stage} needs a mask for every item "
                "(select_subset makes masks for pools that lack them)"
            )
        for col in ("image", "mask"):
            if not (root / row[col]).is_file():
                raise InputError(f"{where}: field '{col}' names {row[col]!r}, which is not a file in {root}")
    return manifest, root, rows
