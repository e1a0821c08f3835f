"""The Celery client side of one measurement, run in its own process per phase and variant.

A process of its own because the shipped app unregisters every non-JSON codec from kombu at import, and
each variant must be measured with a clean client. Prints one JSON object on stdout.

    python -m benchmarks.workload --variant hardened --phase throughput --count 5000 [--containers ID,ID]

Phases: throughput (`add`, all published, then all results awaited), payload (a mix of ~10-60 KB tasks,
likewise), latency (sequential `add` round trips), latency-payload (sequential 60 KB round trips).
"""
import argparse
import cProfile
import io
import json
import pstats
import resource
import statistics
import sys
import time

WARM_UP_TASKS = 20
NOTIFICATION_IDS = 200      # ids are reused (the store is idempotent), so the worker's 64 MB /data never fills
BODY = ("All work and no play makes Jack a dull boy. " * 1400)[:60_000]          # 60 KB, schema max 65,536
TEXT = ("Lorem  IPSUM dolor sit amet, consectetur ADIPISCING elit. " * 200)[:10_000]   # schema max 10,000
NUMBERS = [987_654_321_000 + n for n in range(1000)]                                # schema max 1,000 items
SLOW_SECONDS = 0.1         # a sequential call this slow is counted and listed (benchmarks/stalls.py traces it)
STALL_SECONDS = 1.0        # issue 13's bar: no call over a second


def load_tasks(variant: str) -> dict:
    if variant == "hardened":   # the project's own app and task objects, configured from TASKS_*/TLS_* env
        from hardened_tasks import celery_app  # noqa: F401  (the app the tasks' proxies use: the current one)
        from hardened_tasks.tasks import arithmetic, notifications, reports, text
        return {"add": arithmetic.add, "deliver_notification": notifications.deliver_notification,
                "normalize_text": text.normalize_text, "sum_chunk": reports.sum_chunk}
    from benchmarks import baseline_app
    return {name: getattr(baseline_app, name) for name in ("add", "deliver_notification", "normalize_text",
                                                           "sum_chunk")}


def payload_call(tasks: dict, number: int):
    """The payload mix, in fours: two 60 KB notifications, one 10 KB text, one 1,000-number list."""
    kind = number % 4
    if kind in (0, 1):
        return tasks["deliver_notification"], (f"bench-{number % NOTIFICATION_IDS}", "ops@example.com",
                                                "benchmark", BODY)
    if kind == 2:
        return tasks["normalize_text"], (TEXT,)
    return tasks["sum_chunk"], (NUMBERS,)


def small_call(tasks: dict, number: int):
    return tasks["add"], (number, 1)


class ContainerCpu:
    """CPU seconds used by the stack's containers (docker stats, one-shot), read around the timed window."""

    def __init__(self, ids: dict[str, str]):
        self.ids = ids
        if ids:
            import docker
            self.api = docker.from_env().api

    def read(self) -> dict[str, float]:
        return {name: self.api.stats(cid, stream=False, one_shot=True)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
                for name, cid in self.ids.items()}


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(samples: list[float]) -> dict:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": statistics.median(samples) * 1e3, "p99_ms": cuts[98] * 1e3,
            "mean_ms": statistics.fmean(samples) * 1e3, "min_ms": min(samples) * 1e3, "max_ms": max(samples) * 1e3,
            # a stall hides in a mean above p99; counted, so it cannot (benchmarks/stalls.py traces one)
            "over_100ms": sum(sample > SLOW_SECONDS for sample in samples),
            "over_1s": sum(sample > STALL_SECONDS for sample in samples)}


def burst(calls: list, timeout: float) -> dict:
    from celery.result import ResultSet
    started = time.perf_counter()
    results = [task.apply_async(args) for task, args in calls]
    published = time.perf_counter()
    values = ResultSet(results).join_native(timeout=timeout, propagate=True)
    finished = time.perf_counter()
    if len(values) != len(calls):
        raise RuntimeError(f"{len(values)} results for {len(calls)} tasks")
    return {"seconds": finished - started, "publish_seconds": published - started,
            "tasks_per_s": len(calls) / (finished - started)}


def sequential(calls: list, timeout: float) -> dict:
    samples, slow = [], []
    for number, (task, args) in enumerate(calls):
        started_at, started = time.time(), time.perf_counter()
        result = task.apply_async(args)
        result.get(timeout=timeout)
        seconds = time.perf_counter() - started
        samples.append(seconds)
        if seconds > SLOW_SECONDS:      # which call, and its task id: what a trace of the stall starts from
            slow.append({"call": number, "task_id": result.id, "started_at": started_at, "ms": round(seconds * 1e3, 1)})
    return {"seconds": sum(samples), **percentiles(samples), "slow": slow}


PHASES = {"throughput": (small_call, burst), "payload": (payload_call, burst),
          "latency": (small_call, sequential), "latency-payload": (lambda tasks, n: payload_call(tasks, 0), sequential)}


def measure(variant: str, phase: str, count: int, timeout: float, container_ids: dict, profile: str | None) -> dict:
    tasks = load_tasks(variant)
    make_call, run = PHASES[phase]
    burst([small_call(tasks, n) for n in range(WARM_UP_TASKS)], timeout)     # connect, reply queue, warm pool
    calls = [make_call(tasks, n) for n in range(count)]
    cpu = ContainerCpu(container_ids)
    containers_before = cpu.read() if container_ids else {}
    client_before = client_cpu()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    result = run(calls, timeout)
    if profiler:
        profiler.disable()
        write_profile(profiler, profile)
    client_used = client_cpu() - client_before
    containers_after = cpu.read() if container_ids else {}
    cpu_ms = {"client": client_used, **{k: containers_after[k] - containers_before[k] for k in containers_after}}
    first = calls[0][0].app
    return {"variant": variant, "phase": phase, "count": count, **result,
            "mean_args_bytes": statistics.fmean(len(json.dumps(args)) for _, args in calls[:8]),
            "cpu_ms_per_task": {k: v * 1e3 / count for k, v in cpu_ms.items()},
            "serializer": first.conf.task_serializer, "prefetch_multiplier": first.conf.worker_prefetch_multiplier,
            "acks_late": first.conf.task_acks_late}


def write_profile(profiler: cProfile.Profile, path: str) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(out.getvalue())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workload")
    parser.add_argument("--variant", required=True, choices=["hardened", "baseline", "default"])
    parser.add_argument("--phase", required=True, choices=sorted(PHASES))
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for results")
    parser.add_argument("--containers", default="", help="broker=ID,worker=ID for CPU accounting")
    parser.add_argument("--profile", help="write a cProfile report of the timed section here")
    args = parser.parse_args(argv)
    ids = dict(item.split("=", 1) for item in args.containers.split(",") if item)
    result = measure(args.variant, args.phase, args.count, args.timeout, ids, args.profile)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
