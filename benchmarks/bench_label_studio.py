"""Label Studio round trip at scale: export of N tasks and import of N annotated tasks (local server).

Usage: ``python benchmarks/bench_label_studio.py [--tasks 10000] [--chunk-size 500]``.
Targets on the 2-core dev machine: export of 10,000 tasks under 120 s, import of 10,000 annotated
tasks under 20 s. The server is started from the migrated template (see
onereward.testing.local_label_studio); the candidates are small generated images (the content does not
matter for timing). For the import, the same items are put into a second set of projects with
one valid annotation per task in the import request (Label Studio's API has no bulk annotation
endpoint in the open-source edition, and 10,000 single POSTs would time the simulator, not the
import), then ``run_import`` reads them back from the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, print_table, write_results  # noqa: E402

TASK_MIX = (("image_fill", "a red circle"), ("image_extend", "a blue square"), ("image_extend", None),
            ("object_removal", None))  # fmt: skip


def make_candidates(out: Path, n_items: int, per_item: int = 4, size: int = 64) -> None:
    """A ``candidates`` artifact of ``n_items`` generated items (flat colours + a square)."""
    from onereward.artifacts import ArtifactWriter
    from onereward.imageio import save_png
    from onereward.tables import write_table

    rng = np.random.default_rng(0)
    items, cands = [], []
    with ArtifactWriter(
        out, kind="candidates", stage="bench_fixture", parameters={"n_items": n_items}
    ) as art:
        for i in range(n_items):
            item_id = f"bench{i:06d}"
            task, prompt = TASK_MIX[i % len(TASK_MIX)]
            img = np.empty((size, size, 3), np.uint8)
            img[:] = rng.integers(0, 256, 3)
            mask = np.zeros((size, size), bool)
            mask[16:48, 16:48] = True
            save_png(art.path / f"images/{item_id}.png", img)
            save_png(art.path / f"masks/{item_id}.png", mask)
            items.append(
                {
                    "item_id": item_id,
                    "task": task,
                    "image": f"images/{item_id}.png",
                    "mask": f"masks/{item_id}.png",
                    "prompt": prompt,
                    "meta": "{}",
                    "target": None,
                }
            )
            for k in range(per_item):
                cand = img.copy()
                cand[mask] = rng.integers(0, 256, 3)
                rel = f"candidates/{item_id}/{k}.png"
                save_png(art.path / rel, cand)
                cands.append(
                    {
                        "candidate_id": f"{item_id}-c{k}",
                        "item_id": item_id,
                        "index": k,
                        "image": rel,
                        "family": "synthetic",
                        "prompt": prompt or "",
                        "negative_prompt": "",
                        "steps": 0,
                        "cfg_scale": 1.0,
                        "strength": 1.0,
                        "seed": k,
                        "guidance": 0.0,
                        "feather": 0,
                    }
                )
        write_table(art.path / "items.parquet", items)
        write_table(art.path / "candidates.parquet", cands)


def annotated_copy(project: Path, out: Path, client, title: str) -> int:
    """Import the project's tasks into new projects with one valid annotation each; write a project
    artifact pointing at them. Returns the number of annotated tasks."""
    from onereward.annotate import export as ex
    from onereward.annotate.artifact_io import copy_candidate_set, read_candidate_set
    from onereward.annotate.labeling_config import build_labeling_config, candidate_letters, choice_result
    from onereward.artifacts import ArtifactWriter, write_json_atomic

    cs = read_candidate_set(project, kind="project", what="project")
    pj = json.loads((project / "project.json").read_text())
    tasks = json.loads((project / "tasks.json").read_text())
    rng = np.random.default_rng(1)
    me = client.check_auth()
    with ArtifactWriter(out, kind="project", stage="bench_annotated", inputs=[cs.manifest]) as art:
        copy_candidate_set(cs, art.path, extra_dirs=("overlays",))
        task_map: dict[str, int] = {}
        projects = {}
        for name, p in pj["projects"].items():
            cfg = build_labeling_config(name, p["n_candidates"])
            pid = ex.ensure_project(client, ex.project_title(title, "v1", name), cfg, "benchmark")
            mine = [t for t in tasks if t["data"]["dimension_set"] == name]
            for start in range(0, len(mine), 1000):
                chunk = mine[start : start + 1000]
                payload = []
                for t in chunk:
                    letters = candidate_letters(len(t["data"]["candidate_ids"]))
                    result = []
                    for dim in t["data"]["dimensions"]:
                        best, worst = rng.choice(letters, 2, replace=False)
                        result += [
                            choice_result(dim, "best", str(best)),
                            choice_result(dim, "worst", str(worst)),
                        ]
                    data = {k: v for k, v in t["data"].items()}
                    payload.append({"data": data, "annotations": [{"result": result, "completed_by": me}]})
                resp = client.sdk.projects.import_tasks(pid, request=payload, return_task_ids=True)
                for t, tid in zip(chunk, resp.task_ids, strict=True):
                    task_map[t["data"]["item_id"]] = int(tid)
            projects[name] = {**p, "project_id": pid}
        write_json_atomic(art.path / "project.json", {**pj, "task_map": task_map, "projects": projects})
    return len(task_map)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="number of tasks (items)")
    parser.add_argument("--chunk-size", type=int, default=500, help="tasks per import request")
    parser.add_argument(
        "--s3",
        action="store_true",
        help="the cluster route: task images uploaded to a local S3 server (moto) instead of Local Storage",
    )
    args = parser.parse_args(argv)

    from onereward.annotate.client import LabelStudioClient
    from onereward.annotate.export import run_export
    from onereward.annotate.importer import run_import
    from onereward.testing.local_label_studio import default_venv, server_from_template

    # The dev machine is shared: record its load so timings can be read in context.
    results: dict = {
        "tasks": args.tasks,
        "chunk_size": args.chunk_size,
        "load_avg_1m_start": os.getloadavg()[0],
    }
    results["storage"] = "s3" if args.s3 else "local"
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        make_candidates(tmp_path / "candidates", args.tasks)
        results["fixture_s"] = round(time.perf_counter() - t0, 2)
        server_env: dict[str, str] = {}
        if args.s3:
            import boto3

            from onereward.testing.local_s3 import TEST_CREDENTIALS, running_s3

            endpoint = stack.enter_context(running_s3(tmp_path / "s3"))
            os.environ.update(TEST_CREDENTIALS)
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
            # Label Studio reads the bucket with the same throwaway keys; its SSRF guard must let
            # it reach 127.0.0.1 (see manifests/label-studio/values.yaml).
            server_env = {**TEST_CREDENTIALS, "USE_DEFAULT_BANNED_SUBNETS": "false"}
        server = server_from_template(
            default_venv() / "onereward-template", tmp_path / "ls", extra_env=server_env
        )
        server.start()
        storage_kw = (
            {"image_url_prefix": "s3://bench/run", "s3_endpoint": endpoint}
            if args.s3
            else {"document_root": str(server.document_root)}
        )
        os.environ["LABEL_STUDIO_API_KEY"] = server.token
        try:
            t0 = time.perf_counter()
            m = run_export(
                str(tmp_path / "candidates"),
                str(tmp_path / "project"),
                label_studio_url=server.url,
                chunk_size=args.chunk_size,
                **storage_kw,
            )
            results["export_s"] = round(time.perf_counter() - t0, 2)
            results["export_new_tasks"] = m["n_new_tasks"]
            if args.s3:
                results["image_upload"] = m["image_upload"]
            t0 = time.perf_counter()
            m = run_export(
                str(tmp_path / "candidates"),
                str(tmp_path / "project-rerun"),
                label_studio_url=server.url,
                chunk_size=args.chunk_size,
                **storage_kw,
            )
            results["export_rerun_s"] = round(time.perf_counter() - t0, 2)
            results["export_rerun_new_tasks"] = m["n_new_tasks"]

            client = LabelStudioClient(server.url)
            t0 = time.perf_counter()
            n = annotated_copy(tmp_path / "project", tmp_path / "annotated", client, "bench-annotated")
            results["annotate_setup_s"] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            m = run_import(str(tmp_path / "annotated"), str(tmp_path / "prefs"))
            results["import_s"] = round(time.perf_counter() - t0, 2)
            results["import_tasks"] = n
            results["import_pairs"] = m["n_pairs"]
            results["import_invalid"] = m["n_invalid"]
            results["import_timings"] = json.loads((tmp_path / "prefs" / "manifest.json").read_text())[
                "timings"
            ]
            results["export_timings"] = json.loads((tmp_path / "project" / "manifest.json").read_text())[
                "timings"
            ]
            # The same import as a user runs it: a fresh `onereward import` process (imports included).
            t0 = time.perf_counter()
            subprocess.run(
                [str(Path(sys.executable).with_name("onereward")), "import", "--project",
                 str(tmp_path / "annotated"), "--out", str(tmp_path / "prefs-cli")],
                check=True, env={**os.environ, "ONEREWARD_LOG_LEVEL": "WARNING"}, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            results["import_cli_s"] = round(time.perf_counter() - t0, 2)
        finally:
            server.stop()
        results["peak_rss_mb"] = round(peak_rss_mb(), 1)
        results["load_avg_1m_end"] = os.getloadavg()[0]
        rows = [
            [f"export {args.tasks} tasks (new projects, {results['storage']} storage)", results["export_s"],
             "target < 120 s"],
            [f"export rerun (0 new of {args.tasks})", results["export_rerun_s"], ""],
            [f"import {results['import_tasks']} annotated tasks ({results['import_pairs']} pairs)", results["import_s"],
             "target < 20 s"],
            ["the same import as a fresh `onereward import` process", results["import_cli_s"], ""],
        ]  # fmt: skip
        print_table("Label Studio round trip (local server, 2 cores)", ["step", "seconds", "note"], rows)
        results["targets_met"] = {"export": results["export_s"] < 120, "import": results["import_s"] < 20}
        write_results("label_studio_s3" if args.s3 else "label_studio", results)
        print("removing the temporary files ...", flush=True)
    return results


if __name__ == "__main__":
    main()
