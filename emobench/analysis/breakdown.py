"""Where the time goes: operator timings from a runtime's profiler (or from prefix differencing), attributed to
the model's modules, rolled up to stage and block, to the parts of every Meta Mobile block, and to operator
type, beside emobench's MAC count of each part.

The runtimes speak their own operator names and fuse what they like, but every one of them keeps, for each
operator it runs, the torch module it came from (profiler scopes, the ONNX exporter's name scopes, OpenVINO's
original layer names). Inside an M² block the formulations compute everything functionally, so a block's
operators are split into its parts by their kind and their order, anchored on the attention's softmax: the
compute operator (matmul or convolution) feeding the softmax computes the scores, the first one after it the
weighted sum, those before it the Q/K projection; after the attention come MLP_e, the depth-wise conv, SE and
MLP_s in the order the block's configuration gives. Element-wise operators belong to the part whose compute
operator they follow; transposes, reshapes and pads are the form's layout changes; the block's last addition
is the residual. The same rules split emobench's own per-operator MAC count of the form, so time and MACs are
attributed alike; a runtime that fuses parts into one kernel (OpenVINO's MHA, SDPA in eager torch) shows the
fused kernel as the "attention: fused core" part.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from emobench.columns import Column

SCHEMA = "breakdown/1"

#: the parts of an M² block, then what lies outside the blocks; in display order
M2_PARTS = ("norm", "attention: Q/K projection", "attention: scores + softmax", "attention: weighted sum",
            "attention: fused core", "MLP_e", "local DW-conv", "SE", "MLP_s", "residual", "layout")
PARTS = ("stem", *M2_PARTS, "head", "other")
#: the row that holds what no operator accounts for: headline median − attributed time (negative: the
#: profiler's operator times exceed the unprofiled run)
UNATTRIBUTED = "unattributed"
#: a breakdown closes when its attributed time is within this fraction of the same run's headline median
CLOSURE_TOLERANCE = 0.10

_KIND_PATTERNS = (  # first match wins; names of aten, ONNX / ONNX Runtime and OpenVINO operators, lower case
    ("attention", r"scaled_dot_product|flash_attention|^mha$|multiheadattention|^attention$"),
    ("softmax", r"softmax"),
    ("norm", r"layer_?norm|batch_?norm|group_?norm|^mvn$|^rms$|instancenorm|layernormalization"),
    ("conv", r"conv"),
    ("matmul", r"matmul|^gemm|^mm$|^bmm$|^addmm$|^baddbmm$|^linear$|fullyconnected|^fc$|^dot$"),
    ("layout", r"transpose|permute|reshape|^view|_view$|^pad$|constant_pad|^slice|^cat$|^concat|split|squeeze|"
               r"unsqueeze|flatten|reorder|^copy|^clone$|contiguous|^gather|^expand$|^t$|^unbind$|^select$|"
               r"^as_strided|^alias$|^detach$|^_to_copy$|^roll$|^stridedslice|^identity$|^shapeof$|^tile$|"
               r"^broadcast|^unfold$|^chunk$|^narrow$|^empty"),
    ("reduce", r"^mean$|reducemean|globalaveragepool|avg_?pool|^sum$|reducesum"),
    ("add", r"^add_?$|^add$"),
)


def op_kind(op: str) -> str:
    """The kind of a runtime's operator (``aten::linear``, ONNX Runtime's ``FusedConv``, OpenVINO's
    ``GroupConvolution``): attention, softmax, norm, conv, matmul, layout, reduce, add or elementwise."""
    name = op.lower().rsplit("::", 1)[-1].rsplit(".", 1)[-1]
    name = re.sub(r"^aten_|_default$|\.default$", "", name)
    for kind, pattern in _KIND_PATTERNS:
        if re.search(pattern, name):
            return kind
    return "elementwise"


@dataclass
class OpTime:
    """One operator as a runtime ran it: its name there, its type, the torch module path it came from ('' when
    the runtime named none), and its mean time per inference (ms); ``macs`` where emobench counted them."""

    name: str
    op: str
    scope: str
    ms: float
    macs: int | None = None


@dataclass(frozen=True)
class BlockInfo:
    """An M² block of the measured module: its path there, its label in the reference network (``stage2.1``),
    its stage and its configuration."""

    path: str
    label: str
    stage: str
    cfg: object


def _block_cfg(module: nn.Module):
    from emobench.nn.m2 import M2BlockConfig

    for candidate in (getattr(module, "cfg", None), getattr(getattr(module, "block", None), "cfg", None)):
        if isinstance(candidate, M2BlockConfig):
            return candidate
    return None


def block_scopes(model: nn.Module, reference: nn.Module | None = None) -> dict[str, BlockInfo]:
    """Every M² block of ``model`` (any formulation) by module path, labelled by its path in ``reference`` (the
    reference network it was derived from: a formulation keeps the reference's blocks in order, as a flat
    ``blocks.K``), else by its own path; its stage is the label's parent path."""
    def blocks_of(m: nn.Module) -> list[tuple[str, object]]:
        found: list[tuple[str, object]] = []
        for path, module in m.named_modules():
            cfg = _block_cfg(module)
            if cfg is not None and not any(path.startswith(p + ".") for p, _ in found):
                found.append((path, cfg))
        return found

    own = blocks_of(model)
    labels = [p for p, _ in blocks_of(reference)] if reference is not None and reference is not model else []
    if len(labels) != len(own):
        labels = [p for p, _ in own]
    labels = [label or "block" for label in labels]  # the model itself is one block
    return {path: BlockInfo(path, label, label.rsplit(".", 1)[0] if "." in label else label, cfg)
            for (path, cfg), label in zip(own, labels)}


