"""Composite views of library results for the CLI: several tables per result, in every output format."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
from rich.console import Console

from emobench.analysis.breakdown import ROLLUP_COLUMNS, rollup
from emobench.results.query import COMPARE_COLUMNS, COMPARE_SCHEMA
from emobench.results.record import SCHEMA as BENCH_SCHEMA
from emobench.results.record import (EVAL_SCHEMA, EVAL_UNITS, UNITS, BenchRecord, eval_table, flat,
                                     records_table)
from emobench.runs.profile import LAYER_COLUMNS
from emobench.runs.profile import SCHEMA as PROFILE_SCHEMA
from emobench.runs.train import SCHEMA as TRAIN_SCHEMA
from emobench.report.render import Column, Format, format_for, machine_frame, rich_table, to_text, write_text

# Machine-readable schemas: one name per command output, bumped when a key changes meaning or disappears
# (adding keys keeps the version). Documented in docs/output.md.
# /2 of zoo_list, zoo_show, rf, mpl_stages and table (and profile/3): sizes written "3x224x224" became one
# number per axis (input_c/input_h/input_w, output_h/output_w, rf_h/rf_w, map_h/map_w, …).
SCHEMAS = {
    "zoo_list": "emobench.zoo_list/2", "zoo_show": "emobench.zoo_show/2", "zoo_load": "emobench.zoo_load/1",
    "profile": PROFILE_SCHEMA, "rf": "emobench.rf/2", "erf": "emobench.erf/1", "mpl": "emobench.mpl/1",
    "mpl_stages": "emobench.mpl_stages/2", "modules": "emobench.modules/1", "table": "emobench.table/2",
    "report": "emobench.report/1", "eval": EVAL_SCHEMA, "compare": COMPARE_SCHEMA,
    "bench": BENCH_SCHEMA, "breakdown": "emobench.breakdown/1", "train": TRAIN_SCHEMA,
}

# Columns by command: the library's display label, its key in JSON/CSV and its unit. Labels not listed
# here get a derived key (render.column_for), which the tests hold to snake_case.
COLUMNS: dict[str, tuple[Column, ...]] = {
    "zoo_list": (
        Column("name", "name"), Column("family", "family"), Column("params", "params", "count"),
        Column("input_c", "C", "channels"), Column("input_h", "H", "pixels"), Column("input_w", "W", "pixels"),
        Column("tags", "tags"), Column("summary", "summary"),
    ),
    "zoo_show": (
        Column("block", "block"), Column("widths", "in→mid→out", "channels in→mid→out"),
        Column("dw", "dw", "kernel x kernel, stride"), Column("norm_act", "norm/act"), Column("attention", "attention"),
        Column("heads", "heads", "count"), Column("skip", "skip"), Column("output_h", "output H", "pixels"),
        Column("output_w", "output W", "pixels"), Column("params", "params", "count"),
    ),
    "zoo_load": (
        Column("model", "model"), Column("checkpoint", "checkpoint"), Column("loaded_from", "loaded from"),
        Column("tensors", "tensors", "count"), Column("params", "params", "count"),
    ),
    "rf": (
        Column("layer", "layer"), Column("stage", "stage"), Column("op", "op"),
        Column("output_h", "output H", "pixels"), Column("output_w", "output W", "pixels"),
        Column("jump", "jump", "input pixels"), Column("rf_h", "rf H", "input pixels"),
        Column("rf_w", "rf W", "input pixels"), Column("rf_unclipped_h", "rf unclipped H", "input pixels"),
        Column("rf_unclipped_w", "rf unclipped W", "input pixels"), Column("start", "start", "input pixels"),
        Column("coverage", "coverage", "fraction of input pixels"), Column("centre_global", "centre global"),
        Column("all_global", "all global"), Column("method", "method"),
    ),
    "erf": (
        Column("model", "model"), Column("output", "output"), Column("images", "images", "count"),
        Column("skipped", "skipped", "count"),
        *(Column(f"area_ratio_t{t}", f"r(t={t}%)", "fraction of the input area") for t in (20, 30, 50, 99)),
    ),
    "mpl": (
        Column("block", "block"), Column("kind", "kind"), Column("width", "W", "tokens per side"),
        Column("mpl", "MPL", "steps (null: never connects)"), Column("mean_path", "mean path", "steps"),
        Column("paper_asymptotic", "paper (asymptotic)", "steps"), Column("kernel", "k", "pixels"),
        Column("window", "w", "tokens per side"),
    ),
    "mpl_stages": (
        Column("stage", "stage"), Column("map_h", "map H", "pixels"), Column("map_w", "map W", "pixels"),
        Column("blocks", "blocks", "count"),
        Column("kind", "kind"), Column("mpl", "MPL", "steps (null: never connects)"),
        Column("mean_path", "mean path", "steps"), Column("connects_within_stage", "connects within stage"),
    ),
    "modules": (
        Column("module", "module"), Column("params_formula", "params (formula)", "count"),
        Column("params_built", "params (built)", "count"), Column("flops_formula", "FLOPs (formula)", "FLOPs (2 × MACs)"),
        Column("flops_counted", "FLOPs (counted)", "FLOPs (2 × MACs)"), Column("mpl_exact", "MPL (exact)", "steps"),
        Column("mpl_paper", "MPL (paper)", "steps"),
    ),
    "table": (
        Column("measured_by", "measured by"), Column("measured_latency", "measured latency", "ms"),
        Column("params", "params (formula)", "count"),
    ),
    "report": (Column("path", "path"), Column("what", "what"), Column("machine_dependent", "machine dependent")),
    "compare": COMPARE_COLUMNS,
    "profile_layers": LAYER_COLUMNS,  # the per-layer table of `profile`, owned by ModelProfile
    "breakdown": (
        Column("model", "model"), Column("backend", "backend"), Column("form", "form"), Column("dtype", "dtype"),
        Column("batch", "batch", "images"), Column("threads", "threads", "count"), Column("method", "method"),
        Column("by", "by"), *ROLLUP_COLUMNS, Column("noise_ms", "noise (ms)", "ms"),
    ),
}


#: Screen-only sizes: per table, (label, keys) groups whose numbers the screen shows as one "3x224x224" column.
#: JSON and CSV keep one number per axis (the library results hold only the numbers).
JOINED = {
    "zoo_list": (("input", ("input_c", "input_h", "input_w")),),
    "zoo_show": (("output", ("output_h", "output_w")),),
    "rf": (("output", ("output_h", "output_w")), ("rf", ("rf_h", "rf_w")),
           ("rf unclipped", ("rf_unclipped_h", "rf_unclipped_w"))),
    "mpl_stages": (("map", ("map_h", "map_w")),),
    "profile_layers": (("output", ("output_c", "output_h", "output_w")),),
}


def size_text(values) -> str | None:
    """``(3, 224, 224)`` → ``"3x224x224"``; missing axes left out (``(1000, None, None)`` → ``"1000"``); None
    when there is none."""
    present = [str(int(v)) for v in values if v is not None and not pd.isna(v)]
    return "x".join(present) or None


def display_view(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """``df`` (a library result of table ``name``, columns as keys or labels) for the screen and Markdown: each
    :data:`JOINED` group of numbers as one compact column in place of its first, e.g. ``rf_h``, ``rf_w`` → ``rf``
    = ``"9x9"``. The other columns keep their own names (``emit`` labels them)."""
    by_key = {c.key: c for c in COLUMNS.get(name, ())}
    out = df.copy()
    for label, keys in JOINED.get(name, ()):
        names = [k if k in out.columns else by_key[k].label if k in by_key else k for k in keys]
        if not all(n in out.columns for n in names):
            continue
        joined = [size_text(row) for row in out[names].itertuples(index=False)]
        at = out.columns.get_loc(names[0])
        out = out.drop(columns=names)
        out.insert(at, label, pd.Series(joined, index=out.index, dtype=object))
    return out


def shown(df: pd.DataFrame, name: str, fmt: Format | None, output: Path | None) -> pd.DataFrame:
    """``df`` as ``fmt`` shows it: joined sizes (:func:`display_view`) on screen and in Markdown, the numbers
    as they are in JSON and CSV."""
    return df if format_for(fmt, output) in (Format.json, Format.csv) else display_view(df, name)


def human(value, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "bytes":
        return f"{value / 2**20:,.2f} MiB"
    if unit in ("MACs", "FLOPs", "count", "elements"):
        for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
            if abs(value) >= scale:
                return f"{value:,} ({value / scale:.4g} {suffix})"
        return f"{value:,}"
    if unit == "ms":
        return f"{value:.3f}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _metrics_view(profile) -> pd.DataFrame:
    rows = [
        {"metric": k, "value": human(m.value, m.unit), "unit": m.unit, "method": m.method, "status": m.status, "note": m.note}
        for k, m in profile.metrics.items()
    ]
    return pd.DataFrame(rows)


def _counters_view(profile) -> pd.DataFrame:
    df = profile.counters_frame().drop(columns=["model", "FLOPs (2×MACs)"])
    df["gap vs emobench"] = [None if pd.isna(g) else f"{g:+.3%}" for g in df["gap vs emobench"]]
    return df


def _layers_view(profile) -> pd.DataFrame:
    df = display_view(profile.layers, "profile_layers")  # output "24x112x112" (C x H x W) on screen
    df["share"] = [None if pd.isna(s) else f"{s:.1%}" for s in df["share"]]
    return df


def render_profiles(profiles: list, fmt: Format | None, output: Path | None, env: dict, layers: bool, console: Console) -> None:
    """table/md: per model, the metrics, the three counters and the per-layer table, then warnings.
    json: the whole structure (schema ``emobench.profile/3``). csv: one long metrics table, or with ``layers``
    the per-layer table of every model."""
    from emobench.runs.profile import SCHEMA

    fmt = format_for(fmt, output)
    if fmt is Format.json:
        _, layer_units = machine_frame(profiles[0].layers if profiles else pd.DataFrame(), COLUMNS["profile_layers"])
        meta = {"schema": SCHEMA, "environment": env, "units": {"layers": layer_units}}
        text = json.dumps({"meta": meta, "profiles": [p.to_dict() for p in profiles]}, indent=2, default=str)
        _out(text + "\n", output)
        return
    if fmt is Format.csv:
        if layers:
            df = pd.concat([p.layers_table().assign(model=p.model) for p in profiles], ignore_index=True)
        else:
            frames = []
            for p in profiles:
                counters = p.counters_frame()
                frames.append(p.metrics_frame())
                frames.append(pd.DataFrame({
                    "model": p.model, "metric": [f"macs[{c}]" for c in counters["counter"]], "value": counters["MACs"],
                    "unit": "MACs", "method": [c.method for c in p.counters], "status": counters["status"], "note": "",
                }))
            df = pd.concat(frames, ignore_index=True)
        _out(to_text(df, Format.csv), output)
        return
    sections = []
    for p in profiles:
        title = f"{p.model} ({p.form}) at {'x'.join(map(str, p.input_shape))}"
        sections.append((title, _metrics_view(p)))
        sections.append((f"{p.model}: MACs by counter (unit MACs; FLOPs = 2 × MACs)", _counters_view(p)))
        if len(p.parts):
            parts = p.parts.copy()
            parts["share"] = [None if pd.isna(s) else f"{s:.1%}" for s in parts["share"]]
            sections.append((f"{p.model}: per part (MACs by emobench)", parts))
        if len(p.layers):
            sections.append((f"{p.model}: per layer (MACs by emobench)", _layers_view(p)))
    _sections_out(sections, [f"{p.model}: {w}" for p in profiles for w in p.warnings], fmt, output, env, console)


def _sections_out(sections: list[tuple[str, pd.DataFrame]], warnings: list[str], fmt: Format, output: Path | None,
                  env: dict, console: Console) -> None:
    """Titled tables then warnings, as Markdown or as rich tables (on screen, or as text into ``output``)."""
    if fmt is Format.md:
        text = "".join(f"### {t}\n\n{to_text(df, Format.md)}\n" for t, df in sections)
        if warnings:
            text += "### Warnings\n\n" + "".join(f"- {w}\n" for w in warnings)
        _out(text, output)
        return
    target = console if output is None else Console(file=io.StringIO(), width=200, record=True)
    for t, df in sections:
        target.print(rich_table(df, title=t))
    for w in warnings:
        target.print(f"[yellow]warning:[/] {w}", highlight=False)
    target.print(f"[dim]torch {env['torch']}, {env['threads']} threads, {env['cpu']}[/]")
    if output is not None:
        write_text(target.export_text(), output)


def _estimate_view(cost) -> pd.DataFrame:
    est = cost.estimate
    inputs = est["inputs"]
    rows = [{"figure": "training FLOPs", "value": human(est["train_flops"], "FLOPs"), "method": est["train_flops_method"]}]
    if "time_here_s" in est:
        rows.append({"figure": "time on this machine", "value": f"{est['time_here_s'] / 86400:,.1f} days",
                     "method": est["time_here_method"]})
    rows.append({"figure": "inputs", "value": f"{inputs['epochs']} epochs × {inputs['steps_per_epoch']:,} steps × "
                 f"batch {inputs['batch']:,}", "method": inputs["source"]})
    return pd.DataFrame(rows)


def render_train_costs(costs: list, fmt: Format | None, output: Path | None, env: dict, layers: bool,
                       console: Console) -> None:
    """table/md: per model, the metrics (FLOPs, memory split, time split), the operators, the per-layer
    forward/backward MACs and the paper-scale estimate. json: the whole structure (schema
    ``emobench.train/1``). csv: one long metrics table, or with ``layers`` the per-layer table of every model."""
    from emobench.runs.train import LAYER_COLUMNS as TRAIN_LAYERS

    fmt = format_for(fmt, output)
    if fmt is Format.json:
        _, layer_units = machine_frame(costs[0].layers if costs else pd.DataFrame(), TRAIN_LAYERS)
        meta = {"schema": TRAIN_SCHEMA, "environment": env, "units": {"layers": layer_units}}
        _out(json.dumps({"meta": meta, "train_costs": [c.to_dict() for c in costs]}, indent=2, default=str) + "\n", output)
        return
    if fmt is Format.csv:
        frames = [c.layers_table().assign(model=c.model) if layers else c.metrics_frame() for c in costs]
        _out(to_text(pd.concat(frames, ignore_index=True), Format.csv), output)
        return
    sections = []
    for c in costs:
        s = c.settings
        how = ", ".join([s["optimizer"], s["dtype"], *(["gradient checkpointing"] if s["checkpointing"] else []),
                         *(["torch.compile"] if s["compile"] else [])])
        sections.append((f"{c.model} training step at {'x'.join(map(str, c.input_shape))} ({how}; loss: {s['loss']})",
                         _metrics_view(c)))
        ops = c.operators.copy()
        ops["share"] = [None if pd.isna(v) else f"{v:.1%}" for v in ops["share"]]
        sections.append((f"{c.model}: MACs by operator and phase", ops))
        if len(c.layers):
            view = c.layers.copy()
            view["bwd / fwd"] = [None if pd.isna(v) else f"{v:.2f}" for v in view["bwd / fwd"]]
            sections.append((f"{c.model}: per layer (MACs by emobench)", view))
        sections.append((f"{c.model}: paper-scale estimate", _estimate_view(c)))
    _sections_out(sections, [f"{c.model}: {w}" for c in costs for w in c.warnings], fmt, output, env, console)


def _out(text: str, output: Path | None) -> None:
    if output is None:
        print(text, end="")
    else:
        write_text(text, output)


#: units of the comparison tables' typed columns whose labels carry none (the measured input)
TABLE_UNITS = {"input_c": "channels", "input_h": "pixels", "input_w": "pixels"}


def table_columns(result) -> tuple[Column, ...]:
    """The columns of a typed comparison table (``tables.ComparisonTable``): keys as typed, labels as the screen
    shows them, units from the reported table's labels (``Params (M)`` → ``M``; ``Δ %`` → ``%``)."""
    from emobench.report.render import column_for

    if result.reported is None:
        return COLUMNS.get(result.name, ())
    from emobench.report.tables import display_labels

    labels = display_labels(result.reported)
    columns = []
    for key in result.data.columns:
        if key.startswith("latency_ms_"):
            columns.append(Column(key, f"{key.removeprefix('latency_ms_')} ms (measured)", "ms"))
            continue
        label = labels.get(key, key.replace("_", " "))
        columns.append(Column(key, label, TABLE_UNITS.get(key) or column_for(label).unit))
    return tuple(columns)


