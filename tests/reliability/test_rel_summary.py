"""The end of the reliability suite (the last module in file order): tracebacks seen and data lost
must be 0 over every case the suite ran (conftest.py prints the figures; this asserts them)."""

from __future__ import annotations

from rkit import LEDGER


def test_no_traceback_was_seen_and_no_data_was_lost() -> None:
    assert LEDGER.tracebacks == []
    assert LEDGER.lost == []
