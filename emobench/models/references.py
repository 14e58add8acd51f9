"""Model references: every way a command or the Python API names a model.

A reference is one string::

    emo_1m                              a zoo entry (``emobench zoo list``)
    timm:edgenext_xx_small              any timm model, pretrained=False; input size from timm's pretrained config
    torchvision:mobilenet_v3_large      any torchvision model, weights=None
    my_package.nets:make_net            a factory in an importable module (dotted attributes allowed)
    path/to/nets.py:make_net            a factory in a Python file (imported: that runs the file, as asked)

followed by keyword arguments for the factory, ``,key=value`` (values are Python literals, else strings), and a
per-reference input size ``@256`` or ``@192x320`` (H×W) that replaces the model's default:
``timm:resnet18,num_classes=10@160``. A zoo entry takes its config fields the same way (``emo_1m,window=contiguous``).

The default input (C, H, W) of a factory's module is its ``default_input_size`` attribute (the zoo's convention),
else its timm-style ``pretrained_cfg["input_size"]``, else 3×224×224 (said in ``input_size_source``). Weights
given with ``checkpoint`` load without executing code (``torch.load(weights_only=True)`` or safetensors).
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import operator
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from emobench.errors import EmobenchError, InputSizeError, first_line
from emobench.models.build import build_entry, input_shape, parse_resolution
from emobench.models.forward import exit_text
from emobench.zoo.catalog import ZooEntry, extra_zoo_dirs, get_entry

#: the input a factory's module gets when it declares none (ImageNet's, as timm and torchvision assume)
FALLBACK_INPUT = (3, 224, 224)
#: how to get timm where emobench runs (``docs/counting.md``, README: timm needs a torchvision that imports)
TIMM_HINT = ("pip install 'emobench[timm]' (timm needs a torchvision that imports beside torch; "
             "see the README's timm recipe)")


class ModelReferenceError(EmobenchError):
    """A model reference that cannot be parsed or resolved."""


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes (``k=(1, 2)`` stays one piece)."""
    pieces, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return pieces


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value  # a bare word: a string (window=contiguous)


@dataclass(frozen=True)
class ModelReference:
    """A parsed model reference (see the module docstring). ``text`` is how records and tables name the model."""

    text: str
    kind: str  #: zoo, timm, torchvision, module or file
    target: str  #: zoo/timm/torchvision name, module path or file path
    attribute: str | None = None  #: the factory's name in the module or file
    kwargs: dict[str, Any] = field(default_factory=dict)
    size: tuple[int, int] | None = None  #: ``@HxW``

    @property
    def name(self) -> str:
        return self.text

    @property
    def is_zoo(self) -> bool:
        return self.kind == "zoo"

    def with_kwargs(self, kwargs: dict[str, Any], size: tuple[int, int] | None = None) -> str:
        """The reference text with its keyword arguments and then ``kwargs`` (which win), and its ``@HxW`` or else
        ``size``: what :func:`parse_reference` reads back (values written as Python literals)."""
        head = {"zoo": self.target, "timm": f"timm:{self.target}", "torchvision": f"torchvision:{self.target}"}.get(
            self.kind, f"{self.target}:{self.attribute}")
        hw = self.size or size
        return head + "".join(f",{k}={v!r}" for k, v in {**self.kwargs, **kwargs}.items()) + (
            f"@{hw[0]}x{hw[1]}" if hw else "")

    def factory(self):
        """The callable that builds the module (imports timm, torchvision, the module or the file)."""
        if self.kind == "timm":
            timm = _import_optional("timm", self.text)
            if not timm.is_model(self.target):
                raise ModelReferenceError(f"{self.text}: timm has no model '{self.target}'"
                                          f"{_close_hint(self.target, timm.list_models(), LIST_HINT)}")
            return lambda **kw: timm.create_model(self.target, pretrained=False, **kw)
        if self.kind == "torchvision":
            tv = _import_optional("torchvision", self.text)
            names = tv.models.list_models()
            if self.target not in names:
                raise ModelReferenceError(f"{self.text}: torchvision has no model '{self.target}'"
                                          f"{_close_hint(self.target, names)}")
            return lambda **kw: tv.models.get_model(self.target, weights=None, **kw)
        if self.kind == "module":
            try:
                module = importlib.import_module(self.target)
            except ImportError as err:
                raise ModelReferenceError(f"{self.text}: cannot import '{self.target}': {err}") from None
            except SystemExit as err:  # KeyboardInterrupt propagates
                raise ModelReferenceError(f"{self.text}: importing '{self.target}' exited ({exit_text(err)})") from None
            except Exception as err:  # noqa: BLE001 - the user's module failing to import is the user's input
                raise ModelReferenceError(f"{self.text}: importing '{self.target}' failed: {first_line(err)}") from None
        else:
            module = _import_file(Path(self.target), self.text)
        obj: Any = module
        for part in self.attribute.split("."):
            if not hasattr(obj, part):
                raise ModelReferenceError(f"{self.text}: '{self.target}' has no attribute '{self.attribute}'")
            obj = getattr(obj, part)
        if not callable(obj):
            raise ModelReferenceError(f"{self.text}: '{self.attribute}' is a {type(obj).__name__}, not a callable")
        return obj


