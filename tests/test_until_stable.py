"""``--until-stable`` and the host sentinel: the interval rule against hand-computed figures, the stopping reasons
with workers that report known per-call times, and the sentinel's record fields (never a timing value)."""

from __future__ import annotations

import math
import os

import pytest

from emobench.measure import sentinel
from emobench.measure.timing import relative_ci, relative_range
from emobench.runs import bench as bench_module
from emobench.runs.bench import BenchPlan, run_bench
from tests.test_cli import assert_user_error, run

FAST = dict(warmup=1, min_time=0.0, min_runs=3)


def test_relative_ci_by_hand():
    # medians 10 and 12: mean 11, sd √2, t(0.975, 1) = 12.706 → 12.706 · √2 / √2 / 11
    assert relative_ci([10.0, 12.0]) == pytest.approx(12.706 / 11)
    # 5, 10, 5, 10: mean 7.5, sd = √(4 · 6.25 / 3), t(0.975, 3) = 3.182
    assert relative_ci([5.0, 10.0, 5.0, 10.0]) == pytest.approx(3.182 * math.sqrt(25 / 3) / 2 / 7.5)
    assert relative_ci([7.0, 7.0, 7.0]) == 0.0
    assert relative_ci([7.0]) is None


def test_sentinel_spread():
    assert relative_range([1.0, 1.1, 0.9]) == pytest.approx(0.2)
    assert relative_range([1.0]) is None
    ms = sentinel.sample(min_time=0.01)
    assert math.isfinite(ms) and ms > 0


def with_rounds(monkeypatch, medians_ms):
    """Workers whose rounds report three calls at the given median (ms), one round after another."""
    it = iter(medians_ms)

    def worker(spec, workdir, timeout):
        m = next(it) / 1e3
        return {"status": "ok", "times": [m * 0.99, m, m * 1.01], "parity_max_abs": 0.0, "precision": "fp32", "explain": {}}

    monkeypatch.setattr(bench_module, "run_worker", worker)


def test_steady_rounds_stop_as_soon_as_the_interval_is_tight(monkeypatch):
    with_rounds(monkeypatch, [5.0] * 20)
    (rec,) = run_bench(BenchPlan(["irmb"], ["torch"], threads=[1], rounds=2, until_stable=3.0, **FAST))
    assert (rec.rounds, rec.stop, rec.ci_pct) == (2, "stable", 0.0)
    assert rec.sentinel_ms > 0 and rec.sentinel_spread >= 0 and isinstance(rec.host_varied, bool)


def test_each_round_samples_the_sentinel_at_its_measurement_threads(monkeypatch):
    threads = min(2, os.cpu_count() or 1)
    asked, real = [], sentinel.sample
    monkeypatch.setattr(sentinel, "sample", lambda **kw: asked.append(kw.get("threads")) or real(min_time=0.01, **kw))
    with_rounds(monkeypatch, [5.0] * 4)
    run_bench(BenchPlan(["irmb"], ["torch"], threads=sorted({1, threads}), rounds=2, **FAST))
    assert sorted(asked) == [t for t in sorted({1, threads}) for _ in range(2)]  # two rounds each


def test_the_sentinel_ratio_is_the_median_over_the_runs_sentinel_so_far(monkeypatch):
    # two measurements, three rounds each, interleaved: a1 b1 a2 b2 a3 b3; the sentinel reads 0.4 0.6 0.5 ... ms
    samples = iter([0.4, 0.6, 0.5, 0.5, 0.3, 0.7])
    monkeypatch.setattr(sentinel, "sample", lambda **kw: next(samples))
    with_rounds(monkeypatch, [5.0] * 6)
    first, second = run_bench(BenchPlan(["irmb", "irmb@64"], ["torch"], threads=[1], rounds=3, **FAST))
    # a ends after a3 (0.4 0.6 0.5 0.5 0.3: median 0.5); b after b3, all six samples: median 0.5
    assert first.sentinel_ratio == pytest.approx(5.0 / 0.5) and second.sentinel_ratio == pytest.approx(5.0 / 0.5)
    assert first.sentinel_ms == pytest.approx(0.4) and second.sentinel_ms == pytest.approx(0.6)  # each its own rounds'


def test_unsteady_rounds_run_to_the_cap(monkeypatch):
    with_rounds(monkeypatch, [5.0, 10.0] * 10)
    (rec,) = run_bench(BenchPlan(["irmb"], ["torch"], threads=[1], rounds=2, until_stable=3.0, max_rounds=4, **FAST))
    assert (rec.rounds, rec.stop) == (4, "max rounds")
    assert rec.ci_pct == pytest.approx(100 * 3.182 * math.sqrt(25 / 3) / 2 / 7.5)


def test_a_spent_budget_stops_after_the_planned_rounds(monkeypatch):
    with_rounds(monkeypatch, [5.0, 10.0] * 10)
    (rec,) = run_bench(BenchPlan(["irmb"], ["torch"], threads=[1], rounds=3, until_stable=3.0, budget=1e-9, **FAST))
    assert (rec.rounds, rec.stop) == (3, "budget")


def test_fixed_rounds_say_so(monkeypatch):
    with_rounds(monkeypatch, [5.0, 6.0])
    (rec,) = run_bench(BenchPlan(["irmb"], ["torch"], threads=[1], rounds=2, **FAST))
    assert (rec.rounds, rec.stop) == (2, "rounds") and rec.ci_pct is not None


@pytest.mark.parametrize("args, needle", [
    (["--until-stable", "0"], "--until-stable takes a percentage in (0, 100)"),
    (["--until-stable", "3", "--rounds", "5", "--max-rounds", "4"], "--max-rounds must be >= --rounds"),
])
def test_bad_stability_options(capsys, monkeypatch, args, needle):
    code, _, err = run(capsys, monkeypatch, "bench", "irmb", *args)
    assert_user_error(code, err, needle)


def test_the_sentinel_runs_at_the_threads_asked_and_restores_the_setting():
    import torch

    before = torch.get_num_threads()
    for threads in {1, min(2, os.cpu_count() or 1)}:
        assert sentinel.sample(min_time=0.01, threads=threads) > 0
        assert torch.get_num_threads() == before