# --- benchmark and eval records ----------------------------------------------------------------------------


def records_frame(records: list[BenchRecord] | pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """The table people read: one row per measurement under human labels (scripts: :func:`records_table`)."""
    df = records_table(records, history)
    if df.empty:
        return pd.DataFrame()
    out = pd.DataFrame(
        {
            "model": df["model"], "backend": df["backend"], "form": df["form"], "batch": df["batch"],
            "threads": df["threads"], "res": df["resolution"], "median ms": df["median_ms"], "p10 ms": df["p10_ms"],
            "p90 ms": df["p90_ms"], "spread": df["round_spread"], "±CI %": df["ci_pct"], "rounds": df["rounds"],
            "host spread": df["sentinel_spread"], "host varied": df["host_varied"], "× sentinel": df["sentinel_ratio"],
            "CV": df["cv"], "noisy": df["noisy"],
            "img/s": df["throughput"], "× torch": df["ratio_to_torch"], "× official": df["ratio_to_official"],
            "max |Δ|": df["parity_max_abs"], "precision": df["precision"], "load s": df["load_s"],
            "first ms": df["first_ms"], "RSS MB": df["peak_rss_mb"], "export s": df["export_s"],
            "MB": df["artifact_bytes"] / 1e6, "cached": df["cached"], "× fp32": df["ratio_to_fp32"],
            "size × fp32": df["size_ratio_to_fp32"], "agreement": df["top1_agreement"], "cosine": df["logit_cosine"],
            "status": df["status"], "note": df["error"],
        }
    )
    for optional in ("× official", "× fp32", "size × fp32", "agreement", "cosine", "±CI %", "host spread", "host varied",
                     "× sentinel"):
        if out[optional].isna().all():
            out = out.drop(columns=[optional])
    return out


#: the columns of the screen table (files and JSON keep every column)
SCREEN_COLUMNS = ["model", "backend", "form", "batch", "threads", "median ms", "p10 ms", "p90 ms", "spread", "±CI %",
                  "rounds", "host spread", "× sentinel",
                  "× torch", "× official", "× fp32", "size × fp32", "agreement", "cosine", "max |Δ|", "precision",
                  "load s", "first ms", "RSS MB", "status", "note"]


def screen_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[c for c in SCREEN_COLUMNS if c in frame.columns]]


