"""select_subset clustering at scale: 1,000,000 x 768 float32 embeddings to 10,000 representatives.

The faiss path and the scikit-learn MiniBatchKMeans path run the stage's own code
(``onereward.select.cluster``: two-level K-means, nearest-to-centroid picks with near-duplicate
removal, coverage) on the same clustered synthetic embeddings, each in its own subprocess so that
each gets its own peak RSS. The data (unit vectors around a few thousand centres of uneven size
and spread, plus 5% scattered points) is generated once into a temporary .npy file.

Target (issue 3) for the faiss path on a 2-core machine: under 90 s and under 8 GB.

Usage: ``python benchmarks/bench_select_clustering.py [--n 1000000] [--dim 768] [--k 10000]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_table, write_results  # noqa: E402

TARGET_SECONDS = 90.0
TARGET_GB = 8.0


def make_embeddings(path: Path, n: int, dim: int, centres: int, seed: int) -> None:
    """Clustered unit vectors written in chunks (never more than one chunk in float64)."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((centres, dim), dtype=np.float32)
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    weights = rng.pareto(1.5, centres) + 0.2  # uneven cluster sizes
    weights /= weights.sum()
    spread = rng.uniform(0.5, 1.2, centres).astype(np.float32)  # noise norm relative to the centre
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    chunk = 100_000
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        labels = rng.choice(centres, size=m, p=weights)
        noise = rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
        block = mu[labels] + noise * spread[labels, None]
        scattered = rng.random(m) < 0.05
        block[scattered] = rng.standard_normal((int(scattered.sum()), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[s : s + m] = block
    out.flush()
    del out


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (on a shared machine, wall time also counts the
    time other people's processes held the cores; CPU time does not)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(data: Path, backend: str, k: int, seed: int, dedup: float, threads: int) -> dict:
    """One path, in its own process: load, cluster, pick, measure coverage.

    ``threads`` > 0 caps faiss's OpenMP threads and BLAS threads (0: library defaults, all cores).
    """
    from onereward.select import cluster

    if threads > 0:
        import faiss
        from threadpoolctl import threadpool_limits

        faiss.omp_set_num_threads(threads)
        threadpool_limits(threads)

    t0 = time.perf_counter()
    x = np.load(data)  # into memory, as the stage holds its embeddings
    t_load = time.perf_counter() - t0
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    t1 = time.perf_counter()
    cpu0 = _cpu_seconds()
    result = cluster.kmeans(x, k, backend=backend, seed=seed)
    t_kmeans = time.perf_counter() - t1
    t2 = time.perf_counter()
    sel = cluster.select_representatives(x, result, k, per_cluster=1, dedup_threshold=dedup)
    t_select = time.perf_counter() - t2
    wall = time.perf_counter() - t1
    cpu = _cpu_seconds() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    t3 = time.perf_counter()
    cov_sel, n_measured = cluster.coverage(x, sel.indices, sample=50_000, seed=seed)
    rand = cluster.random_subset({"all": np.arange(len(x))}, {"all": len(sel.indices)}, seed=seed + 1)
    cov_rand, _ = cluster.coverage(x, rand, sample=50_000, seed=seed)
    t_cov = time.perf_counter() - t3
    return {
        "backend": backend,
        "threads": threads or os.cpu_count(),
        "two_level": result.two_level,
        "n_coarse": result.n_coarse,
        "n_clusters": int(len(result.centroids)),
        "n_selected": int(len(sel.indices)),
        "n_duplicates_skipped": sel.n_duplicates_skipped,
        "inertia": result.inertia,
        "load_s": round(t_load, 2),
        "kmeans_s": round(t_kmeans, 2),
        "select_s": round(t_select, 2),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "coverage_s": round(t_cov, 2),
        "peak_rss_gb": round(peak, 3),
        "rss_after_load_gb": round(rss_data, 3),
        "coverage_selected": round(cov_sel, 5),
        "coverage_random": round(cov_rand, 5),
        "coverage_n_measured": n_measured,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=10_000, help="representatives (= clusters, one per cluster)")
    parser.add_argument("--centres", type=int, default=3000, help="true centres of the synthetic data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dedup", type=float, default=0.97, help="near-duplicate cosine threshold (full profile)"
    )
    parser.add_argument(
        "--paths",
        default="faiss,faiss@1,sklearn",
        help="comma list of backend[@threads] (threads: cap on faiss/BLAS threads; default all cores)",
    )
    parser.add_argument(
        "--timeout", type=int, default=1800, help="seconds per path before it is reported as unfinished"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(
            json.dumps(worker(Path(args.data), args.worker, args.k, args.seed, args.dedup, args.threads)),
            flush=True,
        )
        return {}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_select_") as tmp:
        data = Path(tmp) / "embeddings.npy"
        t0 = time.perf_counter()
        make_embeddings(data, args.n, args.dim, args.centres, args.seed)
        gen_s = time.perf_counter() - t0
        print(
            f"data: {args.n} x {args.dim} float32 ({data.stat().st_size / 1e9:.2f} GB) in {gen_s:.1f}s",
            flush=True,
        )
        results = []
        for path in args.paths.split(","):
            backend, _, threads = path.partition("@")
            cmd = [sys.executable, __file__, "--worker", backend, "--data", str(data), "--k", str(args.k),
                   "--seed", str(args.seed), "--dedup", str(args.dedup), "--threads", threads or "0"]  # fmt: skip
            t = time.perf_counter()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
            except subprocess.TimeoutExpired:
                results.append(
                    {"backend": backend, "path": path, "error": f"did not finish in {args.timeout}s"}
                )
                continue
            if proc.returncode != 0:
                results.append(
                    {"backend": backend, "path": path, "error": proc.stderr.strip().splitlines()[-1:]}
                )
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res["process_s"] = round(time.perf_counter() - t, 2)
            res["path"] = path
            print(f"{path}: {res}", flush=True)
            results.append(res)
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["path"], "-", "-", "-", "-", "-", "-", "-", "-", r["error"]])
            continue
        rows.append([r["path"], r["kmeans_s"], r["select_s"], r["wall_s"], r["cpu_s"], r["peak_rss_gb"], r["inertia"],
                     r["coverage_selected"], r["coverage_random"], ""])  # fmt: skip
    print_table(
        f"select clustering: {args.n} x {args.dim} -> {args.k} representatives (load avg {load[0]:.1f})",
        [
            "path",
            "kmeans_s",
            "select_s",
            "wall_s",
            "cpu_s",
            "peak_rss_gb",
            "inertia",
            "cov_selected",
            "cov_random",
            "note",
        ],
        rows,
    )
    faiss_runs = [r for r in results if r.get("backend") == "faiss" and "error" not in r]
    faiss_res = min(faiss_runs, key=lambda r: r["wall_s"]) if faiss_runs else None
    verdict = None
    if faiss_res is not None:
        verdict = faiss_res["wall_s"] < TARGET_SECONDS and faiss_res["peak_rss_gb"] < TARGET_GB
        print(
            f"faiss path ({faiss_res['path']}): {faiss_res['wall_s']}s (target < {TARGET_SECONDS}s), peak RSS {faiss_res['peak_rss_gb']} GB "
            f"(target < {TARGET_GB} GB, of which {faiss_res['rss_after_load_gb']} GB is the loaded data): "
            f"{'MET' if verdict else 'NOT MET'}"
        )
    out = {
        "n": args.n,
        "dim": args.dim,
        "k": args.k,
        "centres": args.centres,
        "dedup_threshold": args.dedup,
        "data_generation_s": round(gen_s, 1),
        "load_average_at_start": [round(v, 2) for v in load],
        "results": results,
        "target": {"wall_s": TARGET_SECONDS, "peak_rss_gb": TARGET_GB, "met_by_faiss": verdict},
        "machine": machine(),
        "note": "wall_s = K-means + representative selection (data load and coverage excluded, reported apart); "
        "cpu_s = CPU seconds of the same span (wall time on a busy shared machine also counts other "
        "processes); peak_rss_gb includes the data held in memory",
    }
    write_results("select_clustering", out)
    return out


if __name__ == "__main__":
    main()
