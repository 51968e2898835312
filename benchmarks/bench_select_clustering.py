"""select_subset clustering at scale: 1,000,000 x 768 float32 embeddings to 10,000 representatives.

Each path runs the stage's own code (``onereward.select.cluster``: K-means, nearest-to-centroid
picks with near-duplicate removal) in its own subprocess, so that each gets its own peak RSS, on the
same synthetic pool:

- unit vectors around ``--centres`` centres of uneven size and spread, plus 5% scattered points;
  each centre belongs to one of the three tasks (so tasks differ in size and content);
- ``--dup-fraction`` exact duplicates of earlier rows appended (the stage keeps the first copy of
  identical files: the paths cluster the deduplicated rows, and so does the random baseline);
- ``--holdout`` more points from the same distribution that no path sees: coverage is their mean
  cosine distance to the nearest selected item (lower is better), overall and per task (a task's
  held-out points against that task's selected items), against ``--draws`` uniform random subsets
  of the deduplicated rows with as many items per task as the selection (mean and sd).

Paths (``--paths``, comma list of ``engine[:device][@threads]``):

- ``faiss``: the engine before issue 17 ("CPU today"), faiss two-level K-means; ``@1`` caps it at
  one OpenMP/BLAS thread (faster on a busy machine: OpenMP threads spin at barriers).
- ``torch:cpu``: the torch engine on the CPU ("CPU new"); ``@N`` worker threads.
- ``torch:cuda``: the same engine on the GPU; reported as skipped when torch sees no CUDA device.
- ``sklearn``: MiniBatchKMeans (slow at this size; not in the default list).
- ``+flat`` after the engine (e.g. ``torch:cuda+flat``): one level of k clusters, a quality reference
  (on a GPU: 1M x 10k distances per iteration are affordable there).

``--phases`` also times the faiss path's steps (seeding, training and assignment per level, the
member gathers, the inertia pass). ``--per-task`` clusters each task apart as the stage does by
default (``k`` split by the tasks' deduplicated sizes) instead of the whole pool at once.

Targets (issue 17) for ``torch:cpu`` on a 2-core machine: K-means of 1M x 768 -> 10k in <= 40 s,
peak RSS <= 6 GB, at least 3x faster than ``faiss`` in the same run, with inertia and coverage no
worse.

Usage: ``python benchmarks/bench_select_clustering.py [--n 1000000] [--k 10000] [--paths ...]``
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

TARGET_SECONDS = 40.0
TARGET_GB = 6.0
TARGET_SPEEDUP = 3.0
DEFAULT_PATHS = "faiss,faiss@1,torch:cpu,torch:cuda"


# -- data ---------------------------------------------------------------------------------------------


def make_data(
    folder: Path, n: int, dim: int, centres: int, seed: int, dup_fraction: float, holdout: int
) -> dict:
    """Write pool.npy (n unique rows, then exact duplicates of earlier rows), pool_tasks.npy,
    holdout.npy and holdout_tasks.npy into ``folder``; chunked, never more than one chunk in float64."""
    from onereward import tasks

    n_tasks = len(tasks.TASKS)
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((centres, dim), dtype=np.float32)
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    weights = rng.pareto(1.5, centres) + 0.2  # uneven cluster sizes
    weights /= weights.sum()
    spread = rng.uniform(0.5, 1.2, centres).astype(np.float32)  # noise norm relative to the centre
    task_share = np.linspace(2.0, 1.0, n_tasks)
    centre_task = rng.choice(n_tasks, size=centres, p=task_share / task_share.sum()).astype(np.int8)

    def block(m: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.choice(centres, size=m, p=weights)
        noise = rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
        rows = mu[labels] + noise * spread[labels, None]
        task = centre_task[labels].copy()
        scattered = rng.random(m) < 0.05
        rows[scattered] = rng.standard_normal((int(scattered.sum()), dim), dtype=np.float32)
        task[scattered] = rng.integers(n_tasks, size=int(scattered.sum()))
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows, task

    n_dup = int(round(n * dup_fraction))
    pool = np.lib.format.open_memmap(folder / "pool.npy", mode="w+", dtype=np.float32, shape=(n + n_dup, dim))
    pool_tasks = np.empty(n + n_dup, dtype=np.int8)
    chunk = 100_000
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        pool[s : s + m], pool_tasks[s : s + m] = block(m)
    src = np.sort(rng.choice(n, size=n_dup, replace=False))
    pool[n:] = pool[src]
    pool_tasks[n:] = pool_tasks[src]
    pool.flush()
    del pool
    hold, hold_tasks = block(holdout)
    np.save(folder / "pool_tasks.npy", pool_tasks)
    np.save(folder / "holdout.npy", hold)
    np.save(folder / "holdout_tasks.npy", hold_tasks)
    return {"n_unique": n, "n_duplicates": n_dup, "n_holdout": holdout}


def dedup_rows(x: np.ndarray) -> np.ndarray:
    """Indices of the first copy of every distinct row (the stage dedups identical files the same way).

    Rows are hashed exactly (their 32-bit words times random odd 64-bit multipliers, summed with
    wrap-around: a float projection can round identical rows differently), and rows sharing a hash
    are compared exactly.
    """
    mult = np.random.default_rng(12345).integers(1, 2**63, size=x.shape[1], dtype=np.uint64) | np.uint64(1)
    h = np.empty(len(x), dtype=np.uint64)
    for s in range(0, len(x), 16384):  # small chunks: the peak RSS stays the data's
        words = x[s : s + 16384].view(np.uint32).astype(np.uint64)
        h[s : s + 16384] = (words * mult).sum(axis=1, dtype=np.uint64)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    keep = np.ones(len(x), dtype=bool)
    dup = np.flatnonzero(first[inverse] != np.arange(len(x)))
    same = np.all(x[dup] == x[first[inverse[dup]]], axis=1)
    keep[dup[same]] = False
    return np.flatnonzero(keep)


# -- one path, in its own process ---------------------------------------------------------------------


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads (on a shared machine wall time also
    counts the time other people's processes held the cores; CPU time does not)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _reset_window_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so that :func:`_window_peak_gb` measures from now."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _window_peak_gb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


class _PhaseTimer:
    """Times the faiss path's steps by wrapping the functions it calls (``--phases``)."""

    def __init__(self) -> None:
        from onereward.select import cluster

        self.cluster = cluster
        self.seconds: dict[str, float] = {}
        self.level = "coarse"
        self._wrap()

    def _add(self, key: str, dt: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + dt

    def _timed(self, fn, key_fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(key_fn(), time.perf_counter() - t)

        return wrapper

    def _wrap(self) -> None:
        import faiss

        cluster = self.cluster
        timer = self
        flat = cluster._flat_kmeans

        def flat_kmeans(*args, **kwargs):
            t = time.perf_counter()
            try:
                return flat(*args, **kwargs)
            finally:
                timer._add(f"{timer.level}_kmeans_call", time.perf_counter() - t)
                timer.level = "fine"  # the first call is the coarse level

        cluster._flat_kmeans = flat_kmeans
        cluster.kmeans_plusplus = self._timed(cluster.kmeans_plusplus, lambda: f"{self.level}_seed")
        cluster._inertia = self._timed(cluster._inertia, lambda: "inertia")
        base = faiss.Kmeans

        class Kmeans(base):  # type: ignore[misc, valid-type]
            def train(self, *args, **kwargs):
                t = time.perf_counter()
                try:
                    return super().train(*args, **kwargs)
                finally:
                    timer._add(f"{timer.level}_train", time.perf_counter() - t)

        faiss.Kmeans = Kmeans

    def report(self, total: float) -> dict[str, float]:
        s = self.seconds
        out = {}
        for level in ("coarse", "fine"):
            call = s.get(f"{level}_kmeans_call", 0.0)
            seed, train = s.get(f"{level}_seed", 0.0), s.get(f"{level}_train", 0.0)
            out[f"{level}_seed_s"] = seed
            out[f"{level}_train_s"] = train
            out[f"{level}_assign_and_sample_s"] = call - seed - train  # search after training, samples
        out["inertia_s"] = s.get("inertia", 0.0)
        out["gathers_and_rest_s"] = total - sum(out.values())
        return {key: round(v, 2) for key, v in out.items()}


def worker(args: argparse.Namespace) -> dict:
    """One path: load, dedup, cluster (timed), pick representatives (timed), measure quality."""
    from onereward import tasks
    from onereward.select import cluster

    engine, _, threads_s = args.worker.partition("@")
    engine, _, variant = engine.partition("+")
    backend, _, device = engine.partition(":")
    threads = int(threads_s) if threads_s else 0
    data = Path(args.data)
    if threads > 0:
        import faiss
        from threadpoolctl import threadpool_limits

        faiss.omp_set_num_threads(threads)
        threadpool_limits(threads)
    phases = _PhaseTimer() if args.phases and backend == "faiss" else None
    cuda = device.startswith("cuda")
    if backend == "torch":
        import torch  # before the clock starts: the stage has imported torch (CLIP) long before clustering

        if cuda:
            torch.cuda.init()
            torch.cuda.reset_peak_memory_stats()

    t0 = time.perf_counter()
    x = np.load(data / "pool.npy")  # into memory, as the stage holds its embeddings
    pool_tasks = np.load(data / "pool_tasks.npy")
    unique = dedup_rows(x)
    t_load = time.perf_counter() - t0
    rss_data = _peak_gb()
    if args.per_task:
        groups = {t: unique[pool_tasks[unique] == i] for i, t in enumerate(tasks.TASKS)}
        shares = cluster.split_proportionally(np.array([len(r) for r in groups.values()]), args.k)
    else:
        groups = {"all": unique}
        shares = np.array([args.k])

    load0 = os.getloadavg()[0]
    window = _reset_window_peak()
    t1 = time.perf_counter()
    cpu0 = _cpu_seconds()
    t_kmeans = t_select = cpu_kmeans = 0.0
    picked, results = [], {}
    for (g, rows), share in zip(groups.items(), shares, strict=True):
        # A prefix of the pool is a view (no copy); other row sets are copied, as in the stage.
        xg = x[: len(rows)] if rows[-1] == len(rows) - 1 else x[rows]
        t = time.perf_counter()
        c = _cpu_seconds()
        res = cluster.kmeans(
            xg,
            int(share),
            backend=backend,
            seed=args.seed,
            device=device or "cpu",
            threads=threads or None,
            two_level="off" if variant == "flat" else "auto",
        )
        t_kmeans += time.perf_counter() - t
        cpu_kmeans += _cpu_seconds() - c
        t = time.perf_counter()
        sel = cluster.select_representatives(xg, res, int(share), per_cluster=1, dedup_threshold=args.dedup)
        t_select += time.perf_counter() - t
        picked.append(rows[sel.indices])
        results[g] = (res, xg)
    wall = time.perf_counter() - t1
    cpu = _cpu_seconds() - cpu0
    peak = _peak_gb()
    peak_window = _window_peak_gb() if window else None
    load1 = os.getloadavg()[0]
    gpu_peak = None
    if cuda:
        import torch

        gpu_peak = round(torch.cuda.max_memory_allocated() / 1024**3, 3)

    # Quality (not timed): inertia by one float64 evaluator for every path, coverage of held-out points.
    inertia = sum(cluster._inertia(xg, r.centroids, r.labels) for r, xg in results.values())
    selected = np.concatenate(picked)
    hold = np.load(data / "holdout.npy")
    hold_tasks = np.load(data / "holdout_tasks.npy")
    cov = coverage_report(x, pool_tasks, selected, hold, hold_tasks, tasks.TASKS)
    rand = []
    per_task_counts = {i: int((pool_tasks[selected] == i).sum()) for i in range(len(tasks.TASKS))}
    for draw in range(args.draws):
        groups_u = {i: unique[pool_tasks[unique] == i] for i in range(len(tasks.TASKS))}
        rows = cluster.random_subset(groups_u, per_task_counts, seed=1000 + draw)
        rand.append(coverage_report(x, pool_tasks, rows, hold, hold_tasks, tasks.TASKS))
    first = next(iter(results.values()))[0]
    out = {
        "path": args.worker,
        "backend": ",".join(sorted({r.backend for r, _ in results.values()})),
        "device": first.device,
        "fallback": first.fallback,
        "threads": threads or (first.details.get("workers") if first.details else None) or os.cpu_count(),
        "two_level": first.two_level,
        "n_coarse": first.n_coarse,
        "n_clusters": int(sum(len(r.centroids) for r, _ in results.values())),
        "n_selected": int(len(selected)),
        "n_clustered": int(len(unique)),
        "inertia": round(inertia, 2),
        "load_s": round(t_load, 2),
        "kmeans_s": round(t_kmeans, 2),
        "kmeans_cpu_s": round(cpu_kmeans, 2),
        "select_s": round(t_select, 2),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_gb": round(peak, 3),
        "peak_rss_clustering_gb": None if peak_window is None else round(peak_window, 3),
        "rss_after_load_gb": round(rss_data, 3),
        "gpu_peak_gb": gpu_peak,
        "load_average": [round(load0, 2), round(load1, 2)],
        "coverage": cov,
        "coverage_random": {
            key: {
                "mean": round(float(np.mean([r[key] for r in rand])), 5),
                "sd": round(float(np.std([r[key] for r in rand])), 5),
            }
            for key in cov
        },
        "details": {g: r.details for g, (r, _) in results.items()} if first.details else {},
    }
    if phases is not None:
        out["phases"] = phases.report(t_kmeans)
    return out


def coverage_report(
    x: np.ndarray,
    pool_tasks: np.ndarray,
    selected: np.ndarray,
    hold: np.ndarray,
    hold_tasks: np.ndarray,
    names,
) -> dict[str, float]:
    """Mean cosine distance of held-out points to the nearest selected item: ``overall`` (any
    selected item) and per task (that task's held-out points against that task's selected items)."""
    from onereward.select import cluster

    out = {"overall": round(float(np.mean(1.0 - cluster.nearest_similarity(hold, x[selected]))), 5)}
    for i, name in enumerate(names):
        q = hold[hold_tasks == i]
        base = selected[pool_tasks[selected] == i]
        if len(q) and len(base):
            out[name] = round(float(np.mean(1.0 - cluster.nearest_similarity(q, x[base]))), 5)
    return out


# -- driver -------------------------------------------------------------------------------------------


def _wait_for_load(max_load: float, max_wait: int) -> None:
    """On a shared machine: wait (up to ``max_wait`` s) until the 1-minute load average is <= ``max_load``."""
    if max_load <= 0:
        return
    t0 = time.perf_counter()
    while os.getloadavg()[0] > max_load and time.perf_counter() - t0 < max_wait:
        time.sleep(10)
    if os.getloadavg()[0] > max_load:
        print(f"load average still {os.getloadavg()[0]:.2f} after {max_wait}s; running anyway", flush=True)


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="distinct pool rows (the rows clustered)")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=10_000, help="representatives (= clusters, one per cluster)")
    parser.add_argument("--centres", type=int, default=3000, help="true centres of the synthetic data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dedup", type=float, default=0.97, help="near-duplicate cosine threshold (full profile)"
    )
    parser.add_argument(
        "--dup-fraction", type=float, default=0.02, help="exact duplicates appended to the pool"
    )
    parser.add_argument("--holdout", type=int, default=50_000, help="held-out points for coverage")
    parser.add_argument("--draws", type=int, default=5, help="random subsets for the coverage baseline")
    parser.add_argument(
        "--paths", default=DEFAULT_PATHS, help="comma list of engine[:device][+flat][@threads]"
    )
    parser.add_argument("--per-task", action="store_true", help="cluster each task apart (the stage default)")
    parser.add_argument("--phases", action="store_true", help="time the faiss path's steps")
    parser.add_argument("--data-dir", default=None, help="keep the generated data here and reuse it")
    parser.add_argument(
        "--timeout", type=int, default=1800, help="seconds per path before it is reported as unfinished"
    )
    parser.add_argument(
        "--max-load",
        type=float,
        default=0.0,
        help="wait before each path until the 1-minute load average is <= this (0: no wait)",
    )
    parser.add_argument("--max-wait", type=int, default=1800, help="seconds to wait for --max-load per path")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return {}

    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_select_") as tmp:
        key = f"n{args.n}_d{args.dim}_c{args.centres}_s{args.seed}_dup{args.dup_fraction}_h{args.holdout}"
        data = Path(args.data_dir) / key if args.data_dir else Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if not (data / "holdout_tasks.npy").exists():
            make_data(data, args.n, args.dim, args.centres, args.seed, args.dup_fraction, args.holdout)
        gen_s = time.perf_counter() - t0
        size = (data / "pool.npy").stat().st_size
        print(
            f"data: {args.n} distinct rows x {args.dim} float32 + duplicates ({size / 1e9:.2f} GB) in {gen_s:.1f}s",
            flush=True,
        )
        results = []
        cuda = _cuda_available()
        for path in [p.strip() for p in args.paths.split(",") if p.strip()]:
            if ":cuda" in path and not cuda:
                results.append({"path": path, "error": "skipped: torch sees no CUDA device"})
                print(f"{path}: skipped (no CUDA device)", flush=True)
                continue
            cmd = [sys.executable, __file__, "--worker", path, "--data", str(data), "--k", str(args.k),
                   "--seed", str(args.seed), "--dedup", str(args.dedup), "--draws", str(args.draws)]  # fmt: skip
            cmd += ["--per-task"] if args.per_task else []
            cmd += ["--phases"] if args.phases else []
            _wait_for_load(args.max_load, args.max_wait)
            print(f"{path}: running (load average {os.getloadavg()[0]:.2f})", flush=True)
            t = time.perf_counter()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
            except subprocess.TimeoutExpired:
                results.append({"path": path, "error": f"did not finish in {args.timeout}s"})
                continue
            if proc.returncode != 0:
                results.append({"path": path, "error": " ".join(proc.stderr.strip().splitlines()[-1:])})
                print(f"{path}: failed: {proc.stderr[-2000:]}", flush=True)
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res["process_s"] = round(time.perf_counter() - t, 2)
            print(f"{path}: {json.dumps(res)}", flush=True)
            results.append(res)
    out = summarise(args, results, load, gen_s)
    write_results("select_clustering" + ("_per_task" if args.per_task else ""), out)
    return out


