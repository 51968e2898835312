"""Annotation stages: export_annotations, simulate_annotations and import_annotations.

Label Studio round trip of the paper's protocol (section 4.2): per task and evaluation dimension
the annotator picks the best and the worst of N candidates (or "No clear difference"); each
answer becomes a winner/loser pair. Entry points: :func:`onereward.annotate.stage.run_export`,
:func:`~onereward.annotate.stage.run_simulate`, :func:`~onereward.annotate.stage.run_import`.
"""