def _inside(scope: str, path: str) -> bool:
    return path == "" or scope == path or scope.startswith(path + ".")


def _relative(scope: str, path: str) -> str:
    return scope if path == "" else scope[len(path) + 1:]


#: a block's sub-modules that compute one part whole (the reference block's, and the forms' channel norms)
SUBMODULE_PARTS = {"norm": "norm", "ln": "norm", "qk": "attention: Q/K projection", "sr": "attention: Q/K projection",
                   "sr_norm": "attention: Q/K projection", "v": "MLP_e", "conv_local": "local DW-conv", "se": "SE",
                   "proj": "MLP_s"}


def assign_parts(kinds: list[str], cfg, subs: list[str] | None = None) -> list[str]:
    """The M² part of each operator of one block, given the operators' kinds in execution order and, where the
    runtime names one, the block's sub-module each ran in (see the module docstring for the rules)."""
    subs = subs or [""] * len(kinds)
    parts = [SUBMODULE_PARTS.get(sub, "") for sub in subs]
    compute = [i for i, k in enumerate(kinds) if k in ("conv", "matmul", "attention") and not parts[i]]
    att = getattr(cfg, "attention", None)
    anchor = next((i for i, k in enumerate(kinds) if k in ("softmax", "attention")), None) if att is not None else None
    after = compute
    if anchor is not None:
        before = [i for i in compute if i < anchor]
        if kinds[anchor] == "attention":
            parts[anchor] = "attention: fused core"
            scores, weighted = None, anchor
        else:
            scores = before.pop() if before else None
            weighted = next((i for i in compute if i > anchor), None)
            for i in (scores, anchor):
                if i is not None:
                    parts[i] = "attention: scores + softmax"
            if weighted is not None:
                parts[weighted] = "attention: weighted sum"
        # MLP_e before the attention: the parallel cascade expands first, post-attention expands the values
        expand_first = bool(cfg.expand) and cfg.cascade == "parallel"
        expand_last = bool(cfg.expand) and cfg.cascade != "parallel" and not att.attn_pre
        for j, i in enumerate(before):
            first, last = j == 0, j == len(before) - 1
            parts[i] = "MLP_e" if (expand_first and first and len(before) > 1) or (expand_last and last and len(before) > 1) \
                else "attention: Q/K projection"
        after = [i for i in compute if i > (weighted if weighted is not None else anchor)]
    expected = []
    if cfg.expand and (att is None or (att.attn_pre and cfg.cascade != "parallel")):
        expected.append("MLP_e")
    if cfg.dw_kernel is not None:
        expected.append("local DW-conv")
    if cfg.se_ratio > 0:
        expected += ["SE", "SE"]
    expected.append("MLP_s")
    named = {parts[i] for i, k in enumerate(kinds) if k in ("conv", "matmul") and parts[i]}
    expected = [p for p in expected if p not in named]  # parts computed in their own sub-module are named already
    if after and expected:
        if len(after) == len(expected):
            labels = expected
        else:  # a runtime fused or split compute operators: MLP_s last, the rest in order
            head = expected[:-1] or ["MLP_s"]
            labels = [head[min(j, len(head) - 1)] for j in range(len(after) - 1)] + ["MLP_s"]
        for i, label in zip(after, labels):
            parts[i] = label
    last_compute = compute[-1] if compute else -1
    residual = None
    if cfg.has_skip:
        residual = next((i for i in range(len(kinds) - 1, last_compute, -1) if kinds[i] == "add"), None)
    current = "norm"
    for i, kind in enumerate(kinds):
        if parts[i]:
            current = parts[i]
            continue
        if i == residual:
            parts[i] = "residual"
        elif kind == "layout":
            parts[i] = "layout"
        elif kind == "norm" and current == "norm":  # the pre-norm; a norm after a conv belongs to that conv
            parts[i] = "norm"
        elif kind == "reduce" and cfg.se_ratio > 0:
            nxt = next((parts[j] for j in compute if j > i), "")
            parts[i] = "SE" if nxt == "SE" else current
        else:
            parts[i] = current
    return parts