def _cov(r: dict, key: str) -> str:
    rnd = r["coverage_random"].get(key)
    if key not in r["coverage"] or rnd is None:
        return "-"
    return f"{r['coverage'][key]:.4f} vs {rnd['mean']:.4f}±{rnd['sd']:.4f}"


def summarise(args: argparse.Namespace, results: list[dict], load: tuple, gen_s: float) -> dict:
    from onereward import tasks

    ok = [r for r in results if "error" not in r]
    base = next((r for r in ok if r["path"].partition("@")[0] == "faiss"), None)
    best_base = min(
        (r for r in ok if r["path"].partition("@")[0] == "faiss"), key=lambda r: r["kmeans_s"], default=None
    )
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["path"], "-", "-", "-", "-", "-", "-", "-", "-", r["error"]])
            continue
        speedup = f"{best_base['kmeans_s'] / r['kmeans_s']:.2f}x" if best_base else "-"
        note = r["fallback"] or ("" if r["load_average"][0] < 1.5 else f"load {r['load_average'][0]}")
        peak = r["peak_rss_clustering_gb"] if r["peak_rss_clustering_gb"] is not None else r["peak_rss_gb"]
        rows.append([r["path"], r["backend"], r["kmeans_s"], r["kmeans_cpu_s"], speedup, peak,
                     r["gpu_peak_gb"] if r["gpu_peak_gb"] is not None else "-", f"{r['inertia']:,.0f}",
                     _cov(r, "overall"), note])  # fmt: skip
    print_table(
        f"select clustering: {args.n} x {args.dim} -> {args.k} ({'per task' if args.per_task else 'whole pool'}), "
        f"load avg at start {load[0]:.2f}; coverage = held-out mean cosine distance to the nearest pick, vs "
        f"random ({args.draws} draws, mean±sd)",
        ["path", "backend", "kmeans_s", "kmeans_cpu_s", "speedup", "peak_rss_gb", "gpu_peak_gb", "inertia",
         "coverage vs random", "note"],
        rows,
    )  # fmt: skip
    task_rows = [[r["path"], *(_cov(r, t) for t in tasks.TASKS)] for r in ok]
    print_table(
        "coverage per task (held-out points of the task vs the task's picks)",
        ["path", *tasks.TASKS],
        task_rows,
    )
    for r in ok:
        if r.get("phases"):
            print(f"{r['path']} phases (s): {r['phases']}")
        for g, det in (r.get("details") or {}).items():
            shown = {key: round(v, 2) if isinstance(v, float) else v for key, v in det.items()}
            print(f"{r['path']} [{g}] engine phases: {shown}")
    new = min(
        (r for r in ok if r["path"].partition("@")[0] == "torch:cpu"),
        key=lambda r: r["kmeans_s"],
        default=None,
    )
    verdict = None
    if new is not None and base is not None:
        speed = best_base["kmeans_s"] / new["kmeans_s"]
        quality = (
            new["inertia"] <= best_base["inertia"]
            and new["coverage"]["overall"] <= best_base["coverage"]["overall"]
        )
        peak = max(
            new["peak_rss_gb"] if new["peak_rss_clustering_gb"] is None else new["peak_rss_clustering_gb"], 0
        )
        verdict = {
            "kmeans_s": new["kmeans_s"],
            "within_time": new["kmeans_s"] <= TARGET_SECONDS,
            "peak_rss_gb": peak,
            "within_memory": peak <= TARGET_GB,
            "speedup_vs_fastest_faiss": round(speed, 2),
            "speedup_met": speed >= TARGET_SPEEDUP,
            "quality_not_worse": quality,
        }
        met = all(v for key, v in verdict.items() if key.endswith(("_time", "_memory", "_met", "_worse")))
        print(
            f"torch:cpu ({new['path']}): {new['kmeans_s']}s (target <= {TARGET_SECONDS}s), peak RSS while "
            f"clustering {peak} GB (target <= {TARGET_GB} GB, the loaded data included), {speed:.2f}x the "
            f"fastest faiss path {best_base['path']} (target >= {TARGET_SPEEDUP}x), "
            f"inertia and coverage {'not worse' if quality else 'WORSE'}: {'MET' if met else 'NOT MET'}"
        )
    return {
        "n": args.n,
        "dim": args.dim,
        "k": args.k,
        "centres": args.centres,
        "per_task": args.per_task,
        "dedup_threshold": args.dedup,
        "dup_fraction": args.dup_fraction,
        "holdout": args.holdout,
        "draws": args.draws,
        "data_generation_s": round(gen_s, 1),
        "load_average_at_start": [round(v, 2) for v in load],
        "results": results,
        "target": {
            "kmeans_s": TARGET_SECONDS,
            "peak_rss_gb": TARGET_GB,
            "speedup": TARGET_SPEEDUP,
            "verdict": verdict,
        },
        "machine": machine(),
        "note": "kmeans_s = wall seconds of the K-means calls (inertia included, as the stage pays it); "
        "kmeans_cpu_s = their CPU seconds, all threads (wall time on a busy shared machine also counts other "
        "processes); select_s = representative picking; cpu_s = CPU seconds of K-means + picking; "
        "peak_rss_clustering_gb = peak RSS from the start of clustering to the end of picking (kernel VmHWM "
        "reset), the data held in memory included; peak_rss_gb = the process's peak (loading and dedup "
        "included); inertia recomputed by one float64 evaluator for every path; coverage on held-out points",
    }


if __name__ == "__main__":
    main()