LIST_HINT = " (none close; timm.list_models('*PART*') lists names)"


def _close_hint(name: str, names: list[str], none: str = "") -> str:
    close = close_matches(name, names)
    return f" (close matches: {', '.join(close)})" if close else none


class ResolvedModel:
    """A model reference resolved once, at the edge: its zoo entry (overrides validated) or its factory (module
    imported, name checked), and the input it takes by default. Everything below the command line takes this;
    :func:`resolve` returns it unchanged, so a model is never looked up twice."""

    def __init__(self, reference: ModelReference, entry: ZooEntry | None, factory: Callable | None) -> None:
        self.reference = reference
        self.entry = entry
        self._factory = factory
        self._default: tuple[tuple[int, int, int], str] | None = None

    def __repr__(self) -> str:
        return f"ResolvedModel({self.text!r})"

    @property
    def text(self) -> str:
        """How records and tables name the model."""
        return self.reference.text

    name = text
    kind = property(lambda self: self.reference.kind)
    kwargs = property(lambda self: self.reference.kwargs)
    size = property(lambda self: self.reference.size)  #: ``@HxW``, or None
    is_zoo = property(lambda self: self.reference.is_zoo)

    def without_size(self) -> "ResolvedModel":
        """The same model with its ``@HxW`` dropped (an explicit input size given elsewhere wins)."""
        other = ResolvedModel(dataclasses.replace(self.reference, size=None), self.entry, self._factory)
        other._default = self._default
        return other

    # --- building ----------------------------------------------------------------------------------------

    def construct(self) -> nn.Module:
        """The module as the factory returns it (training mode, the factory's own initialisation)."""
        if self.entry is not None:
            return build_entry(self.entry)
        model = self._call_factory()
        if not isinstance(model, nn.Module):
            raise ModelReferenceError(f"{self.text}: the factory returned {type(model).__name__}, not a torch.nn.Module")
        return model

    def _call_factory(self) -> Any:
        """The factory's return value; its failures (``sys.exit`` included) are one :class:`ModelReferenceError`,
        ``KeyboardInterrupt`` propagates."""
        try:
            return self._factory(**self.kwargs)
        except EmobenchError:
            raise
        except SystemExit as err:
            raise ModelReferenceError(f"{self.text}: the factory exited ({exit_text(err)})") from None
        except Exception as err:  # noqa: BLE001 - a factory that refuses its arguments is the user's input
            raise ModelReferenceError(f"{self.text}: the factory failed: {first_line(err)}") from None

    def meta_module(self) -> nn.Module:
        """The module on torch's meta device (shapes only, nothing allocated); a factory that cannot build there
        (one that calls ``.item()`` while building, as timm-style drop-path schedules do) is built normally."""
        import torch

        if self.entry is not None:
            with torch.device("meta"):
                return build_entry(self.entry)
        try:
            with torch.device("meta"):
                model = self._factory(**self.kwargs)
            if isinstance(model, nn.Module):
                return model
        except SystemExit as err:  # an exit is no device problem: said now, not run again
            raise ModelReferenceError(f"{self.text}: the factory exited ({exit_text(err)})") from None
        except Exception:  # noqa: BLE001 - any failure on meta: the normal build below says what is wrong
            pass
        return self.construct().to("meta")

    def build(self, checkpoint: str | os.PathLike | None = None, seed: int | None = None) -> nn.Module:
        """The module in eval mode with ``checkpoint`` loaded, carrying ``default_input_size`` (C, H, W; ``@HxW``
        applied), ``input_size_source`` and ``model_reference``. ``seed``: fixed initial weights (the caller's
        RNG untouched), so every process that builds it gets the same parameters."""
        import torch

        if seed is None:
            model = self.construct()
        else:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                model = self.construct()
        if checkpoint is not None:
            from emobench.models.checkpoint import load_checkpoint

            load_checkpoint(model, checkpoint)
        (c, h, w), source = self.default_input_size(model)
        if self.size:
            h, w, source = *self.size, "@HxW"
        model.default_input_size = (c, h, w)
        model.input_size_source = source
        model.model_reference = self.text
        return model.eval()

    # --- input -------------------------------------------------------------------------------------------

    def default_input_size(self, model: nn.Module | None = None) -> tuple[tuple[int, int, int], str]:
        """(C, H, W) the model takes by default and where that comes from (``@HxW`` not applied)."""
        if self._default is None:
            self._default = self._find_default_input_size(model)
        return self._default

    def _find_default_input_size(self, model: nn.Module | None) -> tuple[tuple[int, int, int], str]:
        if self.entry is not None:
            return tuple(self.entry.input_size), "zoo entry"
        if self.kind == "timm":
            try:
                from timm.models import get_pretrained_cfg

                cfg = get_pretrained_cfg(self.reference.target)
            except Exception:  # noqa: BLE001 - fall back to the built model's own config
                cfg = None
            if cfg is not None and getattr(cfg, "input_size", None):
                return tuple(cfg.input_size), "timm pretrained_cfg"
        if self.kind == "torchvision":
            return FALLBACK_INPUT, "torchvision's ImageNet crop"
        return module_input_size(model if model is not None else self.meta_module(), self.text)

    def input_shape(self, resolution: tuple[int, int] | None = None, batch: int = 1) -> tuple[int, ...]:
        """The input shape: ``@HxW`` if the reference has one, else ``resolution``, else the default."""
        res = self.size or resolution
        if self.entry is not None:
            return input_shape(self.entry, res, batch)
        if batch < 1:
            raise InputSizeError(f"batch must be >= 1, got {batch}")
        c, h, w = self.default_input_size()[0]
        if res is not None:
            h, w = res
        return (batch, c, h, w)

    def identity(self) -> dict:
        """What names the architecture in a cache key (the weights go in by fingerprint): a zoo entry's family
        and config; a timm/torchvision model's name, arguments and library version; a factory file's content."""
        if self.entry is not None:
            return {"model": self.entry.name, "family": self.entry.family, "config": self.entry.raw_config}
        ident = {"model": self.text, "kind": self.kind, "kwargs": self.kwargs}
        if self.kind in ("timm", "torchvision"):
            from importlib.metadata import version

            ident["library"] = version(self.kind)
        elif self.kind == "file":
            ident["file"] = hashlib.sha256(Path(self.reference.target).read_bytes()).hexdigest()
        return ident