def explain_lines(records: list[BenchRecord]) -> list[tuple[str, str, list[str]]]:
    """Per measured record: (what, the runtime's one-line summary, its fallback operators as 'op ×n')."""
    out = []
    for r in records:
        if r.status == "skipped" or not r.explain:
            continue
        fallback = [f"{op} ×{n}" for op, n in sorted(r.explain.get("fallback", {}).items(), key=lambda kv: -kv[1])]
        what = f"{r.model} · {r.backend} · {r.form} · b{r.batch} t{r.threads}"
        precisions = r.explain.get("precisions") or {}
        summary = r.explain.get("summary", "")
        if precisions:
            summary += " (" + ", ".join(f"{p}: {n}" for p, n in precisions.items()) + " layers)"
        floating = r.explain.get("float") or {}
        if floating:  # int8: the compute operators that stayed in float
            summary += "; stayed float: " + ", ".join(f"{op} ×{n}" for op, n in sorted(floating.items(), key=lambda kv: -kv[1]))
        out.append((what, summary, fallback))
    return out


def eval_frame(records: list[BenchRecord]) -> pd.DataFrame:
    """The screen table of ``emobench eval``: accuracy as percentages, agreement with eager fp32 torch."""
    df = eval_table(records)
    pct = lambda col: [None if v is None or v != v else round(100 * v, 2) for v in df[col]]  # noqa: E731
    return pd.DataFrame({
        "model": df["model"], "backend": df["backend"], "form": df["form"], "dtype": df["dtype"], "images": df["images"],
        "skipped": df["images_skipped"], "top-1 %": pct("top1"), "top-5 %": pct("top5"),
        "agreement %": pct("top1_agreement"), "cosine": df["logit_cosine"], "status": df["status"], "note": df["error"],
    })


