"""Support for tests, benchmarks and scripts: local servers the stages talk to.

- :mod:`onereward.testing.local_label_studio`: a Label Studio server on 127.0.0.1 in its own
  virtual environment (installed on first use), started from a migrated template.
- :mod:`onereward.testing.local_s3`: moto's S3 server on 127.0.0.1 (needs the development extras,
  ``pip install -e '.[dev]'``).

No stage imports this package; importing it needs nothing beyond the library's dependencies
(the servers run as their own processes).
"""
