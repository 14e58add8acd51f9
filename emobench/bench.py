"""Moved to :mod:`emobench.runs.bench` (records: :mod:`emobench.results.record`); this path re-exports them for
one release (see CHANGELOG.md)."""

from emobench.results.record import SCHEMA, UNITS, BenchRecord, failed, records_table
from emobench.runs.bench import BenchOutcome, BenchPlan, run_bench, run_stored

__all__ = ["SCHEMA", "UNITS", "BenchRecord", "failed", "records_table", "BenchOutcome", "BenchPlan", "run_bench",
           "run_stored"]
