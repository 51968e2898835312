"""K-means on CLIP embeddings, representative picking, near-duplicate removal and coverage.

Three K-means engines:

- ``sklearn``: scikit-learn ``MiniBatchKMeans`` (small pools; no extra native dependency).
- ``torch``: this module's K-means on torch tensors, on the CPU or a CUDA device (the default from
  ``faiss_min_items`` points). One code path for both devices, so the CPU tests prove the GPU logic;
  a missing GPU, or one that runs out of memory, falls back to the CPU and says so.
- ``faiss``: ``faiss.Kmeans`` seeded by k-means++ on a sample: the engine before issue 17, kept
  unchanged so that benchmarks can compare against it in the same run.

For many clusters (``k >= two_level_min_k``) all run two-level: coarse clusters, then each coarse
cell is split into fine clusters (summing to k). Training and assigning a million points to 10,000
flat centroids costs ~10^13 flops; two levels cost ~100x less.

Where the faiss path spends its time at 1,000,000 x 768 -> 10,000 (one thread, 62 s; measured with
``benchmarks/bench_select_clustering.py --phases``): 51% training the fine clusters on every member
of their cell (3.5 TFLOP: cells are uneven, 558 to 62,419 points, and a cell's cost grows with the
square of its size), 16% k-means++ seeding (10,000 steps of memory-bound matrix-vector products in
768 dimensions), 9% the inertia pass, 7% gathering cell members, 9% assignment passes, 8% the coarse
level. With 2 OpenMP threads on a busy 2-core machine it is slower still: threads spin at barriers.

The torch engine changes what costs most:

- fine cells train on a sample of 32 members per centroid; the single pass that then assigns all
  members also makes one update step with their exact sums (the sample's centroid error mostly goes);
- Lloyd's products are bfloat16 where that is fast (AMX: 6.6x float32 GEMM here; CUDA): centroids are
  ranked with bfloat16, while sums, means and the inertia stay float32/float64;
- seeds: k-means++ in the cell's 64-dimensional principal subspace, its loop in numpy;
- 4*sqrt(k) coarse cells (not 2*sqrt(k)), each given fine clusters in proportion to its inertia
  rather than its size (k-means distortion falls about as k^(-2/d): equal marginal gains put clusters
  where the spread is): lower inertia and lower coverage distance, and less work on the largest cells;
- the inertia comes from the sums (sum ||x||^2 - sum n_j ||mean_j||^2), not from another pass;
- on the CPU a pool of single-threaded tasks (no OpenMP barriers to spin on when the cores are busy).

Everything is seeded; the same data and seed give the same clusters (on the CPU, whatever the
number of threads).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onereward.errors import InputError
from onereward.log import get_logger

log = get_logger("select.cluster")

BACKENDS = ("auto", "sklearn", "faiss", "torch")
TWO_LEVEL = ("auto", "on", "off")

# Thread cap set by limit_threads (0: none); the torch engine sizes its worker pool from it.
_THREAD_CAP: contextvars.ContextVar[int] = contextvars.ContextVar("onereward_cluster_threads", default=0)


@contextlib.contextmanager
def limit_threads(threads: int) -> Iterator[None]:
    """Cap faiss's OpenMP threads and BLAS/OpenMP threads of numpy and scikit-learn (0: no cap).

    On a shared machine spin-waiting threads can cost more than they bring: with the 2 cores
    oversubscribed, faiss K-means ran 10x faster on 1 thread than on 2 (bench_select_clustering).
    """
    if threads <= 0:
        yield
        return
    import faiss
    from threadpoolctl import threadpool_limits

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    token = _THREAD_CAP.set(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        _THREAD_CAP.reset(token)
        faiss.omp_set_num_threads(before)


@dataclass
class Clustering:
    """Result of :func:`kmeans`: a label per point and the (unnormalised) centroids.

    ``backend`` names the engine that ran: ``sklearn``, ``faiss``, ``torch-cpu`` or ``torch-cuda``
    (``device`` gives the torch device, ``fallback`` why a requested GPU was not used).
    """

    labels: np.ndarray  # [n] int64 in [0, k)
    centroids: np.ndarray  # [k, d] float32
    backend: str
    two_level: bool
    n_coarse: int
    inertia: float  # sum of squared Euclidean distances to the assigned centroid
    seconds: float
    device: str = "cpu"
    fallback: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # per-phase seconds and GFLOP (torch engine)


KMeansResult = Clustering  # the name issue 17 uses


def choose_backend(n: int, backend: str = "auto", faiss_min_items: int = 50_000) -> str:
    """``sklearn`` or ``torch`` for ``n`` points (``torch`` from ``faiss_min_items`` on, the name kept
    from when that engine was faiss); ``backend`` other than ``auto`` wins."""
    if backend not in BACKENDS:
        raise InputError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    return "torch" if n >= faiss_min_items else "sklearn"


def _flat_kmeans(x: np.ndarray, k: int, backend: str, seed: int, niter: int) -> tuple[np.ndarray, np.ndarray]:
    n, d = x.shape
    if k >= n:
        return x.copy(), np.arange(n, dtype=np.int64)
    if k == 1:
        return x.mean(axis=0, keepdims=True).astype(np.float32), np.zeros(n, dtype=np.int64)
    if backend == "faiss":
        import faiss

        # min_points_per_centroid=1: small fine clusters are expected here, not a user mistake.
        km = faiss.Kmeans(
            d,
            k,
            niter=niter,
            seed=seed,
            verbose=False,
            max_points_per_centroid=256,
            min_points_per_centroid=1,
        )
        # faiss seeds with random points and lands in worse minima (about 25% higher inertia than
        # MiniBatchKMeans on clustered data, measured); k-means++ on a small sample fixes that.
        rng = np.random.default_rng(seed)
        m = min(n, max(1000, 8 * k))
        sample = x if m == n else x[np.sort(rng.choice(n, m, replace=False))]
        km.train(x, init_centroids=kmeans_plusplus(sample, k, rng))
        _, labels = km.index.search(x, 1)
        return np.asarray(km.centroids, dtype=np.float32), labels[:, 0].astype(np.int64)
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(
        n_clusters=k,
        random_state=seed,
        batch_size=min(n, 4096),
        n_init=3,
        max_iter=max(niter, 10),
        max_no_improvement=10,
    )
    km.fit(x)
    return km.cluster_centers_.astype(np.float32), km.labels_.astype(np.int64)


def kmeans_plusplus(sample: np.ndarray, k: int, rng: np.random.Generator, trials: int = 3) -> np.ndarray:
    """Greedy k-means++ seeds (``trials`` candidates per step, the one lowering the potential most).

    float32 throughout: scikit-learn's version upcasts to float64 chunk by chunk and took minutes
    for k = 1000 on 20,000 points here; this one takes about a second.
    """
    from threadpoolctl import threadpool_limits

    # Thousands of small GEMVs: BLAS threads only add synchronisation (10x slower on a busy machine).
    with threadpool_limits(1, user_api="blas"):
        return _kmeans_plusplus(np.ascontiguousarray(sample, dtype=np.float32), k, rng, trials)


def _kmeans_plusplus(sample: np.ndarray, k: int, rng: np.random.Generator, trials: int) -> np.ndarray:
    return sample[_kmeans_plusplus_indices(sample, k, rng, trials)]


def _kmeans_plusplus_indices(sample: np.ndarray, k: int, rng: np.random.Generator, trials: int) -> np.ndarray:
    """Row indices of greedy k-means++ seeds in ``sample`` (float32, C-contiguous).

    numpy, not torch, also for the torch engine: k sequential steps of a dozen small ops each, where
    numpy's per-op overhead is several times lower than torch's (measured: ~400 us per step with
    torch on this 2-core machine).
    """
    n, d = sample.shape
    sq_norms = np.einsum("ij,ij->i", sample, sample)
    chosen = np.empty(k, dtype=np.int64)
    first = int(rng.integers(n))
    chosen[0] = first
    closest = np.maximum(sq_norms - 2 * sample @ sample[first] + sq_norms[first], 0)
    for j in range(1, k):
        total = float(closest.sum())
        if total <= 0:  # fewer distinct points than k: repeat one (faiss splits empty clusters)
            chosen[j:] = rng.integers(n, size=k - j)
            break
        picks = np.searchsorted(np.cumsum(closest, dtype=np.float64), rng.random(trials) * total)
        picks = np.minimum(picks, n - 1)
        cand = sample[picks]
        # One matrix-vector product per candidate (faster than a thin GEMM here).
        dots = np.stack([sample @ c for c in cand], axis=1)
        dist = np.maximum(sq_norms[:, None] - 2 * dots + sq_norms[picks][None, :], 0)
        potentials = np.minimum(closest[:, None], dist).sum(axis=0)
        best = int(np.argmin(potentials))
        chosen[j] = picks[best]
        closest = np.minimum(closest, dist[:, best])
    return chosen


def split_proportionally(
    sizes: np.ndarray, total: int, minimum: int = 1, *, weights: np.ndarray | None = None
) -> np.ndarray:
    """Integer shares of ``total`` proportional to ``weights`` (default: ``sizes``; largest
    remainder), each at least ``minimum`` and at most its size; sums to ``min(total, sizes.sum())``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    w = sizes.astype(np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights is not None and (w.shape != sizes.shape or not np.all(np.isfinite(w)) or np.any(w < 0)):
        raise ValueError("split_proportionally: weights must be finite, >= 0 and shaped like sizes")
    total = int(min(total, sizes.sum()))
    share = np.zeros_like(sizes)
    nonempty = np.flatnonzero(sizes > 0)
    if total <= 0 or nonempty.size == 0:
        return share
    if total < nonempty.size * minimum:
        # Not enough for everyone: the largest groups get one each.
        order = nonempty[np.lexsort((nonempty, -sizes[nonempty]))]
        share[order[:total]] = 1
        return share
    share[nonempty] = minimum
    remaining = total - share.sum()
    while remaining > 0:
        capacity = sizes - share
        open_ = capacity > 0
        # Groups of weight 0 (e.g. a cell of identical points) only take what the others cannot.
        ow = w[open_].sum()
        quota = np.where(open_, (w / ow if ow > 0 else open_ / open_.sum()) * remaining, 0.0)
        add = np.minimum(np.floor(quota).astype(np.int64), capacity)
        if add.sum() == 0:  # hand out single units by largest fractional part
            frac = np.where(open_, quota - np.floor(quota), -1.0)
            order = np.lexsort((np.arange(len(sizes)), -frac))
            add = np.zeros_like(sizes)
            add[order[: int(min(remaining, open_.sum()))]] = 1
        share += add
        remaining = total - share.sum()
    return share


def _inertia(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray, chunk: int = 65536) -> float:
    """Sum of squared distances to the assigned centroids, rows summed in float64 (a float32 BLAS dot
    over a whole chunk was off by ~1e-4 relative)."""
    total = 0.0
    for s in range(0, len(x), chunk):
        diff = x[s : s + chunk] - centroids[labels[s : s + chunk]]
        total += float(np.einsum("ij,ij->i", diff, diff).sum(dtype=np.float64))
    return total


# ---------------------------------------------------------------------------------------------------
# The torch engine (CPU or CUDA)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchSettings:
    """Knobs of the torch engine; the defaults are the ones measured in bench_select_clustering."""

    train_per_centroid: int = 32  # fine cells train on this many sampled members per centroid
    coarse_per_centroid: int = 128  # coarse (and flat) K-means train on this many points per centroid
    seed_per_centroid: int = 8  # k-means++ picks its seeds among this many sampled points per centroid
    seed_min_points: int = 1000  # ... and among at least this many (small k: rare small blobs get seeds)
    seed_trials: int = 3  # greedy k-means++: candidates per step, the best one kept
    seed_dims: int = 64  # k-means++ distances in the sample's top principal subspace of this size (0: all)
    seed_power: int = 1  # power iterations of that subspace's randomized range finder
    leaf_iters: int = 0  # Lloyd iterations of fine cells (0: max(5, niter // 2), as the faiss path)
    coarse_factor: float = 4.0  # coarse cells: coarse_factor * sqrt(k) (the faiss path: 2)
    train_dtype: str = "auto"  # ranking products: float32, bfloat16, auto (bfloat16 on AMX / CUDA)
    tol: float = 0.001  # Lloyd stops when at most this fraction of the training labels changed
    assign_low: bool = True  # the fine level's last assignment pass ranks in bfloat16 too (if train_dtype)
    allocate: str = "inertia"  # fine clusters per coarse cell in proportion to its "inertia" or "count"


def check_device(device: str) -> None:
    """Refuse a device name other than ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (InputError)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(device)):
        raise InputError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}")


def resolve_device(device: str = "auto") -> tuple[str, str]:
    """The torch device to cluster on and, when it differs from the request, why.

    ``auto``: the first CUDA device when torch sees one, else the CPU; ``cpu``; ``cuda`` or
    ``cuda:N``: that GPU, or the CPU with the reason when torch sees no such device.
    """
    check_device(device)
    if device == "cpu":
        return "cpu", ""
    import torch

    if not torch.cuda.is_available():
        return "cpu", "" if device == "auto" else f"{device} requested but torch sees no CUDA device"
    want = "cuda:0" if device in ("auto", "cuda") else device
    if int(want.split(":")[1]) >= torch.cuda.device_count():
        return "cpu", f"{device} requested but torch sees {torch.cuda.device_count()} CUDA device(s)"
    return want, ""


def _low_precision(train_dtype: str, dev: Any) -> bool:
    """Whether Lloyd's training iterations rank centroids by bfloat16 products on ``dev``.

    ``auto``: on CPUs with AMX (bfloat16 GEMM 6.6x float32, measured) and on CUDA devices with
    bfloat16; elsewhere bfloat16 would be emulated and slower.
    """
    if train_dtype not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"train_dtype: expected auto, float32 or bfloat16, got {train_dtype!r}")
    if train_dtype != "auto":
        return train_dtype == "bfloat16"
    import torch

    if dev.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.cpu.get_capabilities().get("amx_bf16"))
    except (AttributeError, RuntimeError):
        return False


def _default_workers() -> int:
    """Worker threads of the CPU engine: the cores this process may use, capped by limit_threads."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    cap = _THREAD_CAP.get()
    return max(1, min(cap, cores) if cap > 0 else cores)


class _TorchKMeans:
    """Two-level (or flat) Lloyd K-means over the rows of one matrix held as a torch tensor.

    On the CPU the work runs in a pool of ``workers`` Python threads whose ops are single-threaded
    (torch releases the GIL inside ops): passes over many rows split them into blocks, the fine level
    runs one coarse cell per task. Block results are reduced in block order and centroid sums add up
    in float64, so the result does not depend on the number of workers. On a GPU the same code runs
    sequentially, with larger blocks.
    """

    def __init__(self, x: np.ndarray, device: str, workers: int, settings: TorchSettings) -> None:
        import torch

        self.torch = torch
        self.dev = torch.device(device)
        self.cuda = self.dev.type == "cuda"
        # CPU: shares the numpy buffer (no copy; never written, so a read-only array is fine and its
        # warning is noise). CUDA: one copy of the matrix on the device.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            self.x = torch.from_numpy(x).to(self.dev)
        self.n, self.d = x.shape
        self.s = settings
        self.workers = 1 if self.cuda else max(1, workers)
        # Distance blocks of [rows, k]: at most 16 MB on the CPU (blocks stay in cache and in the
        # allocator's reusable heap; larger ones are mmap'd and page-faulted afresh every time).
        self.block_elems = (1 << 28) if self.cuda else (1 << 22)
        self.max_rows = (1 << 17) if self.cuda else 4096
        # Per-block centroid sums: float32 on the CPU (sequential, so deterministic; float64 would
        # cost 10x), float64 on CUDA, whose index_add_ adds in arbitrary order: float64 sums of
        # float32 values do not depend on the order (exact in practice).
        self.acc = torch.float64 if self.cuda else torch.float32
        self.pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        self.stats: dict[str, float] = {}
        self._lock = threading.Lock()
        self.low_precision = _low_precision(settings.train_dtype, self.dev)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def _add(self, key: str, value: float) -> None:
        with self._lock:  # cells report from several threads
            self.stats[key] = self.stats.get(key, 0.0) + value

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any], parallel: bool) -> Iterator[Any]:
        if self.pool is None or not parallel or len(items) < 2:
            return map(fn, items)
        return self.pool.map(fn, items)

    def _rows_per_block(self, k: int) -> int:
        return int(max(256, min(self.max_rows, self.block_elems // max(k, 1))))

    # -- one assignment pass -------------------------------------------------------------------------

    def _sqnorms(self, a: Any) -> Any:
        # vector_norm, not einsum("ij,ij->i"): torch runs that einsum as a batched matmul, 13x slower.
        return self.torch.linalg.vector_norm(a, dim=1).square()

    def _augment(self, a: Any, last: Any) -> Any:
        """``a`` in bfloat16 with one more column holding ``last`` (zero-padded to a multiple of 32
        columns, AMX's tile width): one product of augmented rows and augmented centroids gives
        x.c - ||c||^2 / 2, whose largest value marks the nearest centroid."""
        torch = self.torch
        out = torch.empty(a.shape[0], (self.d + 32) // 32 * 32, dtype=torch.bfloat16, device=self.dev)
        out[:, : self.d] = a
        out[:, self.d] = last
        out[:, self.d + 1 :] = 0
        return out

    def _assign_block(
        self, xb: Any, c: Any, csq: Any, *, sums: bool, dists: bool, low: Any
    ) -> tuple[Any, ...]:
        """Nearest centroid of each row of ``xb``: labels, and with ``dists`` the rows' squared
        distances to it and squared norms, with ``sums`` the block's per-centroid sums and counts.

        ``low``: (augmented bfloat16 block or None to make it, augmented bfloat16 centroids): rank
        the centroids by bfloat16 products (AMX: 6.6x float32 GEMM on this machine). A near tie may
        then go to the other centroid and distances are approximate; sums stay float32.
        """
        torch = self.torch
        k = c.shape[0]
        if low is None:
            dist = torch.addmm(csq.unsqueeze(0), xb, c.T, beta=1.0, alpha=-2.0)  # ||c||^2 - 2 x.c
            dmin, lab = dist.min(dim=1)
        else:
            lb, cl = low
            if lb is None:
                lb = self._augment(xb, 1.0)
            score, lab = (lb @ cl.T).max(dim=1)  # x.c - ||c||^2 / 2
            dmin = -2.0 * score.float()
        sqd = xsq = part = cnt = None
        if dists:
            xsq = self._sqnorms(xb)
            sqd = (dmin + xsq).clamp_(min=0.0)
        if sums:
            part = torch.zeros(k, self.d, dtype=self.acc, device=self.dev)
            part.index_add_(0, lab, xb if self.acc == xb.dtype else xb.to(self.acc))
            cnt = torch.bincount(lab, minlength=k)
        return lab, sqd, part, cnt, xsq

    def _pass(
        self,
        src: Any,
        rows: Any,
        c: Any,
        *,
        sums: bool,
        dists: bool,
        parallel: bool,
        phase: str,
        low: bool = False,
        low_src: Any = None,
    ) -> tuple[Any, Any, Any, Any, Any]:
        """Assign the rows ``rows`` of ``src`` (None: all of them) to their nearest centroid.

        ``low``: rank centroids by bfloat16 products (see _assign_block); ``low_src``: ``src``
        already augmented (rows None only), made once for Lloyd's repeated passes over a sample.
        Returns labels; with ``dists`` the squared distances and the rows' squared norms; with
        ``sums`` the float64 per-centroid sums and the counts (None where not asked for).
        """
        torch = self.torch
        n = src.shape[0] if rows is None else rows.shape[0]
        k = c.shape[0]
        step = self._rows_per_block(k)
        csq = self._sqnorms(c)
        c_low = self._augment(c, -0.5 * csq) if low else None

        def block(bounds: tuple[int, int]) -> tuple[Any, ...]:
            lo, hi = bounds
            xb = src[lo:hi] if rows is None else src.index_select(0, rows[lo:hi])
            lb = None if low_src is None else low_src[lo:hi]
            return self._assign_block(xb, c, csq, sums=sums, dists=dists, low=(lb, c_low) if low else None)

        labels, sqds, norms = [], [], []
        total = torch.zeros(k, self.d, dtype=torch.float64, device=self.dev) if sums else None
        counts = torch.zeros(k, dtype=torch.int64, device=self.dev) if sums else None
        for lab, sqd, part, cnt, xsq in self._map(
            block, [(s, min(s + step, n)) for s in range(0, n, step)], parallel
        ):
            labels.append(lab)
            if dists:
                sqds.append(sqd)
                norms.append(xsq)
            if sums:
                total += part  # in block order: the same sums whatever the number of workers
                counts += cnt
        self._add(f"{phase}_gflop", 2e-9 * n * k * self.d)  # as float32 products would count
        cat = torch.cat
        return cat(labels), cat(sqds) if dists else None, total, counts, cat(norms) if dists else None

    # -- seeding and Lloyd ---------------------------------------------------------------------------

    def _seeds(self, sample: Any, k: int, rng: np.random.Generator) -> Any:
        """Greedy k-means++ (``seed_trials`` candidates per step, the one lowering the potential most)
        on the rows of ``sample``, with distances in the sample's top ``seed_dims``-dimensional
        principal subspace.

        Its k sequential steps each read the whole sample: in 768 dimensions that is memory-bound
        (the faiss path spent 14% of its time seeding); 64 dimensions are 12x less to read and stay in
        cache. Seeds only start Lloyd's iterations, which run in full dimension.
        """
        torch = self.torch
        m = sample.shape[0]
        dims = self.s.seed_dims
        if 0 < dims < self.d and dims < m:
            # The sample's top principal subspace (randomized range finder, one power iteration):
            # distances between the sample's groups live there; a random projection to 64 dimensions
            # blurred them (+1.3% inertia at 1M x 768, measured). Products in bfloat16 where that is
            # fast (an approximate subspace serves as well); QR in float32.
            dt = torch.bfloat16 if self.low_precision else sample.dtype
            centred = (sample - sample.mean(0, keepdim=True)).to(dt)
            g = torch.from_numpy(rng.standard_normal((self.d, dims), dtype=np.float32)).to(self.dev, dt)
            y = centred @ g
            if self.s.seed_power:
                y = centred @ (centred.T @ y)
            basis = torch.linalg.qr(y.float())[0].to(dt)
            q = torch.linalg.qr((centred.T @ basis).float())[0]  # [d, dims] basis of the range
            z = (sample.to(dt) @ q.to(dt)).float()
        else:
            z = sample
        idx = _kmeans_plusplus_indices(
            np.ascontiguousarray(z.cpu().numpy(), dtype=np.float32), k, rng, max(1, self.s.seed_trials)
        )
        chosen = torch.from_numpy(idx).to(self.dev)
        return sample.index_select(0, chosen)

    def _lloyd(self, xs: Any, c: Any, iters: int, parallel: bool) -> tuple[Any, int]:
        """Lloyd's iterations on the rows of ``xs`` from centroids ``c``, until at most ``tol`` of the
        labels change or ``iters``. An empty cluster takes the point farthest from its centroid.

        With ``low_precision``, centroids are ranked by bfloat16 products (AMX: 6.6x float32 GEMM on
        this machine): a near tie may go to the other centroid, which moves the training centroids a
        little; the update step of the final pass (float32 sums over all members) corrects that.
        """
        torch = self.torch
        low = self._augment(xs, 1.0) if self.low_precision else None
        prev = None
        done = 0
        while done < iters:
            done += 1
            lab, _, sums, counts, _ = self._pass(
                xs, None, c, sums=True, dists=False, parallel=parallel, phase="train", low=low is not None,
                low_src=low,
            )  # fmt: skip
            new = (sums / counts.clamp(min=1).unsqueeze(1)).to(c.dtype)
            empty = torch.nonzero(counts == 0)[:, 0]
            if len(empty):  # rare: only then the distances (one more pass)
                _, sqd, _, _, _ = self._pass(
                    xs, None, c, sums=False, dists=True, parallel=parallel, phase="train", low=low is not None,
                    low_src=low,
                )  # fmt: skip
                far = torch.topk(sqd, len(empty)).indices
                new[empty] = xs.index_select(0, far)
            c = new
            # Stop when (almost) no label changed: with bfloat16 ranking a few near ties flip back
            # and forth and the exact test would run every iteration.
            if prev is not None and int((lab != prev).sum()) <= self.s.tol * len(lab):
                break
            prev = lab
        return c, done

    def flat(
        self,
        rows: Any,
        k: int,
        rng: np.random.Generator,
        iters: int,
        per_centroid: int,
        *,
        parallel: bool,
        update: bool,
        level: str,
        norms: Any = None,
    ) -> tuple[Any, Any, Any, float, Any]:
        """K-means of the rows ``rows`` of the matrix (None: all) into ``k`` clusters.

        Lloyd's iterations run on a sample of ``per_centroid`` points per centroid; one pass over all
        the points then assigns them, and with ``update`` moves each centroid to the mean of its
        members (a last Lloyd update step on all the data, free inside that pass: on the faiss
        path's data it recovers most of what the sample loses).

        ``norms``: the squared norms of all the matrix's rows, if known. Returns centroids, labels,
        the inertia (about the returned centroids), and without ``update`` (where they are computed)
        the squared distances to the centroids and the rows' squared norms, else None for both.

        ``level`` names the phase timings in ``stats``: ``<level>_<step>_s``, wall seconds when the
        step runs in the pool (``parallel``), else the CPU seconds of the worker thread (summed over
        cells: they run in parallel).
        """
        torch = self.torch
        x = self.x
        clock = time.perf_counter if parallel or self.cuda else time.thread_time
        n = self.n if rows is None else int(rows.shape[0])
        if k >= n:
            pts = x if rows is None else x.index_select(0, rows)
            if update:
                return pts.clone(), torch.arange(n, device=self.dev), 0.0, None, None
            return (
                pts.clone(),
                torch.arange(n, device=self.dev),
                0.0,
                torch.zeros(n, device=self.dev),
                self._sqnorms(pts),
            )
        t0 = clock()
        m = min(n, max(k, per_centroid * k))
        if m < n:
            pick = torch.from_numpy(np.sort(rng.choice(n, m, replace=False))).to(self.dev)
            xs = x.index_select(0, pick if rows is None else rows[pick])
        else:
            xs = x if rows is None else x.index_select(0, rows)
        ms = min(m, max(k, self.s.seed_min_points, self.s.seed_per_centroid * k))
        sample = (
            xs
            if ms == m
            else xs.index_select(0, torch.from_numpy(np.sort(rng.choice(m, ms, replace=False))).to(self.dev))
        )
        t1 = clock()
        c = self._seeds(sample, k, rng)
        t2 = clock()
        c, done = self._lloyd(xs, c, iters, parallel)
        t3 = clock()
        # bfloat16 ranking here too: a near tie (within ~1e-3 in squared distance) may go to the other
        # centroid, which costs the inertia next to nothing; the sums, the means and the inertia
        # below stay exact.
        low = self.low_precision and (self.s.assign_low or not update)
        dists = not update or norms is None  # distances only where needed: one less read of each row
        lab, sqd, sums, counts, xsq = self._pass(
            x, rows, c, sums=update, dists=dists, parallel=parallel, phase="assign", low=low
        )
        if update:
            means = torch.where(counts.unsqueeze(1) > 0, sums / counts.clamp(min=1).unsqueeze(1), c.double())
            # Inertia about the means: sum ||x||^2 - sum_j n_j ||mean_j||^2, exact in float64
            # whatever precision ranked the centroids.
            if norms is not None:
                xsq = norms if rows is None else norms[rows]
            norm_total = float(xsq.double().sum())
            inertia = norm_total - float((counts.double() * (means * means).sum(1)).sum())
            c = means.to(c.dtype)
            sqd = xsq = None
        else:
            inertia = float(sqd.double().sum())
        t4 = clock()
        for step, seconds in (
            ("sample", t1 - t0),
            ("seed", t2 - t1),
            ("train", t3 - t2),
            ("assign", t4 - t3),
        ):
            self._add(f"{level}_{step}_s", seconds)
        self._add(f"{level}_iterations", done)
        return c, lab, inertia, sqd, xsq

    # -- the whole K-means ---------------------------------------------------------------------------

    def run(
        self, k: int, seed: int, niter: int, two_level: bool
    ) -> tuple[np.ndarray, np.ndarray, float, int]:
        """Centroids, labels, inertia and the number of coarse cells (0: flat)."""
        torch = self.torch
        if not two_level:
            c, lab, inertia, _, _ = self.flat(
                None,
                k,
                np.random.default_rng([seed, 0]),
                niter,
                self.s.coarse_per_centroid,
                parallel=True,
                update=True,
                level="flat",
            )
            return c.cpu().numpy(), lab.cpu().numpy().astype(np.int64), inertia, 0
        t0 = time.perf_counter()
        n_coarse = min(k, max(2, round(self.s.coarse_factor * math.sqrt(k))))
        _, clab, _, csqd, norms = self.flat(
            None,
            n_coarse,
            np.random.default_rng([seed, 0]),
            niter,
            self.s.coarse_per_centroid,
            parallel=True,
            update=False,
            level="coarse",
        )
        coarse = clab.cpu().numpy()
        sizes = np.bincount(coarse, minlength=n_coarse)
        if self.s.allocate == "inertia":
            # k-means distortion falls about as k^(-2/d): equal marginal gains put fine clusters in
            # proportion to a cell's inertia (its size times its spread), not its size alone.
            # Measured on the benchmark data: -2% inertia and lower coverage distance than by size.
            weights = np.bincount(coarse, weights=csqd.double().cpu().numpy(), minlength=n_coarse)
        elif self.s.allocate == "count":
            weights = sizes.astype(np.float64)
        else:
            raise ValueError(f"allocate: expected inertia or count, got {self.s.allocate!r}")
        fine_k = split_proportionally(sizes, k, weights=weights)
        order = np.argsort(coarse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)])
        self.stats["coarse_s"] = time.perf_counter() - t0
        leaf_iters = self.s.leaf_iters or max(5, niter // 2)
        per = self.s.train_per_centroid

        def leaf(c: int) -> tuple[int, Any, Any, Any, Any]:
            rows = torch.from_numpy(order[starts[c] : starts[c + 1]]).to(self.dev)
            rng = np.random.default_rng([seed, 1, c])
            cent, lab, inertia, _, _ = self.flat(
                rows,
                int(fine_k[c]),
                rng,
                leaf_iters,
                per,
                parallel=False,
                update=True,
                level="fine",
                norms=norms,
            )
            return c, rows, cent, lab, inertia

        t1 = time.perf_counter()
        cells = [c for c in range(n_coarse) if fine_k[c] > 0]
        # Largest work first (Lloyd costs about sample size x clusters), so that threads finish together.
        cost = {c: int(fine_k[c]) * min(int(sizes[c]), per * int(fine_k[c])) for c in cells}
        results = {r[0]: r[1:] for r in self._map(leaf, sorted(cells, key=lambda c: (-cost[c], c)), True)}
        labels = torch.empty(self.n, dtype=torch.int64, device=self.dev)
        parts, inertia, offset = [], 0.0, 0
        for c in cells:  # cluster ids in coarse-cell order, whatever order the tasks finished in
            rows, cent, lab, cell_inertia = results[c]
            labels[rows] = lab + offset
            parts.append(cent)
            inertia += cell_inertia
            offset += cent.shape[0]
        self.stats["fine_s"] = time.perf_counter() - t1
        centroids = torch.cat(parts).cpu().numpy()
        return centroids, labels.cpu().numpy(), inertia, n_coarse


def _run_torch(
    x: np.ndarray,
    dev: str,
    workers: int,
    settings: TorchSettings,
    k: int,
    seed: int,
    niter: int,
    two_level: bool,
) -> tuple[tuple[np.ndarray, np.ndarray, float, int], dict[str, Any]]:
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per op: the parallelism is the worker pool's (see _TorchKMeans)
    engine = None
    try:
        engine = _TorchKMeans(x, dev, workers, settings)
        # numpy's BLAS (k-means++ steps) single-threaded too: no BLAS threads under the worker threads.
        with torch.no_grad(), threadpool_limits(1, user_api="blas"):
            out = engine.run(k, seed, niter, two_level)
        return out, dict(engine.stats, workers=engine.workers)
    finally:
        torch.set_num_threads(before)
        if engine is not None:
            engine.close()


def _torch_kmeans(
    x: np.ndarray,
    k: int,
    *,
    seed: int,
    niter: int,
    two_level: bool,
    device: str,
    threads: int | None,
    settings: TorchSettings | None,
) -> tuple[np.ndarray, np.ndarray, float, int, str, str, dict[str, Any]]:
    """The torch engine on ``device`` (``auto``, ``cpu``, ``cuda[:N]``), on the CPU when that GPU is
    missing or runs out of memory. Returns centroids, labels, inertia, the number of coarse cells,
    the device used, why it is not the one asked for ('' if it is) and per-phase details."""
    import torch

    dev, fallback = resolve_device(device)
    if fallback:
        log.warning("kmeans: %s; clustering on the CPU", fallback)
    settings = settings or TorchSettings()
    workers = threads if threads and threads > 0 else _default_workers()
    try:
        out, stats = _run_torch(x, dev, workers, settings, k, seed, niter, two_level)
    except torch.cuda.OutOfMemoryError as e:
        if dev == "cpu":
            raise
        fallback = f"{dev} ran out of memory ({str(e).splitlines()[0][:160]})"
    else:
        return (*out, dev, fallback, stats)
    log.warning("kmeans: %s; clustering on the CPU", fallback)
    torch.cuda.empty_cache()
    out, stats = _run_torch(x, "cpu", workers, settings, k, seed, niter, two_level)
    return (*out, "cpu", fallback, stats)


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    backend: str = "auto",
    seed: int = 0,
    niter: int = 20,
    faiss_min_items: int = 50_000,
    two_level: str = "auto",
    two_level_min_k: int = 1024,
    device: str = "auto",
    threads: int | None = None,
    settings: TorchSettings | None = None,
) -> Clustering:
    """Cluster the rows of ``x`` (float32 [n, d]) into ``min(k, n)`` clusters.

    backend: ``auto`` (``torch`` from ``faiss_min_items`` points, else ``sklearn``), ``sklearn``,
        ``torch`` or ``faiss`` (the engine before issue 17, for comparison).
    two_level: ``auto`` (from ``two_level_min_k`` clusters), ``on`` or ``off``.
    niter: Lloyd iterations of the flat or coarse level; fine cells get ``max(5, niter // 2)``.
    device: torch engine only: ``auto`` (CUDA when torch sees a GPU), ``cpu``, ``cuda`` or ``cuda:N``;
        a missing GPU or one out of memory falls back to the CPU (``Clustering.fallback`` says why).
    threads: torch engine on the CPU: worker threads (None: the cores, capped by :func:`limit_threads`).
    settings: torch engine knobs (None: the measured defaults).
    """
    if two_level not in TWO_LEVEL:
        raise InputError(f"two_level: expected one of {', '.join(TWO_LEVEL)}, got {two_level!r}")
    check_device(device)
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if n == 0:
        raise InputError("kmeans: no points to cluster")
    k = max(1, min(int(k), n))
    engine = choose_backend(n, backend, faiss_min_items)
    use_two = two_level == "on" or (two_level == "auto" and k >= two_level_min_k)
    use_two = use_two and k >= 4
    t0 = time.perf_counter()
    device_used, fallback, details = "cpu", "", {}
    if engine == "torch":
        centroids, labels, inertia, n_coarse, device_used, fallback, details = _torch_kmeans(
            x, k, seed=seed, niter=niter, two_level=use_two, device=device, threads=threads, settings=settings
        )
        name = "torch-cuda" if device_used.startswith("cuda") else "torch-cpu"
    else:
        centroids, labels, n_coarse = _kmeans_legacy(x, k, engine, seed, niter, use_two)
        inertia = _inertia(x, centroids, labels)
        name = engine
    seconds = time.perf_counter() - t0
    log.info(
        "kmeans: %d points -> %d clusters with %s%s in %.2fs (inertia %.4g)",
        n,
        len(centroids),
        name,
        f" two-level ({n_coarse} coarse)" if use_two else "",
        seconds,
        inertia,
    )
    return Clustering(
        labels, centroids, name, use_two, n_coarse, inertia, seconds, device_used, fallback, details
    )


def _kmeans_legacy(
    x: np.ndarray, k: int, engine: str, seed: int, niter: int, use_two: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """The faiss / scikit-learn path as it was before issue 17 (centroids, labels, coarse cells)."""
    if not use_two:
        centroids, labels = _flat_kmeans(x, k, engine, seed, niter)
        return centroids, labels, 0
    # 2*sqrt(k) coarse cells: fine-level cost falls with the number of cells; measured on
    # 200k x 768 -> 2000: one third less CPU than sqrt(k) cells for +0.2% inertia (3*sqrt(k): no gain).
    n_coarse = min(k, max(2, round(2 * math.sqrt(k))))
    _, coarse = _flat_kmeans(x, n_coarse, engine, seed, niter)
    members = [np.flatnonzero(coarse == c) for c in range(n_coarse)]
    fine_k = split_proportionally(np.array([len(m) for m in members]), k)
    labels = np.empty(len(x), dtype=np.int64)
    parts = []
    offset = 0
    for c, idx in enumerate(members):
        if len(idx) == 0:
            continue
        # Fine levels start from k-means++ seeds inside one coarse cell and settle fast: half
        # the iterations cost +0.15% inertia and save a large share of the time (measured).
        cent, lab = _flat_kmeans(x[idx], int(fine_k[c]), engine, seed + 1 + c, max(5, niter // 2))
        labels[idx] = lab + offset
        parts.append(cent)
        offset += len(cent)
    return np.concatenate(parts, axis=0), labels, n_coarse


def centroid_distances(
    x: np.ndarray, centroids: np.ndarray, labels: np.ndarray, chunk: int = 65536
) -> np.ndarray:
    """Cosine distance of each (L2-normalised) row of ``x`` to its own cluster's centroid."""
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    unit = centroids / np.maximum(norms, 1e-12)
    out = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), chunk):
        out[s : s + chunk] = 1.0 - np.einsum("ij,ij->i", x[s : s + chunk], unit[labels[s : s + chunk]])
    return np.clip(out, 0.0, 2.0)


@dataclass
class Selection:
    """Chosen rows (in pick order), their cosine distance to their centroid, and the number of
    candidates skipped as near-duplicates of an earlier pick."""

    indices: np.ndarray
    distances: np.ndarray
    n_duplicates_skipped: int


def _greedy_dedup(
    cand: np.ndarray, x: np.ndarray, kept: np.ndarray, threshold: float, block: int = 2048
) -> np.ndarray:
    """Accept mask for candidates in priority order: a candidate is dropped when its cosine
    similarity to a kept row or to an earlier accepted candidate reaches ``threshold``."""
    threshold -= 1e-6  # float32 dot products of identical unit vectors can fall just below 1.0
    vecs = x[cand]
    ok = np.ones(len(cand), dtype=bool)
    if len(kept):
        kept_vecs = x[kept]
        for s in range(0, len(cand), block):
            ok[s : s + block] &= (vecs[s : s + block] @ kept_vecs.T).max(axis=1) < threshold
    # Pairs among the candidates (j earlier than i) above threshold, found blockwise (sparse).
    earlier: dict[int, list[int]] = {}
    cols = np.arange(len(cand))
    for s in range(0, len(cand), block):
        sims = vecs[s : s + block] @ vecs.T
        rows = np.arange(s, min(s + block, len(cand)))
        hit = (sims >= threshold) & (cols[None, :] < rows[:, None])
        for r, c in zip(*np.nonzero(hit), strict=True):
            earlier.setdefault(int(rows[r]), []).append(int(c))
    for i in sorted(earlier):
        if ok[i] and any(ok[j] for j in earlier[i]):
            ok[i] = False
    return ok


def select_representatives(
    x: np.ndarray,
    clustering: Clustering,
    target: int,
    *,
    per_cluster: int = 1,
    dedup_threshold: float = 0.98,
) -> Selection:
    """Pick ``target`` rows: the ``per_cluster`` nearest-to-centroid members of each cluster,
    skipping near-duplicates (cosine similarity >= ``dedup_threshold`` to an earlier pick).

    A cluster whose nearest members are duplicates takes its next-nearest instead; when clusters
    run out, the shortfall is filled one extra pick at a time from the largest clusters.
    """
    labels = clustering.labels
    dist = centroid_distances(x, clustering.centroids, labels)
    order = np.lexsort((np.arange(len(x)), dist, labels))  # by cluster, then distance, then row
    k = len(clustering.centroids)
    starts = np.searchsorted(labels[order], np.arange(k + 1))
    sizes = np.diff(starts)
    cluster_order = np.lexsort((np.arange(k), -sizes))  # largest clusters first
    target = int(min(target, len(x)))
    pointer = np.zeros(k, dtype=np.int64)
    taken = np.zeros(k, dtype=np.int64)
    quota = np.full(k, per_cluster, dtype=np.int64)
    kept: list[int] = []
    skipped = 0
    while len(kept) < target:
        room = target - len(kept)
        need = np.clip(np.minimum(quota - taken, sizes - pointer), 0, None)
        batch_parts, owner_parts, count = [], [], 0
        # Rank-major: every cluster's next pick before any cluster's pick after that.
        for rank in range(int(need.max(initial=0))):
            clusters = cluster_order[need[cluster_order] > rank][: room - count]
            if len(clusters) == 0:
                break
            batch_parts.append(order[starts[clusters] + pointer[clusters] + rank])
            owner_parts.append(clusters)
            count += len(clusters)
            if count >= room:
                break
        if count == 0:
            left = pointer < sizes
            if not left.any():
                break
            # Raise the quota of the largest clusters that still have members.
            grow = cluster_order[left[cluster_order]][:room]
            quota[grow] += 1
            continue
        batch = np.concatenate(batch_parts)
        owners = np.concatenate(owner_parts)
        np.add.at(pointer, owners, 1)
        accept = _greedy_dedup(batch, x, np.array(kept, dtype=np.int64), dedup_threshold)
        skipped += int((~accept).sum())
        kept.extend(int(i) for i in batch[accept])
        np.add.at(taken, owners[accept], 1)
    idx = np.array(kept, dtype=np.int64)
    return Selection(idx, dist[idx], skipped)


def nearest_similarity(queries: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Cosine similarity of each query row to its nearest ``base`` row (exact, faiss flat IP)."""
    import faiss

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(np.ascontiguousarray(base, dtype=np.float32))
    sims, _ = index.search(np.ascontiguousarray(queries, dtype=np.float32), 1)
    return np.clip(sims[:, 0], -1.0, 1.0)


def coverage(
    x: np.ndarray, selected: np.ndarray, *, sample: int = 50_000, seed: int = 0
) -> tuple[float, int]:
    """Mean cosine distance from the pool rows to their nearest selected row (lower is better).

    Pools larger than ``sample`` are measured on a seeded uniform sample of that many rows
    (the mean of 50,000 distances has a standard error far below the differences that matter).
    Returns (coverage, number of pool rows measured).
    """
    if len(selected) == 0:
        return float("nan"), 0
    rows = np.arange(len(x))
    if len(x) > sample:
        rows = np.sort(np.random.default_rng(seed).choice(len(x), size=sample, replace=False))
    sims = nearest_similarity(x[rows], x[selected])
    return float(np.mean(1.0 - sims)), len(rows)


def random_subset(groups: Mapping[str, np.ndarray], sizes: Mapping[str, int], seed: int) -> np.ndarray:
    """A seeded uniform random subset with ``sizes[g]`` rows from each group's row indices."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(rows, size=min(sizes[g], len(rows)), replace=False) for g, rows in groups.items()]
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)
