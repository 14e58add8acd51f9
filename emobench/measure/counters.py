"""Three MAC counters side by side: emobench's own, fvcore's and ptflops' (aten backend).

Every counter misses something on attention models (see ``docs/`` and ../shared/docs/profilers.md): fvcore and
ptflops count ``scaled_dot_product_attention`` as 0, ptflops' aten backend skips normalisation. emobench adds
handles for what they skip, reports the tool's own figure too (``macs_without_handles``), and lists every
operation that is still uncounted.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from emobench.measure import formulas
from emobench.measure.dispatch import DispatchMode

aten = torch.ops.aten

#: Operations no counter charges for: element-wise arithmetic, activations, softmax, pooling means.
ELEMENTWISE = frozenset(
    """add sub mul div neg exp log sqrt rsqrt pow sigmoid silu gelu relu relu6 hardtanh hardswish hardsigmoid
    tanh softmax _softmax log_softmax _log_softmax mean sum clamp clamp_min clamp_max where maximum minimum abs erf bernoulli
    dropout native_dropout avg_pool2d adaptive_avg_pool2d max_pool2d max_pool2d_with_indices
    _adaptive_avg_pool2d leaky_relu elu rsub reciprocal sign floor ceil round eq ne lt gt le ge logical_and
    logical_or logical_not fill masked_fill sin cos tan atan bitwise_not bitwise_and bitwise_or softplus mish
    cumsum cumprod linalg_vector_norm norm var var_mean std std_mean prod amax amin max min argmax argmin any all
    logsumexp nll_loss_forward nll_loss2d_forward mse_loss smooth_l1_loss binary_cross_entropy_with_logits
    threshold_backward silu_backward gelu_backward sigmoid_backward tanh_backward hardswish_backward
    hardsigmoid_backward hardtanh_backward leaky_relu_backward elu_backward softplus_backward mish_backward
    _softmax_backward_data _log_softmax_backward_data nll_loss_backward nll_loss2d_backward mse_loss_backward
    smooth_l1_loss_backward avg_pool2d_backward _adaptive_avg_pool2d_backward max_pool2d_with_indices_backward
    native_dropout_backward""".split()
)
#: Operations that move or view memory without arithmetic.
DATA_MOVEMENT = frozenset(
    """view _unsafe_view reshape permute transpose t expand clone copy copy_ contiguous slice select unbind split
    split_with_sizes chunk constant_pad_nd pad empty empty_like empty_strided zeros zeros_like ones ones_like
    full detach alias as_strided _to_copy to unsqueeze squeeze cat stack flatten unflatten lift_fresh
    new_empty new_zeros new_ones arange linspace _reshape_alias index index_select narrow repeat roll flip
    lift_fresh_copy scalar_tensor _local_scalar_dense item expand_as view_as reshape_as type_as
    select_backward slice_backward as_strided_scatter slice_scatter select_scatter new_empty_strided zero
    rand randn randint rand_like randn_like uniform normal""".split()
)


def _base_name(name: str) -> str:
    """An in-place variant under its operation's name (``silu_`` → ``silu``, ``as_strided_`` → ``as_strided``)."""
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


def _is_free(name: str) -> bool:
    name = _base_name(name)
    return name in ELEMENTWISE or name in DATA_MOVEMENT


def tally_uncharged(name: str, by_convention: set[str], uncounted: set[str]) -> None:
    """An operator no formula charges: element-wise (not counted by convention), data movement (nothing to
    count), or arithmetic still uncounted (the total is then a lower bound)."""
    base = _base_name(name)
    if base in ELEMENTWISE:
        by_convention.add(name)
    elif base not in DATA_MOVEMENT:
        uncounted.add(name)


def _opname(func) -> str:
    return func._overloadpacket.__name__


# --- emobench's own counter (aten dispatch level) -------------------------------------------------------------

def _sdpa(args, out):
    return formulas.sdpa_macs(args[0].shape, args[1].shape, args[2].shape)


def _sdpa_backward(args, out):
    return formulas.sdpa_backward_macs(args[1].shape, args[2].shape, args[3].shape)


def _bn(training_arg: int | None):
    def count(args, out):
        training = bool(args[training_arg]) if training_arg is not None else False
        return formulas.norm_ops(args[0].shape, args[1] is not None, "batch_norm", training)

    return count