@dataclass
class Attributed:
    """Operators with their block (label, stage), M² part and kind; ``blocks`` says whether the model had any."""

    rows: list[dict] = field(default_factory=list)
    has_blocks: bool = False


def attribute(ops: list[OpTime], model: nn.Module, reference: nn.Module | None = None) -> Attributed:
    """Each operator of ``ops`` (execution order) with its block, stage, part and kind. Outside the blocks:
    "stem" before the first block, "head" after the last, "other" between (a down-stream neck, say); a model
    without M² blocks gets its top-level module as its stage and no parts."""
    blocks = block_scopes(model, reference)
    order = list(blocks)
    where = []
    for op in ops:
        path = next((p for p in order if _inside(op.scope, p)), None)
        where.append(path)
    rows = []
    by_block: dict[str, list[int]] = {}
    for i, path in enumerate(where):
        if path is not None:
            by_block.setdefault(path, []).append(i)
    part = [""] * len(ops)
    for path, idx in by_block.items():
        subs = [_relative(ops[i].scope, path).split(".", 1)[0] for i in idx]
        for i, p in zip(idx, assign_parts([op_kind(ops[i].op) for i in idx], blocks[path].cfg, subs)):
            part[i] = p
    inside = [i for i, w in enumerate(where) if w is not None]
    first, last = (inside[0], inside[-1]) if inside else (len(ops), -1)
    for i, (op, path) in enumerate(zip(ops, where)):
        if path is not None:
            info = blocks[path]
            block, stage = info.label, info.stage
        else:
            top = op.scope.split(".", 1)[0] if op.scope else ""
            block, stage = op.scope or "(no module)", top or "(no module)"
            if blocks:
                part[i] = "stem" if i < first else "head" if i > last else "other"
                block = stage = part[i]
        rows.append({"name": op.name, "op": op.op, "kind": op_kind(op.op), "module": op.scope, "block": block,
                     "stage": stage, "part": part[i] if blocks else None, "ms": op.ms, "macs": op.macs})
    return Attributed(rows, bool(blocks))


# --- emobench's MACs of each part, on the torch side of the same formulation ----------------------------------


def counted_ops(model: nn.Module, x: torch.Tensor) -> list[OpTime]:
    """The form's aten operators in execution order with their module paths and emobench's MACs (no time)."""
    from emobench.measure.counters import op_sequence

    return [OpTime(name, name, scope, 0.0, macs) for scope, name, macs in op_sequence(model, x)]


