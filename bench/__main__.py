"""Run every benchmark in one go against a real containerd (each in a DevEnv
of its own, one after the other) and write docs/bench.md's generated section.

Usage (from the repo root): .venv/bin/python -m bench [--quick] [--only pod_start,probes,...]
                                                      [--output docs/bench.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import api_pods, cni_add, observability, pod_start, probes
from bench.cancellable import run_cancellable
from bench.report import BenchRun, Machine, Report, render, replace_section
from nodeagent.cri.client import CRIClient
from nodeagent.devenv.env import DevEnv
from nodeagent.logsetup import configure_logging

ROOT = Path(__file__).resolve().parents[1]

# name -> (run, report, full settings, --quick settings). The full run is
# sized for about 25 min on a 2-CPU VM; --quick only checks that it all works.
BENCHMARKS: dict[str, tuple[Callable[..., Coroutine[Any, Any, object]], Callable[[Any], None],
                            dict[str, object], dict[str, object]]] = {
    "pod_start": (pod_start.run, pod_start.report,
                  {"rounds": 9, "large_rounds": 3, "sizes": (1, 10, 30, 110), "exits": 30},
                  {"rounds": 1, "large_rounds": 1, "sizes": (1, 10, 30, 110), "exits": 5}),
    "probes": (probes.run, probes.report,
               {"pods": 110, "seconds": 60, "periods": (10, 1)},
               {"pods": 30, "seconds": 31, "periods": (10,)}),
    "observability": (observability.run, observability.report,
                      {"calls": 1000, "pods": 110},
                      {"calls": 200, "pods": 30}),
    "cni_add": (cni_add.run, cni_add.report,
                {"cycles": 200, "sandboxes": 30},
                {"cycles": 30, "sandboxes": 5, "fallback_cycles": 5}),
    "api_pods": (api_pods.run, api_pods.report,
                 {"rounds": 5, "pods": 30},
                 {"rounds": 1, "pods": 10}),
}


async def runtime_version() -> str:
    """containerd's name and version from the CRI Version call."""
    env = DevEnv(name="benchver")
    env.up()
    try:
        async with CRIClient(env.endpoint) as cri:
            v = await cri.version()
        return f"{v.runtime_name} {v.runtime_version} (CRI {v.runtime_api_version})"
    finally:
        env.down()


async def sample_load(into: list[float], every: float = 10.0) -> None:
    while True:
        await asyncio.sleep(every)
        into.append(os.getloadavg()[0])


async def run_one(name: str, settings: dict[str, object]) -> BenchRun:
    run, report, _, _ = BENCHMARKS[name]
    record = BenchRun(name, settings, load=[os.getloadavg()[0]])
    print(f"\n=== {name}: {' '.join(f'{k}={v}' for k, v in settings.items())}", flush=True)
    sampler = asyncio.ensure_future(sample_load(record.load))
    started = time.monotonic()
    try:
        record.result = await run(**settings)
        report(record.result)
    except (Exception, SystemExit) as exc:  # one failed benchmark must not lose the others' results
        traceback.print_exc()
        record.error = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
    finally:
        sampler.cancel()
        record.seconds = time.monotonic() - started
        record.load.append(os.getloadavg()[0])
    return record


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds and short windows: checks it works")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--output", default=str(ROOT / "docs" / "bench.md"),
                        help="markdown file whose generated section is replaced ('' to write nothing)")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {','.join(unknown)}; choose from {','.join(BENCHMARKS)}")
    args.names = names
    return args


async def main(args: argparse.Namespace, failed: list[str]) -> None:
    names = args.names
    configure_logging("text", 0)
    started, t0 = datetime.now(timezone.utc), time.monotonic()
    machine = Machine.probe(await runtime_version())
    runs = [await run_one(name, BENCHMARKS[name][3 if args.quick else 2]) for name in names]
    report = Report(machine=machine, started=started, command=" ".join(["python -m bench", *sys.argv[1:]]),
                    runs=runs, seconds=time.monotonic() - t0)
    section = render(report)
    print("\n" + section)
    if args.output:
        path = Path(args.output)
        text = path.read_text() if path.exists() else "# Benchmarks\n"
        path.write_text(replace_section(text, section))
        print(f"wrote {path}")
    failed.extend(r.name for r in runs if r.error)


if __name__ == "__main__":
    arguments, failures = parse_args(), []
    run_cancellable(lambda: main(arguments, failures))
    if failures:
        sys.exit(f"failed: {', '.join(failures)}")