def close_matches(name: str, names: list[str], n: int = 4) -> list[str]:
    """Names that contain ``name`` (``deit_tiny`` → ``deit_tiny_patch16_224``), then similar spellings."""
    found = [c for c in names if name in c][:n]
    for c in difflib.get_close_matches(name, names, n=n, cutoff=0.6):
        if c not in found and len(found) < n:
            found.append(c)
    return found


def _declared_size(value: Any, label: str, where: str) -> tuple[int, int, int]:
    """A declared (C, H, W): three positive integers, else one error naming the model and the value."""
    try:
        size = tuple(operator.index(v) for v in value) if not isinstance(value, (str, bytes)) else None
    except TypeError:  # not iterable, or an element that is no integer (a str, a float)
        size = None
    if size is None or len(size) != 3 or min(size) < 1 or any(isinstance(v, bool) for v in value):
        raise ModelReferenceError(f"{label}: its {where} is {value!r}; it must be (C, H, W), three positive integers")
    return size


def module_input_size(model: nn.Module, label: str | None = None) -> tuple[tuple[int, int, int], str]:
    """(C, H, W) a module declares (``default_input_size``, timm's ``pretrained_cfg``) or the fallback; a
    declaration that is not three positive integers is refused, naming ``label`` (default: the module's
    reference or class)."""
    label = label or getattr(model, "model_reference", None) or type(model).__name__
    size = getattr(model, "default_input_size", None)
    if size is not None:
        return _declared_size(size, label, "default_input_size"), "module.default_input_size"
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("input_size"):
        return _declared_size(cfg["input_size"], label, 'pretrained_cfg["input_size"]'), "module.pretrained_cfg"
    return FALLBACK_INPUT, f"assumed {'x'.join(map(str, FALLBACK_INPUT))} (the module declares none; give REF@HxW)"


def _import_optional(package: str, text: str):
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as err:
        if err.name == package:
            hint = TIMM_HINT if package == "timm" else f"pip install {package}"
            raise ModelReferenceError(f"{text} needs {package}, which is not installed: {hint}") from None
        raise ModelReferenceError(f"{text}: {package} is installed but does not import: {err}") from None
    except Exception as err:  # noqa: BLE001 - e.g. torchvision's compiled ops not matching this torch
        raise ModelReferenceError(f"{text}: {package} is installed but does not import: {first_line(err)}") from None


