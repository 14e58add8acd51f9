"""What one training step costs, for any ``nn.Module``: forward and backward MACs counted per operator and per
module, the memory of a step split into parameters, gradients, optimizer state and the activations kept for
backward, and the step's time split into forward, backward and optimizer.

Counting runs emobench's own aten-dispatch formulas (:mod:`emobench.measure.formulas`, backward conventions
there) over ``model(x)``, the loss and ``loss.backward()``; torch's ``ModuleTracker`` says which module's forward
or backward each operator belongs to. Memory is measured at the same dispatch level as inference memory
(:class:`~emobench.measure.memory.LiveTensorBytes`), and the activations are checked against a count of the
tensors autograd saves (``saved_tensors_hooks``).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from emobench.measure import formulas
from emobench.measure.counters import _OWN_PACKETS, _opname, tally_uncharged
from emobench.measure.dispatch import DispatchMode
from emobench.measure.memory import LiveTensorBytes

OPTIMIZERS = ("adamw", "sgd")
#: the ``--dtype`` of a training step: fp32, or the forward under CPU/CUDA bf16 autocast (weights stay fp32)
TRAIN_DTYPES = ("fp32", "bf16-autocast")
PHASES = ("forward", "backward")


# --- the step itself ----------------------------------------------------------------------------------------

def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    """AdamW as the EMO recipe trains (betas 0.9/0.999, weight decay 0.05), or SGD with momentum 0.9."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def loss_of(output, target: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy for a classifier's (N, classes) logits against ``target``; for any other output (dense
    maps, several tensors) the sum of the means of its floating-point tensors, which back-propagates through
    every output at the cost of a reduction."""
    if isinstance(output, torch.Tensor) and output.dim() == 2 and target is not None:
        return nn.functional.cross_entropy(output.float(), target)
    leaves = [t for t in tree_leaves(output) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not leaves:
        raise ValueError("the model returns no floating-point tensor to train on")
    return sum(t.float().mean() for t in leaves)


def loss_method(output) -> str:
    if isinstance(output, torch.Tensor) and output.dim() == 2:
        return "cross-entropy on the logits, random labels"
    return "sum of the outputs' means (not a classifier)"


def random_target(output, batch: int, seed: int = 0) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor) and output.dim() == 2:
        return torch.randint(0, output.shape[1], (batch,), generator=torch.Generator().manual_seed(seed))
    return None


def autocast(dtype: str, device: str = "cpu"):
    """The forward's precision context: nothing for fp32, bf16 autocast (the weights stay fp32) otherwise."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    if dtype == "bf16-autocast":
        return torch.autocast(device, dtype=torch.bfloat16)
    raise ValueError(f"unknown training dtype {dtype!r}; known: {', '.join(TRAIN_DTYPES)}")


def enable_checkpointing(model: nn.Module) -> str:
    """Gradient checkpointing on ``model`` (in place): the model's own ``set_grad_checkpointing`` (timm's API)
    where it has one, else every outermost M² block recomputed in backward (non-reentrant
    ``torch.utils.checkpoint``). Returns how; raises ValueError when the model offers neither."""
    from emobench.nn.m2 import M2Block

    if callable(getattr(model, "set_grad_checkpointing", None)):
        model.set_grad_checkpointing(True)
        return "the model's set_grad_checkpointing (timm API)"
    blocks = _outermost(model, M2Block)
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no M² blocks and no set_grad_checkpointing: "
                         "emobench cannot checkpoint it")
    for block in blocks:
        block.forward = _CheckpointedForward(block)
    return f"torch.utils.checkpoint around each of the {len(blocks)} M² blocks (non-reentrant)"


def _outermost(model: nn.Module, kind: type) -> list[nn.Module]:
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, kind):
                found.append(child)
            else:
                visit(child)

    visit(model)
    return found


class _CheckpointedForward:
    """A block's forward run under non-reentrant ``torch.utils.checkpoint``; an object holding the block (not a
    closure), so a deep copy of the model checkpoints its own copied blocks."""

    def __init__(self, block: nn.Module) -> None:
        self.block = block

    def __call__(self, *args, **kwargs):
        from torch.utils.checkpoint import checkpoint

        return checkpoint(type(self.block).forward, self.block, *args, use_reentrant=False, **kwargs)


# --- counting -----------------------------------------------------------------------------------------------