def stored_records_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``emobench results list`` on screen: when and where each record was measured, then :func:`records_frame`."""
    view = records_frame(df)
    if not view.empty:
        view.insert(0, "machine", df["machine"].values)
        view.insert(0, "when", pd.to_datetime(pd.Series(df["created"], dtype=float), unit="s")
                    .dt.strftime("%Y-%m-%d %H:%M").values)
    return view


def records_output(records, history: pd.DataFrame | None, shown: Format, store: str | None):
    """(frame, meta, schema) of benchmark records as ``shown``: JSON/CSV every field under its stable key
    (schema emobench.bench/1, explain reports included; CSV cells of JSON fields as JSON text), the screen
    the readable columns."""
    if shown in (Format.json, Format.csv):
        df = records_table(records, history)
        return (flat(df) if shown is Format.csv else df), {"units": UNITS, "store": store}, BENCH_SCHEMA
    df = records_frame(records, history)
    return (screen_frame(df) if shown is Format.table else df), {"store": store}, None


def eval_output(records, shown: Format, store: str | None):
    """(frame, meta, schema) of evaluation records as ``shown`` (JSON/CSV: schema emobench.eval/1)."""
    if shown in (Format.json, Format.csv):
        return eval_table(records), {"units": EVAL_UNITS, "store": store}, EVAL_SCHEMA
    return eval_frame(records), {"store": store}, None


# --- where the time goes (bench --breakdown, results breakdown) ----------------------------------------------

_BREAKDOWN_KEYS = ("model", "backend", "form", "dtype", "batch", "threads")


def _record_rows(records) -> list[dict]:
    if isinstance(records, pd.DataFrame):
        return records.to_dict("records")
    return [r if isinstance(r, dict) else r.__dict__ for r in records]


def newest_breakdowns(records: pd.DataFrame) -> pd.DataFrame:
    """Stored records that carry a breakdown, the newest of each model, backend, form, dtype, batch and threads."""
    if records.empty:
        return records
    measured = records[[bool(b) for b in records["breakdown"]]]
    return measured.sort_values("created").drop_duplicates(list(_BREAKDOWN_KEYS), keep="last")


def breakdown_default_by(result: dict) -> str:
    """The roll-up a breakdown is shown by first: the M² parts where it has them, else the blocks."""
    return "part" if result.get("m2") else "block"


def breakdown_output(records, by: str | None = None, method: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Every breakdown of ``records`` (records or stored rows) as one long table: the record's keys, the method,
    and the roll-up ``by`` (part, block, stage, op; None: each breakdown's own default) with the unattributed
    row; and ``meta.breakdowns``: per breakdown its source, the headline median, the attributed time and the
    closure against it, and errors of methods that could not run."""
    frames, summaries = [], []
    for rec in _record_rows(records):
        for name, result in (rec.get("breakdown") or {}).items():
            if method is not None and name != method:
                continue
            keys = {k: rec.get(k) for k in _BREAKDOWN_KEYS}
            if "error" in result:
                summaries.append({**keys, "method": name, "error": result["error"]})
                continue
            shown_by = by or breakdown_default_by(result)
            if shown_by == "part" and not result.get("m2"):
                summaries.append({**keys, "method": name, "error": f"{result['source']}: no M² parts (use --by block)"})
                continue
            table = rollup(result, shown_by)
            frames.append(table.assign(**keys, method=name, by=shown_by))
            summaries.append({**keys, "method": name, "source": result["source"], "by": shown_by,
                              **{k: result.get(k) for k in ("headline_ms", "basis_ms", "attributed_ms", "unattributed_ms",
                                                          "closure", "closure_headline", "closure_tolerance", "closes",
                                                          "profiled_ms", "runs")}})
    columns = [c.key for c in COLUMNS["breakdown"]]
    df = pd.concat(frames, ignore_index=True).reindex(columns=columns) if frames else pd.DataFrame(columns=columns)
    return df, {"breakdowns": summaries}


