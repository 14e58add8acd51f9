"""Property-based fuzzing of the command line (hypothesis): configuration fields, model references and the numeric
options of the analysis commands. Every case runs ``emobench.cli.main`` in-process and must either work (exit 0)
or end in one line on stderr with exit code 2 (never a traceback), within 2 GiB.

The cases run in a child process under ``RLIMIT_AS`` = 2 GiB, so that an allocation beyond it fails at once
instead of swapping, and the memory budget (:func:`emobench.models.budget.available_memory`) sees what that limit
leaves. Each case's peak resident memory is measured (``VmHWM``, reset before the case) and must stay below it.

Profiles (hypothesis settings given to these tests only, never registered or loaded globally): by default a few
derandomized examples per command group, so the file stays well under a minute; ``HYPOTHESIS_PROFILE=thorough``
runs 500 random examples per group and prints, per group, the cases run, how they ended and the peak memory.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import string
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LIMIT = 2 * 2**30  #: the address space of the child process, and the bound on any case's peak memory
THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
#: examples per command group
EXAMPLES = {"config": 30, "references": 15, "mpl": 10, "modules": 10, "rf": 10, "zoo_show_r": 10}
TESTS = Path(__file__).resolve().parent


def fuzz_settings(group: str) -> settings:
    return settings(max_examples=500 if THOROUGH else EXAMPLES[group], derandomize=not THOROUGH, database=None,
                    deadline=None, suppress_health_check=list(HealthCheck), print_blob=False)


# ---- the outer test (pytest): the groups run in a child process under the memory limit ------------------------

def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


CHILD = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_fuzz; test_fuzz.run_groups(sys.argv[1])"


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux (RLIMIT_AS, /proc peak memory)")
def test_the_cli_survives_fuzzing(tmp_path):
    stats = tmp_path / "fuzz.json"
    env = {**os.environ, "EMOBENCH_CACHE": str(tmp_path / "cache"), "EMOBENCH_STORE": str(tmp_path / "store.sqlite")}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(stats)], cwd=tmp_path, env=env, preexec_fn=_limit_memory,
                          capture_output=True, text=True, timeout=None if THOROUGH else 600)
    report = json.loads(stats.read_text()) if stats.exists() else {}
    for group, r in report.items():
        print(f"{group}: {r['cases']} cases ({r['exit_0']} exit 0, {r['exit_2']} exit 2), "
              f"peak {r['peak_rss'] / 2**20:,.0f} MiB{', FAILED' if r['failure'] else ''}")
    assert proc.returncode == 0 and set(report) == set(EXAMPLES), proc.stderr[-6000:]
    failures = {g: r["failure"] for g, r in report.items() if r["failure"]}
    assert not failures, "\n\n".join(f"[{g}]\n{f}" for g, f in failures.items())
    assert all(r["peak_rss"] < LIMIT for r in report.values())


# ---- the child: every case in-process ---------------------------------------------------------------------------

STATS: dict[str, dict] = {}


def _peak_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM, the peak resident set size


def _proc_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _left_under_limit() -> int:
    """What the memory budget may use: the address space the limit leaves this process."""
    return max(0, LIMIT - _proc_status("VmSize"))


def cli(*args: str) -> tuple[int, str, str]:
    """``emobench ARGS`` in-process: (exit code, stdout, stderr); a traceback propagates."""
    from emobench.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved, sys.argv = sys.argv, ["emobench", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
    return code, out.getvalue(), err.getvalue()


def check(group: str, *args: str) -> None:
    """The property: exit 0, or exit 2 with exactly one line on stderr and no traceback; below the memory limit."""
    from test_cli import assert_user_error

    _peak_reset()
    code, _, err = cli(*args)
    peak = _proc_status("VmHWM")
    s = STATS[group]
    s["cases"] += 1
    s["peak_rss"] = max(s["peak_rss"], peak)
    s["exit_0" if code == 0 else "exit_2" if code == 2 else "other"] += 1
    assert peak < LIMIT, f"{args}: peak {peak / 2**30:.2f} GiB"
    assert code in (0, 2), f"{args}: exit {code}: {err[-3000:]}"
    if code == 2:
        assert_user_error(code, err)


def run_groups(path: str) -> None:
    import torch

    from emobench.models import budget

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    budget.available_memory = _left_under_limit
    report = {}
    for group, test in FUZZ.items():
        STATS[group] = {"cases": 0, "exit_0": 0, "exit_2": 0, "other": 0, "peak_rss": 0}
        failure = None
        try:
            test()
        except Exception:  # noqa: BLE001 - hypothesis's falsifying example, reported by the outer test
            failure = traceback.format_exc()[-6000:]
        report[group] = {**STATS[group], "failure": failure}
        Path(path).write_text(json.dumps(report, indent=1))


# ---- strategies -------------------------------------------------------------------------------------------------

#: number-like texts: boundaries, non-finite and huge values, things that are not numbers at all
ATOMS = ["0", "1", "-1", "2", "3", "4", "5", "7", "8", "9", "16", "24", "64", "0.5", "1.0", "2.0", "6.0", "-0.0",
         "-2.5", "1e-9", "1e-300", "5e-324", "1e308", "1e999", "-1e999", "nan", "inf", "-inf", "255", "256", "511",
         "512", "513", "1024", "65536", "65537", "2**63", "9223372036854775808", "10**100", "1" + "0" * 40, "True",
         "False", "None", "''", "'abc'", "abc", "[]", "{}", "()", "[[]]", "'1'", "0x10", "1_000", "1e9"]
word = st.text(alphabet=string.ascii_letters + string.digits + "._-+", max_size=6)
number = st.one_of(st.sampled_from(ATOMS), st.integers(-3, 40).map(str), st.integers(-(2**70), 2**70).map(str),
                   st.floats().map(repr), word)


def listed(items, min_size: int = 0, max_size: int = 6):
    return st.lists(items, min_size=min_size, max_size=max_size).map(lambda xs: "[" + ",".join(xs) + "]")


#: values a field often takes: the fuzzed configurations then build often enough to exercise the builders too
plausible = st.sampled_from(["1", "2", "3", "4", "5", "7", "8", "12", "16", "32", "48", "0.25", "0.5", "1.5", "2.0",
                             "4.0", "True", "False"])


def mutated(base: list, items=st.one_of(plausible, number)):
    """``base`` with one element replaced (the others stay valid, so the fuzzed one is what is checked)."""
    return st.tuples(st.integers(0, len(base) - 1), items).map(
        lambda t: "[" + ",".join(t[1] if i == t[0] else repr(v) for i, v in enumerate(base)) + "]")


#: numbers only: boundaries, non-finite, huge, tiny and negative values
def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text in ("2**63", "10**100")
    return True


numeric_atoms = st.sampled_from([a for a in ATOMS if _is_number(a)])


def field_values(base, choices: tuple = ()):
    """Texts for one config field whose valid value looks like ``base``: mostly values of its type (plausible or
    extreme, so that the builders' requirements are what is checked), sometimes anything at all."""
    anything = st.one_of(number, listed(number), st.sampled_from(["None", "{}", "'x'", "[[1]]"]))
    if choices:
        return st.one_of(st.sampled_from([repr(c) for c in choices]), st.sampled_from([repr(c) for c in choices]),
                         st.sampled_from([repr(str(choices[0]).upper()), "'nope'", "''"]), anything)
    if isinstance(base, bool):
        return st.one_of(st.sampled_from(["True", "False", "1", "0"]), anything)
    if isinstance(base, (int, float)):
        return st.one_of(plausible, numeric_atoms, st.floats().map(repr), st.integers(-(2**70), 2**70).map(str),
                         anything)
    if base and isinstance(base[0], list):  # MobileNetV2's stage rows: one element of one row
        row = st.tuples(st.integers(0, len(base) - 1), mutated(base[0])).map(
            lambda t: "[" + ",".join(t[1] if i == t[0] else repr(r) for i, r in enumerate(base)) + "]")
        return st.one_of(row, row, listed(listed(number, 0, 5), 0, 3), anything)
    if isinstance(base[0], str):  # a list of choices (norm and activation per stage)
        names = st.sampled_from(["'bn'", "'ln'", "'none'", "'relu'", "'gelu'", "'silu'", "'x'", "1"])
        return st.one_of(mutated(base, names), listed(names, len(base), len(base)), anything)
    return st.one_of(mutated(base), mutated(base), listed(st.one_of(plausible, number), len(base), len(base)), anything)


EMO_FIELDS = {
    "depths": [1, 1, 2, 2], "stem_dim": 16, "embed_dims": [16, 24, 32, 48], "exp_ratios": [2.0, 2.0, 2.0, 2.0],
    "dim_heads": [8, 8, 16, 16], "dw_kss": [3, 3, 5, 5], "se_ratios": [0.0, 0.0, 0.0, 0.0],
    "window_sizes": [7, 7, 7, 7], "attn_ss": [False, False, True, True], "in_chans": 3, "num_classes": 10,
    "norm_eps": 1e-6, "attn_drop": 0.0, "drop": 0.0, "drop_path": 0.0, "qkv_bias": True, "attn_pre": True,
    "v_group": False, "dw_conv": True, "norm_layers": ["bn", "bn", "ln", "ln"],
    "act_layers": ["silu", "silu", "gelu", "gelu"], "nope": 1,
}
EMO_CHOICES = {"window": ("grid", "contiguous", "shifted", "global"), "cascade": ("cascaded", "parallel")}

IRMB_FIELDS = {
    "dim_in": 64, "dim_out": 64, "exp_ratio": 4.0, "stride": 1, "norm_eps": 1e-6, "dw_kernel": 3, "dw_dilation": 1,
    "se_ratio": 0.0, "drop": 0.0, "drop_path": 0.0, "expand": True, "expand_bias": True, "expand_norm": False,
    "v_group": False, "local_skip": True, "proj_bias": False, "proj_norm": False, "skip": True, "nope": 1,
}
IRMB_CHOICES = {"norm": ("none", "bn", "ln"), "act": ("relu", "gelu", "none"), "dw_act": ("silu", "relu6"),
                "cascade": ("cascaded", "parallel")}
ATTENTION = {"window_size": 7, "dim_head": 16, "sr_ratio": 1, "attn_drop": 0.0, "attn_pre": True, "qk_bias": True,
             "window": "grid"}
MBV2_FIELDS = {
    "width": 1.0, "stages": [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
                             [6, 160, 3, 2], [6, 320, 1, 1]],
    "in_chans": 3, "num_classes": 1000, "drop": 0.2, "norm_eps": 1e-5, "dilations": [1, 1, 1, 1, 1, 1, 1], "nope": 1,
}


def overrides(fields: dict, choices: dict, extra: dict | None = None):
    keys = sorted(fields) + sorted(choices) + sorted(extra or {})

    def value(key):
        if key in choices:
            return field_values(choices[key][0], choices[key])
        if extra and key in extra:
            return extra[key]
        return field_values(fields[key])

    return st.lists(st.sampled_from(keys), min_size=1, max_size=2, unique=True).flatmap(
        lambda ks: st.tuples(*[value(k).map(lambda v, k=k: f"{k}={v}") for k in ks]))


attention_value = st.one_of(
    st.sampled_from(["False", "None", "{}", "0", "'grid'"]),
    st.lists(st.sampled_from(sorted(ATTENTION)), min_size=1, max_size=3, unique=True).flatmap(
        lambda ks: st.tuples(*[st.one_of(number, st.sampled_from(["'global'", "'contiguous'", "'x'"]))
                               .map(lambda v, k=k: f"'{k}': {v}") for k in ks])).map(lambda kv: "{" + ", ".join(kv) + "}"))

config_case = st.one_of(
    st.tuples(st.just("emo_tiny"), overrides(EMO_FIELDS, EMO_CHOICES)),
    st.tuples(st.just("irmb"), overrides(IRMB_FIELDS, IRMB_CHOICES, {"attention": attention_value})),
    st.tuples(st.just("mobilenetv2_100"), overrides(MBV2_FIELDS, {})),
)
config_command = st.sampled_from([("zoo", "show"), ("profile", "--counts-only"), ("rf",)])


@fuzz_settings("config")
@given(case=config_case, command=config_command)
def fuzz_config(case, command):
    name, pieces = case
    check("config", *command, ",".join([name, *pieces]))


ZOO_NAMES = ["emo_tiny", "emo_1m", "irmb", "mhsa", "mhsa_sr", "dwconv", "mobilenetv2_100", "deit_tiny", "pvt_tiny",
             "ssdlite_emo_1m", "deeplabv3_emo_1m", "retinanet_emo_1m", "emo_5", "EMO_1M", "", " "]
# no ':' (no module is ever imported) and no NUL (no command line holds one); line breaks included: the CLI's
# error is one line whatever the reference holds
no_colon = st.text(alphabet=st.characters(blacklist_characters=":\x00", blacklist_categories=("Cs",)), max_size=12)
reference = st.tuples(
    st.one_of(st.sampled_from(ZOO_NAMES), no_colon,
              st.sampled_from(["timm:", "torchvision:", "emobench_fuzz_missing_pkg.mod:", "missing_dir/none.py:",
                               f"{TESTS / 'model_factories.py'}:"]).flatmap(
                  lambda p: st.sampled_from(["three_convs", "tiny_attention", "nope", "", "a.b", "1x"]).map(lambda n: p + n))),
    st.lists(st.tuples(st.one_of(st.sampled_from(["width", "dim", "heads", "num_classes", "depths", "patch", "x"]), word),
                       st.one_of(number, listed(number))).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=2),
    st.one_of(st.none(), number, st.sampled_from(["32", "64x64", "14", "32x", "x", "224x224x3", "0x0"])),
).map(lambda t: ",".join([t[0], *t[1]]) + (f"@{t[2]}" if t[2] is not None else ""))


@fuzz_settings("references")
@given(ref=reference, command=st.sampled_from([("zoo", "show"), ("profile", "--counts-only", "-r", "32")]))
def fuzz_references(ref, command):
    check("references", *command, ref)


#: widths the reach analysis runs in a moment, and sizes far beyond any machine (refused from the estimate)
small = st.integers(-2, 64).map(str)
huge = st.integers(10**5, 2**70).map(str)
numeric = st.one_of(small, huge, st.sampled_from(ATOMS), word)


def opt(flag: str, values):
    return st.one_of(st.just(()), values.map(lambda v: (flag, v)))


@fuzz_settings("mpl")
@given(k=opt("-k", st.one_of(st.integers(-2, 300).map(str), numeric)),
       w=opt("-w", st.one_of(st.integers(-2, 2000).map(str), numeric)),
       widths=opt("-W", st.one_of(numeric, listed(st.one_of(small, huge), 1, 3).map(lambda s: s[1:-1]))),
       blocks=opt("--blocks", st.sampled_from(["irmb", "dwconv", "mhsa,wmhsa", "wmhsa+swmhsa", "irmb_contiguous,dwconv",
                                               "emo_tiny", "nope", ""])),
       count=opt("--count", st.sampled_from(["blocks", "layers", "x"])))
def fuzz_mpl(k, w, widths, blocks, count):
    check("mpl", "mpl", *k, *w, *widths, *blocks, *count)


floats = st.one_of(st.floats().map(repr), st.sampled_from(["inf", "-inf", "nan", "1e-9", "0", "1e999", "0.25", "4"]))


@fuzz_settings("modules")
@given(c=opt("-C", st.one_of(st.integers(-2, 600).map(str), numeric)),
       width=opt("-W", st.one_of(st.integers(-2, 70).map(str), numeric)),
       w=opt("-w", st.one_of(st.integers(-2, 20).map(str), numeric)),
       k=opt("-k", st.one_of(st.integers(-2, 20).map(str), numeric)),
       e=opt("-e", st.one_of(floats, numeric)))
def fuzz_modules(c, width, w, k, e):
    check("modules", "modules", *c, *width, *w, *k, *e)


resolution = st.one_of(numeric, st.tuples(small, st.one_of(small, huge)).map("x".join),
                       st.sampled_from(["32x", "x32", "64X64", "64×64", "1x1x1", " 64", "-32"]))


@fuzz_settings("rf")
@given(model=st.sampled_from(["emo_tiny", "irmb", "mobilenetv2_100", "mhsa", "wmhsa"]), r=opt("-r", resolution))
def fuzz_rf(model, r):
    check("rf", "rf", model, *r)


@fuzz_settings("zoo_show_r")
@given(model=st.sampled_from(["emo_tiny", "irmb", "mobilenetv2_100", "mhsa", "mhsa_sr", "deit_tiny", "pvt_tiny",
                              "ssdlite_emo_1m"]),
       r=opt("-r", st.one_of(resolution, st.integers(1, 2**40).map(str))))
def fuzz_zoo_show_r(model, r):
    check("zoo_show_r", "zoo", "show", model, *r)


FUZZ = {"config": fuzz_config, "references": fuzz_references, "mpl": fuzz_mpl, "modules": fuzz_modules, "rf": fuzz_rf,
        "zoo_show_r": fuzz_zoo_show_r}
