"""Moved to :mod:`emobench.models.references`; this path re-exports it for one release (see CHANGELOG.md)."""

from emobench.models.references import (FALLBACK_INPUT, ModelReference, ModelReferenceError, ResolvedModel,
                                        build_model, build_reference, module_input_size, parse_reference, resolve)

__all__ = ["FALLBACK_INPUT", "ModelReference", "ModelReferenceError", "ResolvedModel", "build_model", "build_reference",
           "module_input_size", "parse_reference", "resolve"]
