"""Annotation stages: export_annotations, simulate_annotations and import_annotations.

Label Studio round trip of the paper's protocol (section 4.2): per task and evaluation dimension
the annotator picks the best and the worst of N candidates (or "No clear difference"); each
answer becomes a winner/loser pair. One module per stage, each with its entry point and helpers:

- :mod:`~onereward.annotate.export`: :func:`~onereward.annotate.export.run_export`
  (``candidates`` -> ``project``);
- :mod:`~onereward.annotate.simulate`: :func:`~onereward.annotate.simulate.run_simulate`
  (``project`` -> ``annotations``, oracle-driven annotators);
- :mod:`~onereward.annotate.importer`: :func:`~onereward.annotate.importer.run_import`
  (``project`` or ``annotations`` -> ``preferences``).

Their settings are declared once in :mod:`~onereward.annotate.config`. Shared pieces: the
Label Studio client (``client``), the labeling config (``labeling_config``), reading and copying
the artifacts' tables and images (``artifact_io``), S3 uploads (``cloud_storage``) and agreement
statistics (``agreement``). Pipeline shape in both modes: ``export -> simulate -> import``; with a
Label Studio URL the project lives on the server, without one (the embedded demo) export writes
``tasks.json``, simulate writes ``export.json`` in Label Studio's export format and import reads
it. For real human annotation, import takes the export's ``project`` artifact directly.
"""
