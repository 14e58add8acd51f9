"""Running a model someone else wrote: its failures are the user's input, said in one line.

A factory's module (or a timm/torchvision model at an input it cannot take) may raise anything in its forward
pass, return something that is not a tensor, or call ``sys.exit``. :func:`forward` runs the first forward of a
measurement and turns every such failure into a :class:`ModelForwardError` naming the model, the input and the
cause; :func:`output_tensors` says which outputs can be measured. ``KeyboardInterrupt`` always propagates.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch

from emobench.errors import EmobenchError, first_line


class ModelForwardError(EmobenchError):
    """A model that fails when it runs (its forward or backward pass), or whose output cannot be measured."""


def model_label(model: Any) -> str:
    """How a module is named in a message: its reference (set by ``ResolvedModel.build``), else its class."""
    model = getattr(model, "__self__", model)  # a bound method (forward_features): its module
    return getattr(model, "model_reference", None) or type(model).__name__


def exit_text(err: SystemExit) -> str:
    """``sys.exit(7)``: how an exit is named in a message."""
    return "sys.exit()" if err.code is None else f"sys.exit({err.code!r})"


def _shape(x: Any) -> str:
    return "x".join(map(str, x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


@contextlib.contextmanager
def model_failures(label: str, x: Any, what: str = "forward pass") -> Iterator[None]:
    """Anything the model's own code raises inside the block (``SystemExit`` included) becomes one
    :class:`ModelForwardError`: ``LABEL: the WHAT failed at input 1x3x2x2: RuntimeError: <first line>``.
    emobench's own errors pass through; ``KeyboardInterrupt`` propagates."""
    try:
        yield
    except EmobenchError:
        raise
    except SystemExit as err:
        raise ModelForwardError(f"{label}: the {what} exited ({exit_text(err)}) at input {_shape(x)}") from None
    except Exception as err:  # noqa: BLE001 - the user's model failing is the user's input
        raise ModelForwardError(f"{label}: the {what} failed at input {_shape(x)}: {first_line(err)}") from None


def forward(model: Callable, x: torch.Tensor, label: str | None = None) -> Any:
    """``model(x)`` (a module, or a method such as ``forward_features``); any failure of the model is one
    :class:`ModelForwardError` naming ``label`` (default: :func:`model_label`), the input shape and the cause.
    Grad mode is the caller's."""
    with model_failures(label or model_label(model), x):
        return model(x)


#: the outputs a measurement compares across runtimes
MEASURED_OUTPUTS = "a tensor, or a tuple or list of tensors"


def _kind(value: Any) -> str:
    return f"a {type(value).__name__}"


def output_tensors(out: Any, label: str, by: str = "bench") -> tuple[torch.Tensor, ...]:
    """The tensors of a model's output (a tensor, or a flat tuple or list of them); anything else (a dict,
    ``None``, nested containers, an empty tuple) is one :class:`ModelForwardError` saying what ``by`` measures."""
    outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    if outs and all(isinstance(o, torch.Tensor) for o in outs):
        return outs
    if not outs:
        found = f"an empty {type(out).__name__}"
    elif isinstance(out, (tuple, list)):
        bad = next(o for o in outs if not isinstance(o, torch.Tensor))
        found = f"{_kind(out)} holding {_kind(bad)}"
    else:
        found = _kind(out)
    raise ModelForwardError(f"{label}: returns {found}; {by} measures models that return {MEASURED_OUTPUTS}")
