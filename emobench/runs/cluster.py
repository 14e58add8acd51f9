"""Sweeps beyond one machine, on Ray (``pip install 'emobench[ray]'``, ``emobench sweep … --ray auto|local|ADDRESS``).

Counting fans out as Ray tasks over every CPU of the cluster. Measuring is scheduled so that at most one latency
measurement runs on a node at a time: each measuring task asks for one unit of the custom node resource
:data:`BENCH_RESOURCE`, which a node offers once (``ray start … --resources '{"emobench_bench": 1}'``). Every
task returns its rows or records to the driver, which stores them as they complete (the store is the driver's
file: a sweep resumes on another cluster, or none). Ray retries the tasks of a node that is lost; a retried
point is still stored once (the store keeps the first row of a point; a point measured is not measured again).
"""

from __future__ import annotations

from typing import Any, Callable

from emobench.errors import EmobenchError

#: the custom resource a node offers once: one latency measurement at a time on it
BENCH_RESOURCE = "emobench_bench"
#: retries of a task whose worker or node died
RETRIES = 3


def connect(address: str):
    """Ray, connected: ``local`` starts a private local instance (every core, one measurement slot), ``auto``
    joins the running cluster (``RAY_ADDRESS`` or a local ``ray start``), anything else is a cluster address."""
    try:
        import ray
    except ImportError:
        raise EmobenchError("--ray needs Ray, which is not installed: pip install 'emobench[ray]'") from None
    if ray.is_initialized():
        return ray
    try:
        if address == "local":
            ray.init(address="local", resources={BENCH_RESOURCE: 1}, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise EmobenchError(f"--ray {address}: cannot connect to a Ray cluster: {' '.join(str(err).split())[:300]}") from None
    return ray


def nodes_env(ray) -> list[dict[str, Any]]:
    """The alive nodes: address, CPUs, and whether they offer a measurement slot."""
    return [{"node": n["NodeManagerAddress"], "cpus": n["Resources"].get("CPU", 0),
             "bench": n["Resources"].get(BENCH_RESOURCE, 0)} for n in ray.nodes() if n.get("Alive")]


def _remote_count(ray):
    @ray.remote(num_cpus=1, max_retries=RETRIES)
    def count(fn: Callable[[tuple], list[dict[str, Any]]], args: tuple) -> list[dict[str, Any]]:
        return fn(args)  # ``fn`` travels by reference (its module and name), imported on the node

    return count


def _remote_measure(ray):
    @ray.remote(num_cpus=1, resources={BENCH_RESOURCE: 1}, max_retries=RETRIES)
    def measure(references: list[str], plan: dict[str, Any]) -> list[dict[str, Any]]:
        """bench on this node, nothing stored here: the records go back to the driver with this node's env."""
        from dataclasses import asdict

        from emobench.runs.bench import BenchPlan, run_bench

        return [asdict(r) for r in run_bench(BenchPlan(models=references, **plan))]

    return measure


def run_tasks(ray, remote, jobs: list[tuple], on_result: Callable[[Any], None]) -> None:
    """Submit every job, hand each result to ``on_result`` as it completes (the driver stores it at once)."""
    pending = [remote.remote(*job) for job in jobs]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                on_result(ray.get(ref))
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def count_on_ray(address: str, count: Callable[[tuple], list[dict[str, Any]]], jobs: list[tuple],
                 on_row: Callable[[dict[str, Any]], None]) -> None:
    """``count(job)`` for every job as a task on the cluster, each returned row handed to ``on_row``."""
    ray = connect(address)
    run_tasks(ray, _remote_count(ray), [(count, job) for job in jobs], lambda rows: [on_row(r) for r in rows])


def measure_on_ray(address: str, references: list[str], plan: dict[str, Any],
                   on_records: Callable[[list[dict[str, Any]]], None]) -> None:
    """One task per point (each takes a node's measurement slot): points measure in parallel across nodes and
    one after another on each."""
    ray = connect(address)
    if not any(n["bench"] for n in nodes_env(ray)):
        raise EmobenchError(f"no node of the Ray cluster offers the '{BENCH_RESOURCE}' resource: start each node "
                            f"with ray start … --resources '{{\"{BENCH_RESOURCE}\": 1}}' (one measurement at a time)")
    run_tasks(ray, _remote_measure(ray), [([ref], plan) for ref in references], on_records)