OWN_FORMULAS: dict[Any, Callable[[tuple, Any], int]] = {
    aten.convolution: lambda a, o: formulas.conv_macs(a[1].shape, o.shape, bool(a[6]), a[0].shape),
    aten.mm: lambda a, o: formulas.matmul_macs(a[0].shape, a[1].shape),
    aten.addmm: lambda a, o: formulas.matmul_macs(a[1].shape, a[2].shape),
    aten.bmm: lambda a, o: formulas.matmul_macs(a[0].shape, a[1].shape),
    aten.baddbmm: lambda a, o: formulas.matmul_macs(a[1].shape, a[2].shape),
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa,
    aten._scaled_dot_product_flash_attention: _sdpa,
    aten._scaled_dot_product_efficient_attention: _sdpa,
    aten._scaled_dot_product_cudnn_attention: _sdpa,
    aten._native_batch_norm_legit_no_training: _bn(None),
    aten._native_batch_norm_legit: _bn(5),
    aten.native_batch_norm: _bn(5),
    aten.native_layer_norm: lambda a, o: formulas.norm_ops(a[0].shape, a[2] is not None, "layer_norm"),
    aten.native_group_norm: lambda a, o: formulas.norm_ops(a[0].shape, a[1] is not None, "group_norm"),
    # backward (training steps): see the conventions in emobench.measure.formulas
    aten.convolution_backward: lambda a, o: formulas.conv_backward_macs(a[2].shape, a[0].shape, a[1].shape,
                                                                       bool(a[7]), a[10]),
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward,
    aten._scaled_dot_product_flash_attention_backward: _sdpa_backward,
    aten._scaled_dot_product_efficient_attention_backward: _sdpa_backward,
    aten._scaled_dot_product_cudnn_attention_backward: _sdpa_backward,
    aten.native_batch_norm_backward: lambda a, o: formulas.norm_backward_ops(a[1].shape, a[2] is not None,
                                                                            "batch_norm", a[9], bool(a[7])),
    aten.native_layer_norm_backward: lambda a, o: formulas.norm_backward_ops(a[1].shape, a[5] is not None,
                                                                            "layer_norm", a[7]),
    aten.native_group_norm_backward: lambda a, o: formulas.norm_backward_ops(a[1].shape, a[4] is not None,
                                                                            "group_norm", a[9]),
}
_OWN_PACKETS = {f._overloadpacket if hasattr(f, "_overloadpacket") else f: fn for f, fn in OWN_FORMULAS.items()}
#: whose outputs fvcore's ActivationCountAnalysis counts (its jit ops _convolution, addmm, bmm, matmul, linear, as
#: they reach the dispatcher)
_ACTIVATION_PACKETS = frozenset({aten.convolution, aten.addmm, aten.mm, aten.bmm})


@dataclass
class ModuleRecord:
    type: str
    output_shape: tuple[int, ...] | None = None
    macs: int = 0


@dataclass
class CountResult:
    """One counter's view of one forward pass. ``macs`` is None when the counter could not run."""

    counter: str
    method: str
    macs: int | None
    macs_without_handles: int | None = None
    handles: list[str] = field(default_factory=list)
    uncounted: list[str] = field(default_factory=list)  # ops with arithmetic that no formula covers
    not_counted_by_convention: list[str] = field(default_factory=list)  # element-wise ops
    by_operator: dict[str, int] = field(default_factory=dict)
    by_module: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    bias_adds: int | None = None  # bias additions in the forward pass (not included in ``macs``)
    #: elements output by convolutions and matrix products (fvcore's ActivationCountAnalysis convention)
    activations: int | None = None

    @property
    def status(self) -> str:
        if self.macs is None:
            return "unavailable"
        return "partial" if self.uncounted else "complete"


def _norm_outputs(x: torch.Tensor, *stats_shape: int):
    return torch.empty_like(x), x.new_empty(stats_shape), x.new_empty(stats_shape)


#: On the meta device torch runs normalisations and some activations as Python decompositions (milliseconds
#: each, most of a sweep point's count): their outputs' shapes are known, so the counter makes them directly.
#: Only the first output of each is read by the modules (the statistics are for backward).
_META_SHORTCUTS: dict[Any, Callable] = {
    aten.native_batch_norm: lambda x, *a: _norm_outputs(x, x.shape[1] if a[4] else 0),
    aten._native_batch_norm_legit_no_training: lambda x, *a: _norm_outputs(x, 0),
    aten.native_layer_norm: lambda x, shape, *a: (torch.empty_like(x),
                                                  *(x.new_empty((*x.shape[:x.dim() - len(shape)], *[1] * len(shape))),) * 2),
    aten.gelu: lambda x, *a: torch.empty_like(x),
    aten.silu: lambda x, *a: torch.empty_like(x),
}


