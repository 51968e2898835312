"""K-means backends, representatives, near-duplicate removal and coverage on synthetic embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from onereward.errors import InputError
from onereward.select import cluster as C


def blobs(n: int, d: int, centers: int, seed: int = 0, spread: float = 0.35) -> np.ndarray:
    """L2-normalised points around ``centers`` random directions, with uneven blob sizes."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(centers, d))
    weights = rng.dirichlet(np.full(centers, 2.0))
    x = mu[rng.choice(centers, size=n, p=weights)] + spread * rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return blobs(4000, 32, 40)


def test_backends_agree_on_inertia_and_are_deterministic(data):
    runs = {b: C.kmeans(data, 40, backend=b, seed=0) for b in ("sklearn", "faiss")}
    for b, r in runs.items():
        assert r.backend == b and len(r.centroids) == 40 and not r.two_level
        again = C.kmeans(data, 40, backend=b, seed=0)
        assert np.array_equal(again.labels, r.labels) and np.array_equal(again.centroids, r.centroids)
    a, b = runs["sklearn"].inertia, runs["faiss"].inertia
    assert abs(a - b) / min(a, b) < 0.1
    # Both are far better than assigning points to 40 random points.
    rng = np.random.default_rng(1)
    random_centroids = data[rng.choice(len(data), 40, replace=False)]
    labels = np.argmax(data @ random_centroids.T, axis=1)
    assert max(a, b) < 0.8 * C._inertia(data, random_centroids, labels)


def test_auto_backend_by_size():
    assert C.choose_backend(1000, "auto", faiss_min_items=50_000) == "sklearn"
    assert C.choose_backend(50_000, "auto", faiss_min_items=50_000) == "faiss"
    assert C.choose_backend(10, "faiss") == "faiss"
    with pytest.raises(InputError, match="backend: expected one of"):
        C.choose_backend(10, "kmeans++")


def test_two_level_matches_flat_inertia(data):
    flat = C.kmeans(data, 300, backend="faiss", seed=0, two_level="off")
    two = C.kmeans(data, 300, backend="faiss", seed=0, two_level="on")
    assert two.two_level and two.n_coarse == 35 and len(two.centroids) == 300  # 2 * sqrt(300)
    assert set(np.unique(two.labels)) == set(range(300))
    assert two.inertia < 1.1 * flat.inertia


def test_split_proportionally():
    assert C.split_proportionally(np.array([10, 0, 3, 100]), 7).tolist() == [1, 0, 1, 5]
    assert C.split_proportionally(np.array([10, 0, 3, 100]), 2).tolist() == [1, 0, 0, 1]
    assert C.split_proportionally(np.array([10, 1, 3, 100]), 500).tolist() == [10, 1, 3, 100]
    rng = np.random.default_rng(0)
    for _ in range(50):
        sizes = rng.integers(0, 50, size=rng.integers(1, 8))
        total = int(rng.integers(0, 120))
        share = C.split_proportionally(sizes, total)
        assert share.sum() == min(total, sizes.sum()) and np.all(share <= sizes) and np.all(share >= 0)


def test_representatives_are_nearest_to_centroid(data):
    result = C.kmeans(data, 20, backend="sklearn", seed=0)
    sel = C.select_representatives(data, result, 40, per_cluster=2, dedup_threshold=1.0)
    assert len(sel.indices) == 40 and len(set(sel.indices.tolist())) == 40
    dist = C.centroid_distances(data, result.centroids, result.labels)
    picked_clusters = result.labels[sel.indices]
    assert np.all(np.bincount(picked_clusters, minlength=20) == 2)
    for c in range(20):
        members = np.flatnonzero(result.labels == c)
        nearest = members[np.argsort(dist[members], kind="stable")[:2]]
        assert set(nearest.tolist()) == set(sel.indices[picked_clusters == c].tolist())
    np.testing.assert_allclose(sel.distances, dist[sel.indices])


def test_near_duplicates_are_not_selected_together():
    base = blobs(300, 32, 10, seed=3)
    rng = np.random.default_rng(4)
    copies = base[:60] + 0.01 * rng.normal(size=(60, 32)).astype(np.float32)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    x = np.concatenate([base, copies, base[:10]])  # near-duplicates and exact duplicates
    # Three picks per cluster: a point and its copy sit together near the centroid.
    result = C.kmeans(x, 34, backend="faiss", seed=0)
    sel = C.select_representatives(x, result, 100, per_cluster=3, dedup_threshold=0.99)
    assert len(sel.indices) == 100 and sel.n_duplicates_skipped > 0
    v = x[sel.indices]
    sims = v @ v.T
    np.fill_diagonal(sims, -1)
    assert sims.max() < 0.99
    # Without dedup the same clustering keeps some duplicate pairs.
    loose = C.select_representatives(x, result, 100, per_cluster=3, dedup_threshold=1.0)
    w = x[loose.indices]
    sims = w @ w.T
    np.fill_diagonal(sims, -1)
    assert sims.max() >= 0.99


def test_shortfall_filled_from_largest_clusters():
    x = blobs(200, 16, 4, seed=5)
    result = C.kmeans(x, 4, backend="sklearn", seed=0)
    sel = C.select_representatives(x, result, 30, per_cluster=1, dedup_threshold=1.0)
    assert len(sel.indices) == 30 and len(set(sel.indices.tolist())) == 30
    counts = np.bincount(result.labels[sel.indices], minlength=4)
    sizes = np.bincount(result.labels, minlength=4)
    assert counts.sum() == 30 and counts[np.argmax(sizes)] >= counts[np.argmin(sizes)]


def test_selection_covers_better_than_random_subsets(data):
    result = C.kmeans(data, 50, backend="faiss", seed=0)
    sel = C.select_representatives(data, result, 50, dedup_threshold=0.999)
    cov, n = C.coverage(data, sel.indices)
    assert n == len(data)
    randoms = [
        C.coverage(data, C.random_subset({"all": np.arange(len(data))}, {"all": 50}, seed=s))[0]
        for s in range(20)
    ]
    assert cov < min(randoms)
    # Coverage on a sample estimates the full value closely.
    est, n_est = C.coverage(data, sel.indices, sample=1500, seed=0)
    assert n_est == 1500 and abs(est - cov) < 0.1 * cov
    # Selecting every point covers perfectly.
    assert C.coverage(data, np.arange(len(data)))[0] == pytest.approx(0.0, abs=1e-5)
