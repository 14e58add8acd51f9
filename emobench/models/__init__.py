"""Models by name: references resolved once (:mod:`.references`), zoo entries built (:mod:`.build`), checkpoints
(:mod:`.checkpoint`), block layouts (:mod:`.architecture`) and the memory a model needs (:mod:`.budget`).
The names below load on first use, so importing the package does not import torch."""

from importlib import import_module

_LAZY = {
    "create_model": ".build", "input_shape": ".build", "parse_resolution": ".build",
    "resolve": ".references", "build_model": ".references", "ResolvedModel": ".references",
    "parse_reference": ".references", "load_checkpoint": ".checkpoint", "check_fits": ".budget",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emobench.models' has no attribute '{name}'")