def _import_file(path: Path, text: str):
    """Import a Python file as a module of its own (the same file gives the same module within a process)."""
    if not path.is_file():
        raise ModelReferenceError(f"{text}: file not found: {path}")
    if path.suffix != ".py":
        raise ModelReferenceError(f"{text}: a factory file must be a .py file, got '{path.name}'")
    resolved = path.resolve()
    name = f"emobench_user_{path.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except SystemExit as err:  # KeyboardInterrupt propagates
        del sys.modules[name]
        raise ModelReferenceError(f"{text}: importing {path} exited ({exit_text(err)})") from None
    except Exception as err:  # noqa: BLE001 - the user's file failing to import is the user's input
        del sys.modules[name]
        raise ModelReferenceError(f"{text}: importing {path} failed: {first_line(err)}") from None
    return module


def parse_reference(text: str) -> ModelReference:
    """Parse a reference string (see the module docstring); nothing is imported or built yet."""
    if not isinstance(text, str) or not text.strip():
        raise ModelReferenceError("a model reference must be a non-empty string (a zoo name, timm:NAME, "
                                  "torchvision:NAME, package.module:factory or file.py:factory)")
    body, size = text.strip(), None
    at = body.rfind("@")
    if at >= 0:
        body, size = body[:at], parse_resolution(body[at + 1:], f"{text}: the input size after '@'")
    head, *options = _split_top_level(body)
    kwargs = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ModelReferenceError(f"{text}: keyword arguments look like ',key=value', got '{option}'")
        if key.strip() in kwargs:
            raise ModelReferenceError(f"{text}: '{key.strip()}' is given twice; give each keyword once")
        kwargs[key.strip()] = _literal(value.strip())
    head = head.strip()
    if ":" not in head:
        kind, target, attribute = "zoo", head, None
    else:
        prefix, _, rest = head.partition(":")
        if prefix in ("timm", "torchvision"):
            kind, target, attribute = prefix, rest, None
        elif prefix.endswith(".py") or "/" in prefix or os.sep in prefix:
            kind, target, attribute = "file", prefix, rest
        else:
            kind, target, attribute = "module", prefix, rest
        if not target or (kind in ("module", "file") and not attribute):
            raise ModelReferenceError(f"{text}: expected timm:NAME, torchvision:NAME, package.module:factory or "
                                      f"path/to/file.py:factory")
        if attribute is not None and not all(p.isidentifier() for p in attribute.split(".")):
            raise ModelReferenceError(f"{text}: '{attribute}' is not a Python name")
    if not target:
        raise ModelReferenceError(f"{text}: no model named before '@' or ','")
    return ModelReference(text.strip(), kind, target, attribute, kwargs, size)


#: how many references were resolved in this process (tests check that a command resolves each model once)
RESOLUTIONS = collections.Counter()


def resolve(reference: str | ModelReference | ResolvedModel) -> ResolvedModel:
    """Parse a reference and resolve it (its zoo entry validated, or its factory imported and checked) without
    building the model, so a sweep refuses a bad reference before it measures anything. A
    :class:`ResolvedModel` is returned as it is."""
    if isinstance(reference, ResolvedModel):
        return reference
    ref = reference if isinstance(reference, ModelReference) else parse_reference(reference)
    RESOLUTIONS[ref.text] += 1
    if ref.is_zoo:
        return ResolvedModel(ref, get_entry(ref.target).with_overrides(**ref.kwargs), None)
    return ResolvedModel(ref, None, ref.factory())


def build_model(reference: str | ModelReference | ResolvedModel, checkpoint: str | os.PathLike | None = None) -> nn.Module:
    """The module a reference names, in eval mode, with ``checkpoint`` loaded, carrying ``default_input_size``
    (C, H, W; ``@HxW`` applied), ``input_size_source`` (where that size comes from) and ``model_reference``."""
    return resolve(reference).build(checkpoint)


def build_reference(reference: str | ResolvedModel, checkpoint: str | os.PathLike | None = None,
                    zoo_dirs: list[str] | None = None) -> nn.Module:
    """The model a measurement runs: the reference form in eval mode, with ``checkpoint`` loaded or with fixed
    weights (seed 0), so every process that builds it gets the same parameters and cached exports stay valid."""
    with extra_zoo_dirs(zoo_dirs):
        return resolve(reference).build(checkpoint, seed=0)
