"""KFP glue: components/ and pipelines/ install under this namespace (see setup.py)."""
