"""The base of emobench's aten-dispatch modes (counters, live memory, meta footprints).

torch wraps every ``TorchDispatchMode.__torch_dispatch__`` so that Dynamo never compiles into it, and that
wrapper imports ``torch._dynamo`` (about a second) on the first operator a mode sees. emobench never calls
``torch.compile`` inside its modes, so its modes opt out (torch's own switch, ``_should_skip_dynamo``) and a
command that compiles nothing does not pay for the compiler.
"""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode


class DispatchMode(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False


def without_dynamo_guard(mode_class: type[TorchDispatchMode]) -> type[TorchDispatchMode]:
    """A subclass of a third party's dispatch mode (ptflops') with the same opt-out: its ``__torch_dispatch__``
    unwrapped (``functools.wraps`` keeps the original as ``__wrapped__``)."""
    raw = getattr(mode_class.__torch_dispatch__, "__wrapped__", mode_class.__torch_dispatch__)
    return type(mode_class.__name__, (mode_class,), {"_should_skip_dynamo": classmethod(lambda cls: False),
                                                     "__torch_dispatch__": raw, "__module__": __name__})