def breakdown_caption(summary: dict) -> str:
    """One line on a breakdown: what measured it and how its parts close on the same run's headline median."""
    what = " · ".join(str(summary[k]) for k in ("model", "backend", "form", "dtype")) + \
        f" b{summary['batch']} t{summary['threads']} · {summary['method']}"
    if "error" in summary:
        return f"{what}: not measured ({summary['error']})"
    closure = summary.get("closure")
    verdict = "" if closure is None else (
        f"closure {closure:.3f} ({'within' if summary.get('closes') else 'OUTSIDE'} ±{100 * summary['closure_tolerance']:.0f} %)")
    basis = summary.get("basis_ms") or summary["headline_ms"]
    headline = summary.get("closure_headline")
    return (f"{what}: {summary['source']}; attributed {summary['attributed_ms']:.3f} of {basis:.3f} ms (the whole "
            f"network unprofiled, beside it), {verdict}; the record's headline median {summary['headline_ms']:.3f} ms"
            + (f" (attributed / headline {headline:.3f})" if headline else "")
            + f"; profiled calls took {summary['profiled_ms']:.3f} ms")


def crosscheck_lines(records) -> list[str]:
    """One line per record with a vendor cross-check: the tool's median against emobench's, and what differed."""
    lines = []
    for rec in _record_rows(records):
        check = rec.get("crosscheck") or {}
        if not check:
            continue
        what = f"{rec['model']} · {rec['backend']} · {rec['form']} · {rec['dtype']} t{rec['threads']}"
        if "error" in check:
            lines.append(f"{what}: no cross-check ({check['error']})")
            continue
        verdict = f"agree within ±{100 * check['allowed']:.0f} %" if check["agree"] else \
            f"DISAGREE beyond ±{100 * check['allowed']:.0f} %; differences: {'; '.join(check.get('differences') or ['none found'])}"
        lines.append(f"{what}: {check['tool']} {check.get('version') or ''} {check['statistic']} "
                     f"{check['tool_median_ms']:.3f} ms over {check['rounds']} round(s) vs emobench "
                     f"{check['emobench_median_ms']:.3f} ms: ratio {check['ratio']:.3f} ({verdict})")
    return lines


def host_line(records) -> str | None:
    """How much the host itself varied over a run, from the sentinel samples beside each measurement."""
    rows = [r for r in _record_rows(records) if r.get("sentinel_ms") is not None]
    if not rows:
        return None
    spreads = [r["sentinel_spread"] for r in rows if r.get("sentinel_spread") is not None]
    flagged = [f"{r['model']} · {r['backend']} · t{r['threads']}" for r in rows if r.get("host_varied")]
    line = (f"host sentinel (256x256 GEMM at the measurement's threads before each round): {min(r['sentinel_ms'] for r in rows):.3f}–"
            f"{max(r['sentinel_ms'] for r in rows):.3f} ms across measurements")
    if spreads:
        line += f", spread within a measurement up to {100 * max(spreads):.1f} %"
    if flagged:
        line += f"; measured while the host varied > 10 %: {', '.join(flagged)}"
    return line
