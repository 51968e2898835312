"""select_subset: CLIP embeddings + K-means representative subset of a source pool (paper 5.1).

- :mod:`onereward.select.pool`: read a pool artifact, an HF datasets folder or an image folder; checks.
- :mod:`onereward.select.masks`: canvas expansions (image_extend) and box/brush masks (image_fill).
- :mod:`onereward.select.embed`: batched open_clip embeddings with a content-hash cache.
- :mod:`onereward.select.cluster`: K-means (scikit-learn / faiss, two-level), representatives,
  near-duplicate removal, coverage.
- :mod:`onereward.select.stage`: the stage entry point ``run(pool, out, size=...)``.
"""
