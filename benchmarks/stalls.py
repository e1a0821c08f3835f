"""Latency stalls: sequential `add` round trips, each call over 100 ms traced to what it waited on; exit 1 if any
call takes longer than a second (issue 13's bar: zero calls over 1 s).

    python -m benchmarks.stalls [--project DIR] [--variants hardened,baseline] [--count 2200]

Per variant it starts the stack (benchmarks/stacks.py), runs the calls from a client process of their own (as
benchmarks/workload.py does) and, for every slow call, prints the worker's own timestamps for that task (when it
was received, when it ran) and the worker's process ids before and after: a call that waited inside the worker
between "received" and "succeeded" while a pool process was replaced is the prefork pool's, not the network's.
2,200 calls put each of the two pool processes past 1,000 tasks: what count-based recycling
(`worker_max_tasks_per_child`) would do.
"""
import argparse
import datetime
import json
import subprocess  # nosec B404  (this interpreter, fixed arguments)
import sys
import tempfile
from pathlib import Path

WARM_UP_TASKS = 20


def worker_processes(api, container_id: str) -> list[int]:
    return sorted(int(row[1]) for row in api.top(container_id)["Processes"] if "celery" in row[-1])


def client(variant: str, count: int, worker_id: str) -> dict:
    """Runs in its own process (the shipped app unregisters codecs at import): the latency phase's sequential calls
    (benchmarks/workload.py), with the worker's processes read before and after."""
    import docker

    from benchmarks.workload import burst, load_tasks, sequential, small_call
    tasks, api = load_tasks(variant), docker.from_env().api
    burst([small_call(tasks, n) for n in range(WARM_UP_TASKS)], 60)
    before = worker_processes(api, worker_id)
    result = sequential([small_call(tasks, n) for n in range(count)], 60)
    return {"count": count, **result, "processes_before": before, "processes_after": worker_processes(api, worker_id)}


def worker_timestamps(log: str, task_id: str) -> dict[str, str]:
    """When the worker logged the task as received and as finished (its own clock, from `docker logs -t`)."""
    found = {}
    for line in log.splitlines():
        if task_id in line:
            stamp, _, text = line.partition(" ")
            kind = "received" if "received" in text else "finished" if ("succeeded" in text or "raised" in text) \
                else "other"
            found.setdefault(kind, stamp)
    return found


def waited_in_worker(stamps: dict[str, str]) -> float | None:
    if "received" not in stamps or "finished" not in stamps:
        return None
    def parse(stamp: str) -> datetime.datetime:     # docker's RFC 3339 with nanoseconds: microseconds kept
        return datetime.datetime.fromisoformat(stamp[:26].rstrip("Z") + "Z")
    return (parse(stamps["finished"]) - parse(stamps["received"])).total_seconds()


def measure(project_dir: Path, variant_name: str, count: int) -> dict:
    import docker

    from benchmarks import project, stacks
    from benchmarks.run import client_env
    project.use(project_dir)
    with stacks.running(project_dir, stacks.VARIANTS[variant_name]) as running:
        worker_id = running.container_ids["worker"]
        done = subprocess.run([sys.executable, "-m", "benchmarks.stalls", "--client", variant_name, "--count",
                               str(count), "--worker", worker_id], cwd=project.REPO_ROOT, env=client_env(running),
                              capture_output=True, text=True, timeout=count + 300, check=False)  # nosec B603
        if done.returncode != 0:
            raise RuntimeError(f"{variant_name}: the client failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout)
        log = docker.from_env().containers.get(worker_id).logs(timestamps=True).decode(errors="replace")
        for call in result["slow"]:
            call["worker"] = worker_timestamps(log, call["task_id"])
            call["waited_in_worker_s"] = waited_in_worker(call["worker"])
        return {"variant": variant_name, **result}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stalls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, help="a baked project (default: bake the defaults)")
    parser.add_argument("--variants", default="hardened,baseline")
    parser.add_argument("--count", type=int, default=2200)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        json.dump(client(args.client, args.count, args.worker), sys.stdout)
        return 0
    from benchmarks import project
    project_dir = args.project or project.bake(Path(tempfile.mkdtemp(prefix="hc-stalls-")))[0]
    stalled = False
    for variant in args.variants.split(","):
        result = measure(project_dir, variant, args.count)
        print(json.dumps(result, indent=1))
        print(f"{variant}: {result['count']} calls, max {result['max_ms']:.1f} ms, {result['over_100ms']} over 100 ms, "
              f"{result['over_1s']} over 1 s; worker processes {result['processes_before']} -> "
              f"{result['processes_after']}", flush=True)
        stalled |= result["over_1s"] > 0
    return 1 if stalled else 0


if __name__ == "__main__":
    sys.exit(main())