@dataclass
class PhaseCount:
    """emobench's MACs of one phase (forward or backward) of a training step."""

    macs: int = 0
    by_operator: Counter = field(default_factory=Counter)
    uncounted: set[str] = field(default_factory=set)
    not_counted_by_convention: set[str] = field(default_factory=set)


@dataclass
class TrainCount:
    forward: PhaseCount
    backward: PhaseCount
    #: module path ("" = the whole model) → MACs of its forward / of its backward
    by_module: dict[str, dict[str, int]]
    #: see :attr:`_TrainCounter.ungrouped_extra`
    ungrouped_extra: int = 0

    @property
    def ratio(self) -> float | None:
        return self.backward.macs / self.forward.macs if self.forward.macs else None


class _TrainCounter(DispatchMode):
    def __init__(self, tracker, names: dict[str, str]) -> None:
        super().__init__()
        self.tracker = tracker
        self.names = names  # ModuleTracker's "Class.child.grandchild" → the module path
        self.phase = "forward"
        self.phases = {p: PhaseCount() for p in PHASES}
        self.by_module: dict[str, dict[str, int]] = {}
        #: MACs a counter that takes a grouped convolution's weight gradient for an ungrouped one adds (torch's
        #: FlopCounterMode does: × groups), kept so the two counts can be reconciled exactly
        self.ungrouped_extra = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        count = self.phases[self.phase]
        fn = _OWN_PACKETS.get(func._overloadpacket)
        name = _opname(func)
        if fn is None:
            tally_uncharged(name, count.not_counted_by_convention, count.uncounted)
            return out
        first = out[0] if isinstance(out, (tuple, list)) else out
        n = int(fn(args, first))
        if func._overloadpacket is torch.ops.aten.convolution_backward and args[10][1] and args[9] > 1:
            weight_grad = formulas.conv_macs(args[2].shape, args[0].shape, bool(args[7]), args[1].shape)
            self.ungrouped_extra += weight_grad * (args[9] - 1)
        count.macs += n
        count.by_operator[name] += n
        for parent in self.tracker.parents:
            path = self.names.get(parent)
            if path is not None:
                self.by_module.setdefault(path, {p: 0 for p in PHASES})[self.phase] += n
        return out


def _tracker_names(model: nn.Module) -> dict[str, str]:
    """``ModuleTracker`` names a module by its class and child names ("EMO.stages.0"); this maps them back to
    module paths ("stages.0"; the root is "")."""
    root = type(model).__name__
    return {(f"{root}.{path}" if path else root): path for path, _ in model.named_modules()}


def count_train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None, dtype: str = "fp32") -> TrainCount:
    """emobench's MACs of one training step's forward (model and loss) and backward, per operator and per
    module; the model trains in place (its gradients are left set: the caller's copy)."""
    from torch.utils.module_tracker import ModuleTracker

    model.train()
    with ModuleTracker() as tracker:
        counter = _TrainCounter(tracker, _tracker_names(model))
        with counter:
            with autocast(dtype, x.device.type):
                loss = loss_of(model(x), target)
            counter.phase = "backward"
            loss.backward()
    return TrainCount(counter.phases["forward"], counter.phases["backward"], counter.by_module, counter.ungrouped_extra)


# --- memory -------------------------------------------------------------------------------------------------