class _OwnCounter(DispatchMode):
    def __init__(self, modules: dict[str, ModuleRecord]) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.modules = modules
        self.by_operator: Counter[str] = Counter()
        self.uncounted: set[str] = set()
        self.elementwise: set[str] = set()
        self.bias_adds = 0
        self.activations = 0
        self.meta = False  #: every tensor is on the meta device: shape-only shortcuts for slow meta kernels
        #: (innermost module path, operator, MACs) of every operator in execution order, when asked for
        self.sequence: list[tuple[str, str, int]] | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        shortcut = _META_SHORTCUTS.get(func._overloadpacket) if self.meta else None
        out = shortcut(*args) if shortcut is not None else func(*args, **(kwargs or {}))
        fn = _OWN_PACKETS.get(func._overloadpacket)
        name = _opname(func)
        if self.sequence is not None:
            first = out[0] if isinstance(out, (tuple, list)) else out
            self.sequence.append((self.stack[-1] if self.stack else "", name, int(fn(args, first)) if fn else 0))
        if fn is None:
            tally_uncharged(name, self.elementwise, self.uncounted)
            return out
        first = out[0] if isinstance(out, (tuple, list)) else out
        n = int(fn(args, first))
        if func._overloadpacket in _ACTIVATION_PACKETS:
            self.activations += first.numel()
        # Bias additions are not MACs; tallied so a counter that includes them (ptflops) can be reconciled.
        if func._overloadpacket in (aten.addmm, aten.baddbmm) and args[0] is not None:
            self.bias_adds += first.numel()
        elif func._overloadpacket is aten.convolution and args[2] is not None:
            self.bias_adds += first.numel()
        self.by_operator[name] += n
        for path in set(self.stack):
            self.modules[path].macs += n
        return out


def op_sequence(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str, int]]:
    """Every aten operator of one forward pass in execution order: (innermost module path, operator, emobench's
    MACs), the torch side of a per-part breakdown."""
    sequence: list[tuple[str, str, int]] = []
    count_emobench(model, x, sequence)
    return sequence


def count_emobench(model: nn.Module, x: torch.Tensor, sequence: list | None = None) -> tuple[CountResult, dict[str, ModuleRecord]]:
    """emobench's own exact count, per operator and per module (with output shapes); with ``sequence``, every
    operator is also appended to it (see :func:`op_sequence`)."""
    records: dict[str, ModuleRecord] = {name: ModuleRecord(type(m).__name__) for name, m in model.named_modules()}
    counter = _OwnCounter(records)
    counter.sequence = sequence
    counter.meta = x.device.type == "meta" and all(t.device.type == "meta" for t in (*model.parameters(), *model.buffers()))
    handles = []
    for name, m in model.named_modules():
        def pre(mod, inp, name=name):
            counter.stack.append(name)

        def post(mod, inp, out, name=name):
            counter.stack.pop()
            rec = records[name]
            if rec.output_shape is None and isinstance(out, torch.Tensor):
                rec.output_shape = tuple(out.shape)

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
    total = sum(counter.by_operator.values())
    result = CountResult(
        counter="emobench",
        method="aten dispatch (TorchDispatchMode), shape formulas in emobench.measure.formulas",
        macs=total,
        macs_without_handles=total,
        uncounted=sorted(counter.uncounted),
        not_counted_by_convention=sorted(counter.elementwise),
        by_operator=dict(counter.by_operator),
        by_module={k: v.macs for k, v in records.items()},
        bias_adds=counter.bias_adds,
        activations=counter.activations,
    )
    return result, records


@dataclass(frozen=True)
class FastCount:
    """Parameters, MACs and activations of one forward, counted on the meta device (nothing allocated)."""

    params: int
    macs: int
    activations: int
    uncounted: tuple[str, ...]


def count_fast(model: nn.Module, shape: tuple[int, ...]) -> FastCount:
    """emobench's own counter alone over a forward of ``model`` on an input of ``shape``, on the meta device when
    the model is there (sweeps count thousands of points this way): no jit trace, no second counter."""
    model.eval()  # inference counts (BatchNorm as in eval mode), as ``profile`` counts
    device = next(iter(model.parameters()), torch.empty(0)).device
    x = torch.empty(shape, device=device) if device.type == "meta" else torch.zeros(shape)
    own, _ = count_emobench(model, x)
    return FastCount(sum(p.numel() for p in model.parameters()), int(own.macs or 0), int(own.activations or 0),
                     tuple(own.uncounted))


