"""Measure the cost of hardening: `bash scripts/benchmark [--quick] [--repeats N] [--tasks N] [--suite]`.

Bakes the template's defaults, builds its images, then brings up, one after the other, the stacks of
benchmarks/stacks.py (default, baseline, hardened) with the same worker container and task mix, runs the
client phases of benchmarks/workload.py against each, the raw pika ceiling, the validation micro-benchmark,
and writes docs/benchmarks/results.{md,json,png}. Every stack is removed, also after a failure.
"""
import argparse
import json
import os
import statistics
import subprocess  # nosec B404  (the workload client, fixed arguments)
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import ceiling, machine, project, report, stacks, validators

OUT_DIR = project.REPO_ROOT / "docs" / "benchmarks"
PHASES = ("throughput", "payload", "latency", "latency-payload")
CEILING_SIZES = {"small": 256, "payload": 60_000}
# Variables that would make Celery (or the project) connect elsewhere than the stack under test.
FOREIGN_ENV = ("BROKER_URL", "RESULT_BACKEND", "CELERY_", "TASKS_", "TLS_", "BENCH_")


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bash scripts/benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 tasks, 1 repeat (not representative)")
    parser.add_argument("--tasks", type=int, help="small `add` tasks per throughput run (default 5000)")
    parser.add_argument("--repeats", type=int, help="runs of each phase per stack; medians are reported (default 3)")
    parser.add_argument("--variants", default="default,baseline,hardened", help="stacks to run, in this order")
    parser.add_argument("--timeout", type=float, default=300, help="seconds any one phase may take")
    parser.add_argument("--profile", action="store_true", help="cProfile the client's throughput run per variant")
    parser.add_argument("--suite", action="store_true", help="also time the baked security suite (cold, warm)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where results.{md,json,png} go")
    args = parser.parse_args(argv)
    args.tasks = args.tasks or (200 if args.quick else 5000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.sizes = {"throughput": args.tasks, "payload": max(40, args.tasks // 5),
                  "latency": 50 if args.quick else 500, "latency-payload": 20 if args.quick else 100}
    args.raw_messages = 2_000 if args.quick else 20_000
    unknown = set(args.variants.split(",")) - set(stacks.VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {sorted(stacks.VARIANTS)}")
    return args


def client_env(running: stacks.Running) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
    pythonpath = [str(running.project_dir / "src"), str(project.REPO_ROOT)]
    return {**env, **running.client_env(), "PYTHONPATH": os.pathsep.join(pythonpath)}


def run_phase(running: stacks.Running, phase: str, count: int, timeout: float, profile: Path | None) -> dict:
    command = [sys.executable, "-m", "benchmarks.workload", "--variant", running.variant.name, "--phase", phase,
               "--count", str(count), "--timeout", str(timeout),
               "--containers", ",".join(f"{k}={v}" for k, v in running.container_ids.items())]
    if profile:
        command += ["--profile", str(profile)]
    result = subprocess.run(command, cwd=project.REPO_ROOT, env=client_env(running), capture_output=True,
                            text=True, timeout=timeout + 120, check=False)  # nosec B603
    if result.returncode != 0:
        raise RuntimeError(f"{running.variant.name}/{phase} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def measure_stack(project_dir: Path, variant: stacks.Variant, args) -> dict:
    say(f"{variant.name}: starting broker + worker ({variant.description})")
    started = time.monotonic()
    with stacks.running(project_dir, variant) as running:
        say(f"{variant.name}: up in {time.monotonic() - started:.1f}s")
        raw = {}
        if variant.name != "default":            # default shares baseline's plaintext broker: same ceiling
            raw = {label: ceiling.measure(running.pika_parameters("worker"), running.pika_parameters(),
                                            args.raw_messages, size)
                   for label, size in CEILING_SIZES.items()}
            say(f"{variant.name}: raw pika {raw['small']['publish_per_s']:.0f} pub/s, "
                f"{raw['small']['consume_per_s']:.0f} consume/s")
        runs = {phase: [] for phase in PHASES}
        for repeat in range(args.repeats):
            for phase in PHASES:
                profile = (args.out / f"profile-{variant.name}.txt"
                           if args.profile and phase == "throughput" and repeat == 0 else None)
                result = run_phase(running, phase, args.sizes[phase], args.timeout, profile)
                runs[phase].append(result)
                figure = (f"{result['tasks_per_s']:.0f} tasks/s" if "tasks_per_s" in result
                          else f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
                               f"max {result['max_ms']:.1f} ms, {result['over_100ms']} over 100 ms")
                say(f"{variant.name}: repeat {repeat + 1}/{args.repeats} {phase} x{args.sizes[phase]}: {figure}")
        # The images' healthchecks are off in the timed runs; one check of each, measured apart (the shipped stack).
        health = stacks.healthcheck_cost(running) if variant.profile is None else {}
    return {"description": variant.description, "raw_pika": raw, "runs": runs, "summary": summarize(runs),
            "healthchecks": health}


def summarize(runs: dict) -> dict:
    """Medians over repeats of each phase's headline figures."""
    def median(phase, key):
        return statistics.median(run[key] for run in runs[phase])
    first = runs["throughput"][0]
    latency_runs = runs["latency"] + runs["latency-payload"]
    cpu = {part: statistics.median(run["cpu_ms_per_task"][part] for run in runs["throughput"])
           for part in first["cpu_ms_per_task"]}
    return {"add_tasks_per_s": median("throughput", "tasks_per_s"),
            "payload_tasks_per_s": median("payload", "tasks_per_s"),
            "payload_mean_args_bytes": runs["payload"][0]["mean_args_bytes"],
            "add_p50_ms": median("latency", "p50_ms"), "add_p99_ms": median("latency", "p99_ms"),
            "payload_p50_ms": median("latency-payload", "p50_ms"),
            "payload_p99_ms": median("latency-payload", "p99_ms"),
            # not medians: the worst call of any repeat, and every slow call of all of them
            "latency_max_ms": max(run["max_ms"] for run in latency_runs),
            "latency_over_100ms": sum(run["over_100ms"] for run in latency_runs),
            "add_cpu_ms_per_task": cpu,
            "settings": {k: first[k] for k in ("serializer", "prefetch_multiplier", "acks_late")}}


def say(message: str) -> None:
    print(f"[benchmark] {message}", flush=True)


def main(argv=None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"quick": args.quick, "command": " ".join(["scripts/benchmark", *(argv or sys.argv[1:])]),
               "sizes": args.sizes, "repeats": args.repeats, "raw_messages": args.raw_messages, "stacks": {}}
    with tempfile.TemporaryDirectory(prefix="hc-bench-bake-") as tmp:
        bakes = [project.bake(Path(tmp) / f"bake-{n}") for n in range(max(1, args.repeats))]
        project_dir = bakes[-1][0]
        results["bake_seconds"] = statistics.median(seconds for _, seconds in bakes)
        say(f"baked {project_dir.name} in {results['bake_seconds']:.2f}s (median of {len(bakes)})")
        images = project.build_images(project_dir)
        results["images"] = {k: images[k] for k in ("broker", "worker", "rabbitmq_base", "python_base",
                                                     "timings", "sizes_bytes")}
        results["machine"] = machine.describe(project.engine_client(project_dir), images["worker"])
        say("validation micro-benchmark")
        results["validators"] = validators.measure(budget=0.2 if args.quick else 1.0)
        for name in args.variants.split(","):
            results["stacks"][name] = measure_stack(project_dir, stacks.VARIANTS[name], args)
        if args.suite:
            say("security suite, cold then warm")
            results["security_suite"] = project.run_security_suite(project_dir)
    results["comparisons"] = report.comparisons(results)
    paths = report.write(results, args.out)
    for line in report.target_lines(results["comparisons"]):
        say(line)
    say("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
