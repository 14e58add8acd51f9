"""Moved to :mod:`emobench.runs.profile`; this path re-exports it for one release (see CHANGELOG.md)."""

from emobench.runs.profile import SCHEMA, Metric, ModelProfile, profile_model, profile_models

__all__ = ["SCHEMA", "Metric", "ModelProfile", "profile_model", "profile_models"]