def macs_by(rows: list[dict], key: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for r in rows:
        if r.get(key) is not None:
            totals[r[key]] = totals.get(r[key], 0) + int(r.get("macs") or 0)
    return totals


# --- roll-ups -------------------------------------------------------------------------------------------------

ROLLUP_COLUMNS = (
    Column("group", "group"), Column("ms", "time (ms)", "ms"), Column("time_share", "time share", "fraction"),
    Column("macs", "MACs", "MAC"), Column("macs_share", "MACs share", "fraction"),
    Column("gmacs_per_s", "GMAC/s", "GMAC/s"), Column("ops", "operators"), Column("note", "note"),
)
ROLLUPS = ("part", "block", "stage", "op")


def rollup(result: dict, by: str) -> pd.DataFrame:
    """The breakdown ``result`` (see :func:`summarise`) grouped by ``by`` (part, block, stage, op), with the
    unattributed remainder as its own row: time, its share of the headline median, MACs and their share, and
    the achieved GMAC/s (MACs / time; empty where either is missing)."""
    if by not in ROLLUPS:
        raise ValueError(f"unknown roll-up '{by}' (choose {', '.join(ROLLUPS)})")
    rows = result["rows"]
    headline = result.get("basis_ms", result["headline_ms"])
    macs = result.get("macs", {}).get(by, {}) if by != "op" else {}
    total_macs = result.get("total_macs")
    groups: dict[str, list] = {}
    for r in rows:
        key = r.get(by) if by != "op" else r["op"]
        if key is None:
            continue
        g = groups.setdefault(key, [0.0, 0, None])
        g[0] += r["ms"]
        g[1] += 1
        if r.get("noise_ms") is not None:  # prefix differencing: the passes' range, summed (an upper bound)
            g[2] = (g[2] or 0.0) + r["noise_ms"]
    if by == "part":
        order = [p for p in PARTS if p in groups or p in macs] + [p for p in groups if p not in PARTS]
    else:
        order = list(groups)
    # prefix differencing times cuts, not the runtime's operators: no operator count to give
    differenced = str(result.get("source", "")).startswith("prefix differencing")
    table = []
    for key in order:
        ms, n, noise = groups.get(key, [0.0, 0, None])
        m = macs.get(key)
        note = None
        if n == 0 and differenced:
            note = "no cut ends after it (timed with its neighbours)"
        elif n == 0:  # the form computes it, the runtime ran no operator of its own for it
            note = "in the fused attention core" if key in macs and m is None else "fused by the runtime"
        table.append({"group": key, "ms": ms, "time_share": ms / headline if headline else None, "macs": m,
                      "macs_share": m / total_macs if m is not None and total_macs else None,
                      "gmacs_per_s": m / (ms * 1e6) if m and ms > 0 else None, "ops": None if differenced else n,
                      "note": note,
                      "noise_ms": noise})
    rest = result["unattributed_ms"]
    table.append({"group": UNATTRIBUTED, "ms": rest, "time_share": rest / headline if headline else None,
                  "macs": None, "macs_share": None, "gmacs_per_s": None, "ops": None,
                  "note": "headline median − attributed" + (" (profiled operators exceed it)" if rest < 0 else ""),
                  "noise_ms": None})
    return pd.DataFrame(table)


def summarise(ops: list[OpTime], model: nn.Module, example: torch.Tensor, *, source: str, headline_ms: float | None,
              reference: nn.Module | None = None, beside_ms: float | None = None,
              profiled_ms: float | None = None, runs: int | None = None) -> dict:
    """The stored breakdown of one measurement: every operator attributed, emobench's MACs of every part, block
    and stage of the same formulation, and its closure (see :func:`_closure`)."""
    attributed = attribute(ops, model, reference)
    counted = attribute(counted_ops(model, example), model, reference)
    attributed_ms = sum(r["ms"] for r in attributed.rows)
    total_macs = sum(int(r["macs"] or 0) for r in counted.rows)
    macs = {by: macs_by(counted.rows, by) for by in ("part", "block", "stage")}
    fused = "attention: fused core"
    if any(r["part"] == fused for r in attributed.rows) and fused not in macs["part"]:
        # the runtime ran scores, softmax and weighted sum as one kernel: their MACs are that kernel's
        split = [p for p in ("attention: scores + softmax", "attention: weighted sum") if p in macs["part"]]
        macs["part"][fused] = sum(macs["part"][p] for p in split)
        macs["part"].update({p: None for p in split})
    return {"schema": SCHEMA, "source": source, "runs": runs, "profiled_ms": profiled_ms,
            **_closure(attributed_ms, headline_ms, beside_ms),  # never the profiled calls: they run slower
            "m2": attributed.has_blocks, "total_macs": total_macs, "macs": macs, "rows": attributed.rows}


def _closure(attributed_ms: float, headline_ms: float | None, beside_ms: float | None) -> dict:
    """How the parts add up. The basis is the whole network unprofiled, timed in the same worker beside the
    profiled calls (prefix differencing: the whole network in the same passes): a shared host drifts between
    workers, so that is what the parts must add up to; ``closure`` = attributed / basis, within
    :data:`CLOSURE_TOLERANCE` it closes. ``closure_headline`` compares with the record's headline median from the
    timed rounds of the same run. Shares and the unattributed row are of the basis."""
    basis = beside_ms if beside_ms is not None else headline_ms
    closure = attributed_ms / basis if basis else None
    return {"headline_ms": headline_ms, "basis_ms": basis, "attributed_ms": attributed_ms,
            "unattributed_ms": (basis - attributed_ms) if basis else 0.0, "closure": closure,
            "closure_headline": attributed_ms / headline_ms if headline_ms else None,
            "closure_tolerance": CLOSURE_TOLERANCE,
            "closes": closure is not None and math.isfinite(closure) and abs(closure - 1) <= CLOSURE_TOLERANCE}


def prefix_summary(passes: list[list[float]], model: nn.Module, example: torch.Tensor, *, headline_ms: float | None,
                   reference: nn.Module | None = None, parts: list[tuple[list[int], list[str]]] | None = None) -> dict:
    """The breakdown by prefix differencing: ``passes`` holds, per interleaved pass, the median ms of the network
    cut after 0, 1, …, N blocks and of the whole network (N + 2 figures). A block's time is the difference of
    consecutive cuts, the stem's the first cut, the head's the whole network minus the last cut; each is the
    median over the passes, with the passes' range as its noise. No operator is seen, so there is no operator
    type: stage and block roll-ups, and M² parts where ``parts`` gives in-block cuts (see :func:`_split_parts`)."""
    import statistics

    from emobench.nn.forms.prefix import generic_cuts

    stages = generic_cuts(model)  # a model outside the families: cut after each of its stages
    blocks = [(p, p, p) for p in stages] if stages else [(b.path, b.label, b.stage) for b in block_scopes(model, reference).values()]
    parts = parts or []
    expected = len(blocks) + 2 + sum(len(names) + 1 for _, names in parts)
    if not passes or any(len(p) != expected for p in passes):
        raise ValueError(f"expected {expected} timings per pass (stem, {len(blocks)} blocks, whole network"
                         + (", each distinct block's empty cut and in-block cuts)" if parts else ")"))
    labels = [("stem", "stem", "stem")] + blocks + [("head", "head", "head")]
    rows = []
    for j, (path, label, stage) in enumerate(labels):
        diffs = [p[j] - (p[j - 1] if j else 0.0) for p in passes]  # the last: whole network − the last cut
        rows.append({"name": f"cut {j}" if j < len(labels) - 1 else "whole network", "op": "prefix difference",
                     "kind": "difference", "module": path, "block": label, "stage": stage,
                     "part": "stem" if j == 0 else "head" if j == len(labels) - 1 else None,
                     "ms": statistics.median(diffs), "macs": None,
                     "noise_ms": max(diffs) - min(diffs) if len(diffs) > 1 else None})
    if parts:
        rows = _split_parts(rows, [p[len(blocks) + 2:] for p in passes], parts)
    counted = attribute(counted_ops(model, example), model, reference)
    whole = statistics.median(p[len(blocks) + 1] for p in passes)
    macs = {by: macs_by(counted.rows, by) for by in ("part", "block", "stage") if by != "part" or parts}
    if stages:  # by the module paths the cuts follow: the stem module, each stage, and the rest is the head
        per_cut = {c: sum(int(r["macs"] or 0) for r in counted.rows if r["module"] and _inside(r["module"], c))
                   for c in ("stem", *stages)}
        per_cut["head"] = sum(int(r["macs"] or 0) for r in counted.rows) - sum(per_cut.values())
        macs = {"block": per_cut, "stage": dict(per_cut)}
    source = "prefix differencing (the network cut after each " + ("stage" if stages else "block") + ", timed in interleaved passes"
    if parts:
        source += "; M² parts: each distinct block cut after each part, timed in the same passes on its own input, " \
                  "its in-network time split by those differences"
    return {
        "schema": SCHEMA, "source": source + ")",
        "runs": len(passes), "profiled_ms": whole, **_closure(sum(r["ms"] for r in rows), headline_ms, whole),
        "m2": bool(parts), "total_macs": sum(int(r["macs"] or 0) for r in counted.rows), "macs": macs, "rows": rows,
    }


def _split_parts(rows: list[dict], passes: list[list[float]], parts: list[tuple[list[int], list[str]]]) -> list[dict]:
    """Block rows (``rows[k + 1]`` is block k) split into M² parts. ``passes`` holds, per pass, for each distinct
    block in turn: an empty cut on its input, then the block cut after each of its parts (the last: the whole
    block). A part's isolated time is the median over passes of the difference between consecutive cuts (the
    first: less the empty cut); the block's in-network time is split in proportion (a negative difference
    counts as none), so the parts add up to the block exactly; each row keeps its isolated figure and noise."""
    import statistics

    out = list(rows)
    at = 0
    for blocks, names in parts:
        cols = [[p[at + j] for p in passes] for j in range(len(names) + 1)]
        at += len(names) + 1
        diffs = [[b - a for a, b in zip(cols[j], cols[j + 1])] for j in range(len(names))]
        isolated = [statistics.median(d) for d in diffs]
        total = sum(max(t, 0.0) for t in isolated)
        for k in blocks if total > 0 else ():  # no part measured above zero: the block stays whole
            row = rows[k + 1]
            scale = row["ms"] / total
            out[k + 1] = [{**row, "name": f"{row['block']}: {name}", "op": "in-block cut difference", "part": name,
                           "ms": max(t, 0.0) * scale, "isolated_ms": t,
                           "noise_ms": (max(d) - min(d)) * abs(scale) if len(d) > 1 else None}
                          for name, t, d in zip(names, isolated, diffs)]
    return [r for item in out for r in (item if isinstance(item, list) else [item])]
