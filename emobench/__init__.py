"""emobench: how big, how costly, how fast, and how far a mobile network sees.

Models come from the zoo (``zoo/*.toml``)::

    import emobench
    emobench.list_models("emo_*")
    model = emobench.create_model("emo_5m", checkpoint="net.pth")
    fast = emobench.fuse(model)          # channels-last inference form, same outputs
    official = emobench.formulate(model, "official")   # any formulation (emobench.nn.forms), same outputs
"""

from importlib import import_module

from emobench.version import __version__

# The public names load on first use (PEP 562), so `emobench --help` and other commands that need no model
# start without importing torch.
_LAZY = {
    "create_model": ".models.build",
    "list_models": ".zoo.catalog",
    "get_entry": ".zoo.catalog",
    "load_checkpoint": ".models.checkpoint",
    "fuse": ".nn.forms.fused",
    "formulate": ".nn.forms",
    "EmobenchError": ".errors",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emobench' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
