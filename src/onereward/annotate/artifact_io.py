"""Reading and copying the tables and images that travel with project/annotations artifacts."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onereward.artifacts import Manifest, read_artifact
from onereward.errors import InputError
from onereward.tables import read_table, write_table

ITEM_COLUMNS = ("item_id", "task", "image", "mask", "prompt")
CANDIDATE_COLUMNS = ("candidate_id", "item_id", "index", "image")
PROJECT_JSON = "project.json"
PROJECT_FIELDS = ("url", "project_id", "title", "version", "task_map", "label_config_sha", "n_tasks")


@dataclass
class CandidateSet:
    """Items and their candidates, read from a candidates/project/annotations artifact."""

    root: Path
    manifest: Manifest
    items: dict[str, dict[str, Any]]  # item_id -> row
    candidates: dict[str, list[dict[str, Any]]]  # item_id -> rows sorted by index
    item_rows: list[dict[str, Any]]
    candidate_rows: list[dict[str, Any]]

    def path(self, rel: str) -> Path:
        return self.root / rel


def read_candidate_set(
    path: str | os.PathLike[str], *, kind: str | tuple[str, ...], what: str
) -> CandidateSet:
    """Read ``items.parquet`` + ``candidates.parquet`` of an artifact and check they fit together."""
    manifest = read_artifact(path, kind=kind, what=what)
    root = Path(path)
    try:
        item_rows = read_table(root / "items.parquet", required=ITEM_COLUMNS, what=f"{what} items.parquet")
        cand_rows = read_table(
            root / "candidates.parquet", required=CANDIDATE_COLUMNS, what=f"{what} candidates.parquet"
        )
    except ValueError as e:
        raise InputError(str(e)) from None
    items: dict[str, dict[str, Any]] = {}
    for row in item_rows:
        if not row.get("mask"):
            raise InputError(
                f"{what}: items.parquet row {row['item_id']!r} field 'mask' is empty; every item needs a mask"
            )
        items[row["item_id"]] = row
    candidates: dict[str, list[dict[str, Any]]] = {}
    for row in cand_rows:
        if row["item_id"] not in items:
            raise InputError(
                f"{what}: candidates.parquet row {row['candidate_id']!r} field 'item_id' is {row['item_id']!r}, "
                "which is not in items.parquet"
            )
        candidates.setdefault(row["item_id"], []).append(row)
    for item_id, rows in candidates.items():
        rows.sort(key=lambda r: r["index"])
        indexes = [r["index"] for r in rows]
        if indexes != list(range(len(rows))):
            raise InputError(
                f"{what}: candidates of item {item_id!r} have indexes {indexes}; expected 0..{len(rows) - 1}"
            )
        if len(rows) < 2:
            raise InputError(
                f"{what}: item {item_id!r} has {len(rows)} candidate(s); best/worst needs at least 2"
            )
    missing = [i for i in items if i not in candidates]
    if missing:
        raise InputError(
            f"{what}: items without candidates: {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    return CandidateSet(root, manifest, items, candidates, item_rows, cand_rows)


def link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Hard-link ``src`` to ``dst`` (artifacts are immutable), copying across file systems.

    ``dst``'s folder must exist. An existing ``dst`` is replaced; a missing ``src`` raises
    FileNotFoundError.
    """
    try:
        os.link(src, dst)
    except FileExistsError:
        os.unlink(dst)
        link_or_copy(src, dst)
    except FileNotFoundError:
        raise
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def _link_tree(root: Path, out: Path, rels: list[str]) -> None:
    """Link (or copy) ``root/rel`` to ``out/rel`` for every relative path, folders created once."""
    made: set[str] = set()
    src_root, out_root = os.fspath(root), os.fspath(out)
    for rel in rels:
        folder = os.path.dirname(rel)
        if folder not in made:
            os.makedirs(os.path.join(out_root, folder), exist_ok=True)
            made.add(folder)
        try:
            link_or_copy(os.path.join(src_root, rel), os.path.join(out_root, rel))
        except FileNotFoundError:
            raise InputError(f"{root}: image {rel} referenced by the tables is missing") from None


def copy_candidate_set(cs: CandidateSet, out: Path, extra_dirs: tuple[str, ...] = ()) -> None:
    """Copy the tables and every image they reference (plus ``extra_dirs``) into ``out``."""
    write_table(out / "items.parquet", cs.item_rows)
    write_table(out / "candidates.parquet", cs.candidate_rows)
    rels: set[str] = set()
    for row in cs.item_rows:
        rels.add(row["image"])
        rels.add(row["mask"])
    for row in cs.candidate_rows:
        rels.add(row["image"])
    _link_tree(cs.root, out, sorted(rels))
    for d in extra_dirs:
        if (cs.root / d).is_dir():
            extra = [p.relative_to(cs.root).as_posix() for p in (cs.root / d).rglob("*") if p.is_file()]
            _link_tree(cs.root, out, sorted(extra))


def read_project_json(root: Path, what: str) -> dict[str, Any]:
    """Parse and check ``project.json``."""
    path = root / PROJECT_JSON
    if not path.is_file():
        raise InputError(f"{what}: {path} is missing (not a project or annotations artifact)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{what}: {path} is not valid JSON ({e})") from None
    for key in PROJECT_FIELDS:
        if key not in data:
            raise InputError(f"{what}: {path} field {key!r} is missing")
    return data