def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages among ``tensors`` (views counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            seen[storage._cdata] = storage.nbytes()
    return sum(seen.values())


@contextlib.contextmanager
def saved_tensors(keep: Callable[[int], bool] = lambda key: True) -> Iterator[dict[int, int]]:
    """The storages autograd saves for backward while active, as {storage id: bytes}, those whose id ``keep``
    accepts (parameters and the input are not activations)."""
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if keep(storage._cdata):
            saved[storage._cdata] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield saved


@dataclass
class TrainMemory:
    """Bytes of one steady-state training step on the CPU (the optimizer's state already exists)."""

    parameters: int  #: numel × element size of every parameter (counted)
    gradients: int  #: the ``.grad`` tensors after backward (measured)
    optimizer_state: int  #: the optimizer's state tensors after a step (measured)
    activations: int  #: storages the forward created that are still live when it ends (measured)
    activations_saved: int  #: of those, the storages autograd saved for backward (counted by saved_tensors_hooks)
    output_and_loss: int  #: the output and the loss, live but not saved
    step_peak: int  #: the most live bytes the step created at once (forward + backward + optimizer)
    peak: int  #: parameters + optimizer state + buffers + step_peak: the step's peak training memory

    @property
    def other(self) -> int:
        """Live after the forward, neither saved for backward nor the output and loss (caches, leftovers)."""
        return self.activations - self.activations_saved - self.output_and_loss


def train_memory(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None, optimizer: str = "adamw",
                 dtype: str = "fp32") -> TrainMemory:
    """Memory of a training step of ``model`` (trained in place: the caller's copy): one step first so the
    optimizer's state exists, then a measured step with the gradients freed before it (``set_to_none``)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(optimizer, params)

    def forward():
        with autocast(dtype, x.device.type):
            output = model(x)
            return output, loss_of(output, target)

    forward()[1].backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    state = tensor_bytes(t for s in opt.state.values() for t in s.values())
    tracker = LiveTensorBytes()
    with tracker:
        with saved_tensors(tracker.created.__contains__) as saved:
            output, loss = forward()
        activations = tracker.live
        output_and_loss = sum(b for k, b in _storages((output, loss)).items() if k not in saved)
        del output
        loss.backward()
        gradients = tensor_bytes(p.grad for p in params if p.grad is not None)
        opt.step()
    step_peak = tracker.peak
    opt.zero_grad(set_to_none=True)
    weights = tensor_bytes([*model.parameters(), *model.buffers()])
    return TrainMemory(tensor_bytes(model.parameters()), gradients, state, activations, sum(saved.values()),
                       output_and_loss, step_peak, weights + state + step_peak)


def _storages(out) -> dict[int, int]:
    return {t.untyped_storage()._cdata: t.untyped_storage().nbytes()
            for t in tree_leaves(out) if isinstance(t, torch.Tensor)}


def saved_bytes_estimate(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Bytes autograd saves for backward in one forward of ``model`` (built on the meta device) for an input
    of ``shape``: the activation memory of a training step, estimated without allocating anything."""
    x = torch.empty(shape, device="meta")
    given = {t.untyped_storage()._cdata for t in (x, *model.parameters(), *model.buffers())}
    model.train()
    with saved_tensors(lambda key: key not in given) as saved:
        model(x)
    return sum(saved.values())


def cuda_train_peak(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None, optimizer: str,
                    dtype: str) -> int:
    """Peak bytes the CUDA caching allocator handed out over one steady-state step (model and inputs on the GPU)."""
    if not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available")
    model.train()
    opt = make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad])
    for measured in (False, True):
        if measured:
            torch.cuda.synchronize(x.device)
            torch.cuda.reset_peak_memory_stats(x.device)
        with autocast(dtype, "cuda"):
            loss = loss_of(model(x), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize(x.device)
    return torch.cuda.max_memory_allocated(x.device)


# --- time ---------------------------------------------------------------------------------------------------

@dataclass
class StepTimes:
    """Seconds per phase of every timed step (warm-up steps not included), and the untimed first step."""

    forward: list[float]
    backward: list[float]
    optimizer: list[float]
    first_step_s: float  # the first step (with torch.compile: compilation included)
    threads: int

    @property
    def step(self) -> list[float]:
        return [f + b + o for f, b, o in zip(self.forward, self.backward, self.optimizer)]

    def median_ms(self, phase: str) -> float:
        return statistics.median(getattr(self, phase)) * 1e3


def time_steps(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None, optimizer: str = "adamw",
               dtype: str = "fp32", steps: int = 10, warmup: int = 3, threads: int | None = None,
               progress: Callable[[int], None] | None = None) -> StepTimes:
    """Time ``steps`` training steps after ``warmup`` untimed ones, each split into forward (model and loss),
    backward and optimizer (step and zeroing the gradients); CUDA is synchronised at each boundary."""
    if threads is not None:
        torch.set_num_threads(threads)
    model.train()
    opt = make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad])
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    phases: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": []}
    first = 0.0
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with autocast(dtype, x.device.type):
            loss = loss_of(model(x), target)
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        t3 = time.perf_counter()
        if i == 0:
            first = t3 - t0
        if i >= warmup:
            for phase, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2)):
                phases[phase].append(dt)
        if progress:
            progress(i + 1)
    return StepTimes(phases["forward"], phases["backward"], phases["optimizer"], first, torch.get_num_threads())