@contextlib.contextmanager
def quiet_tracing():
    """fvcore traces with torch.jit, which warns on every call (deprecation, tracer warnings): not the user's concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+. is deprecated", category=FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


# --- fvcore -------------------------------------------------------------------------------------------------

def _fvcore_handles() -> dict[str, Callable]:
    from fvcore.nn.jit_handles import get_shape

    def sdpa(inputs, outputs):
        return formulas.sdpa_macs(get_shape(inputs[0]), get_shape(inputs[1]), get_shape(inputs[2]))

    def baddbmm(inputs, outputs):
        return formulas.matmul_macs(get_shape(inputs[1]), get_shape(inputs[2]))

    return {
        "aten::scaled_dot_product_attention": sdpa,
        "aten::_scaled_dot_product_flash_attention_for_cpu": sdpa,
        "aten::baddbmm": baddbmm,
    }


def count_fvcore(model: nn.Module, x: torch.Tensor) -> CountResult:
    """fvcore's ``FlopCountAnalysis`` (jit trace; the counter the EMO authors used), plus emobench's handles."""
    method = "fvcore FlopCountAnalysis (jit trace)"
    try:
        with quiet_tracing():  # fvcore scripts functions with torch.jit at import
            from fvcore.nn import FlopCountAnalysis
    except ImportError as err:  # pragma: no cover - a core dependency
        return CountResult("fvcore", method, None, error=f"fvcore is not installed: {err}")
    handles = _fvcore_handles()
    try:
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()), quiet_tracing():
            analysis = (
                FlopCountAnalysis(model, x)
                .set_op_handle(**handles)
                .unsupported_ops_warnings(False)
                .uncalled_modules_warnings(False)
                .tracer_warnings("none")
            )
            total = analysis.total()
            by_op = dict(analysis.by_operator())
            by_module = dict(analysis.by_module())
            unsupported = dict(analysis.unsupported_ops())
    except Exception as err:  # noqa: BLE001 - tracing failures are reported, not raised
        return CountResult("fvcore", method, None, error=f"{type(err).__name__}: {err}".splitlines()[0])
    handled = {k.split("::")[-1] for k in handles}
    added = sum(v for k, v in by_op.items() if k in handled)
    names = {k.split("::")[-1] for k in unsupported}
    return CountResult(
        counter="fvcore",
        method=method,
        macs=int(total),
        macs_without_handles=int(total - added),
        handles=sorted(k for k in handled if by_op.get(k)),
        uncounted=sorted(n for n in names if not _is_free(n)),
        not_counted_by_convention=sorted(n for n in names if _is_free(n)),
        by_operator={k: int(v) for k, v in by_op.items()},
        by_module={k: int(v) for k, v in by_module.items()},
    )


# --- ptflops (aten backend) --------------------------------------------------------------------------------

def _ptflops_handles() -> dict[Any, Callable]:
    own = dict(_OWN_PACKETS)
    for packet in (aten.convolution, aten.mm, aten.addmm, aten.bmm):
        own.pop(packet)  # ptflops has its own formulas for these (which also count biases)
    return own


def count_ptflops(model: nn.Module, x: torch.Tensor) -> CountResult:
    """ptflops' aten backend (TorchDispatchMode over mm/addmm/bmm/convolution), plus emobench's handles."""
    method = "ptflops aten backend (counts biases; attention/norms via emobench handles)"
    try:
        from ptflops.aten_engine import FlopCounterMode

        from emobench.measure.dispatch import without_dynamo_guard

        FlopCounterMode = without_dynamo_guard(FlopCounterMode)
    except ImportError as err:
        return CountResult("ptflops", method, None, error=f"ptflops is not installed: {err}")
    handles = _ptflops_handles()
    model = copy.deepcopy(model)  # ptflops leaves hooks on the model's children
    sink = io.StringIO()
    try:
        mode = FlopCounterMode(
            model,
            verbose=False,
            print_per_layer_stat=False,
            output_params={"print_params": {"file": sink}, "serialize_params": {"units": None, "precision": 2}},
            custom_hooks=handles,
        )
        with torch.no_grad(), mode:
            model(x)
        by_op = {p.__name__: int(v) for p, v in mode.flop_counts["Global"].items()}
        by_module = {k: int(sum(v.values())) for k, v in mode.flop_counts.items() if k != "Global"}
    except Exception as err:  # noqa: BLE001
        return CountResult("ptflops", method, None, error=f"{type(err).__name__}: {err}".splitlines()[0])
    handled = {p.__name__ for p in handles}
    total = sum(by_op.values())
    added = sum(v for k, v in by_op.items() if k in handled)
    by_module[""] = total
    return CountResult(
        counter="ptflops",
        method=method,
        macs=total,
        macs_without_handles=total - added,
        handles=sorted(k for k in handled if by_op.get(k)),
        by_operator=by_op,
        by_module=by_module,
    )


def count_all(model: nn.Module, x: torch.Tensor) -> tuple[list[CountResult], dict[str, ModuleRecord]]:
    own, records = count_emobench(model, x)
    return [own, count_fvcore(model, x), count_ptflops(model, x)], records
