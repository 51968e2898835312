"""K-means on CLIP embeddings, representative picking, near-duplicate removal and coverage.

Two K-means engines, the same algorithm around them:

- ``sklearn``: scikit-learn ``MiniBatchKMeans`` (small pools; no extra native dependency).
- ``faiss``: ``faiss.Kmeans`` seeded by k-means++ on a sample (large pools; several times faster
  than MiniBatchKMeans here).

``auto`` picks faiss from ``faiss_min_items`` points on. For many clusters (``k >=
two_level_min_k``) both run two-level: about 2*sqrt(k) coarse clusters, then each coarse cluster is
split into a number of fine clusters proportional to its size (summing to k). Training and
assigning a million points to 10,000 flat centroids costs ~10^13 flops; two levels cost ~100x
less, at a small inertia price (measured in benchmarks/bench_select_clustering.py).

Everything is seeded; the same data and seed give the same clusters.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from onereward.errors import InputError
from onereward.log import get_logger

log = get_logger("select.cluster")

BACKENDS = ("auto", "sklearn", "faiss")
TWO_LEVEL = ("auto", "on", "off")


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
    try:
        with threadpool_limits(threads):
            yield
    finally:
        faiss.omp_set_num_threads(before)


@dataclass
class Clustering:
    """Result of :func:`kmeans`: a label per point and the (unnormalised) centroids."""

    labels: np.ndarray  # [n] int64 in [0, k)
    centroids: np.ndarray  # [k, d] float32
    backend: str
    two_level: bool
    n_coarse: int
    inertia: float  # sum of squared Euclidean distances to the assigned centroid
    seconds: float


def choose_backend(n: int, backend: str = "auto", faiss_min_items: int = 50_000) -> str:
    """``sklearn`` or ``faiss`` for ``n`` points; ``backend`` other than ``auto`` wins."""
    if backend not in BACKENDS:
        raise InputError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    return "faiss" if n >= faiss_min_items else "sklearn"


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
    n, d = sample.shape
    sq_norms = np.einsum("ij,ij->i", sample, sample)
    centres = np.empty((k, d), dtype=np.float32)
    first = int(rng.integers(n))
    centres[0] = sample[first]
    closest = np.maximum(sq_norms - 2 * sample @ sample[first] + sq_norms[first], 0)
    for j in range(1, k):
        total = float(closest.sum())
        if total <= 0:  # fewer distinct points than k: repeat one (faiss splits empty clusters)
            centres[j:] = sample[rng.integers(n, size=k - j)]
            break
        picks = np.searchsorted(np.cumsum(closest, dtype=np.float64), rng.random(trials) * total)
        picks = np.minimum(picks, n - 1)
        cand = sample[picks]
        # One matrix-vector product per candidate (faster than a thin GEMM here).
        dots = np.stack([sample @ c for c in cand], axis=1)
        dist = np.maximum(sq_norms[:, None] - 2 * dots + sq_norms[picks][None, :], 0)
        potentials = np.minimum(closest[:, None], dist).sum(axis=0)
        best = int(np.argmin(potentials))
        centres[j] = cand[best]
        closest = np.minimum(closest, dist[:, best])
    return centres


def split_proportionally(sizes: np.ndarray, total: int, minimum: int = 1) -> np.ndarray:
    """Integer shares of ``total`` proportional to ``sizes`` (largest remainder), each at least
    ``minimum`` and at most its size; sums to ``min(total, sizes.sum())``."""
    sizes = np.asarray(sizes, dtype=np.int64)
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
        quota = np.where(open_, sizes / sizes[open_].sum() * remaining, 0.0)
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
    total = 0.0
    for s in range(0, len(x), chunk):
        diff = (x[s : s + chunk] - centroids[labels[s : s + chunk]]).ravel()
        total += float(np.dot(diff, diff))  # BLAS dot per chunk, summed in float64 across chunks
    return total


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
) -> Clustering:
    """Cluster the rows of ``x`` (float32 [n, d]) into ``min(k, n)`` clusters.

    backend: ``auto`` (faiss from ``faiss_min_items`` points), ``sklearn`` or ``faiss``.
    two_level: ``auto`` (from ``two_level_min_k`` clusters), ``on`` or ``off``.
    """
    if two_level not in TWO_LEVEL:
        raise InputError(f"two_level: expected one of {', '.join(TWO_LEVEL)}, got {two_level!r}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if n == 0:
        raise InputError("kmeans: no points to cluster")
    k = max(1, min(int(k), n))
    engine = choose_backend(n, backend, faiss_min_items)
    use_two = two_level == "on" or (two_level == "auto" and k >= two_level_min_k)
    use_two = use_two and k >= 4
    t0 = time.perf_counter()
    if not use_two:
        centroids, labels = _flat_kmeans(x, k, engine, seed, niter)
        n_coarse = 0
    else:
        # 2*sqrt(k) coarse cells: fine-level cost falls with the number of cells; measured on
        # 200k x 768 -> 2000: one third less CPU than sqrt(k) cells for +0.2% inertia (3*sqrt(k): no gain).
        n_coarse = min(k, max(2, round(2 * math.sqrt(k))))
        _, coarse = _flat_kmeans(x, n_coarse, engine, seed, niter)
        members = [np.flatnonzero(coarse == c) for c in range(n_coarse)]
        fine_k = split_proportionally(np.array([len(m) for m in members]), k)
        labels = np.empty(n, dtype=np.int64)
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
        centroids = np.concatenate(parts, axis=0)
    seconds = time.perf_counter() - t0
    inertia = _inertia(x, centroids, labels)
    log.info(
        "kmeans: %d points -> %d clusters with %s%s in %.2fs (inertia %.4g)",
        n,
        len(centroids),
        engine,
        f" two-level ({n_coarse} coarse)" if use_two else "",
        seconds,
        inertia,
    )
    return Clustering(labels, centroids, engine, use_two, n_coarse, inertia, seconds)


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
