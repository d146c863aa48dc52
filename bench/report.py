"""docs/bench.md's generated section: the machine, the settings and one table
per benchmark from the scripts' result objects, with the issues' targets.

Pure functions apart from Machine.probe(), so tests/test_bench_runner.py can
check the rendering and the marker replacement without a runtime.
"""

from __future__ import annotations

import os
import statistics
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.api_pods import ApiPodsResult
from bench.cni_add import CniResult, pct
from bench.observability import ObservabilityResult
from bench.pod_start import PodStartResult
from bench.probes import ProbesResult

median = statistics.median

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"

# The issues' targets (issue 3: pod start and PLEG, issue 6: probes, issue 8:
# observability, issue 5: CNI ADD).
POD_START_RATIO = 1.10
EXIT_P99_MS = 200.0
PROBE_CPU_PCT = 2.0
PROBE_LATENESS_P99_MS = 20.0
SOCKET_ADDED_P50_MS = 0.5
SCRAPE_MS = 50.0
CNI_ADD_P50_MS = 60.0
HIGH_LOAD = 4.0  # 1-min load average on 2 CPUs above which the figures are flagged noisy


@dataclass
class Machine:
    cpu_model: str
    cpus: int
    memory_gib: float
    kernel: str
    os: str
    runtime: str  # from the CRI Version call
    runc: str
    python: str

    @classmethod
    def probe(cls, runtime: str) -> Machine:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.machine())
        mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:"))
        os_name = next((line.split("=", 1)[1].strip('"') for line in Path("/etc/os-release").read_text().splitlines()
                        if line.startswith("PRETTY_NAME=")), "unknown")
        try:
            runc = subprocess.run(["runc", "--version"], capture_output=True, text=True,
                                  check=True).stdout.splitlines()[0].removeprefix("runc version ")
        except (OSError, subprocess.CalledProcessError, IndexError):
            runc = "unknown"
        return cls(cpu_model=cpu, cpus=os.cpu_count() or 0, memory_gib=mem_kib / 2**20, kernel=platform.release(),
                   os=os_name, runtime=runtime, runc=runc, python=sys.version.split()[0])


@dataclass
class BenchRun:
    """One benchmark as the runner ran it: its result or its error."""
    name: str
    settings: dict[str, object]
    result: object | None = None
    error: str | None = None
    seconds: float = 0.0
    load: list[float] = field(default_factory=list)  # 1-min load average samples during the run


@dataclass
class Report:
    machine: Machine
    started: datetime  # UTC
    command: str
    runs: list[BenchRun]
    seconds: float = 0.0


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def settings_text(settings: dict[str, object]) -> str:
    def value(v: object) -> str:
        if isinstance(v, (tuple, list)):
            return ",".join(str(x) for x in v)
        return str(v)
    return " ".join(f"{k}={value(v)}" for k, v in settings.items())


def _load_text(load: list[float]) -> str:
    if not load:
        return "-"
    return f"{load[0]:.1f} → {load[-1]:.1f} (max {max(load):.1f})"


# -- the summary: one line per target ------------------------------------------

Row = tuple[str, str, str, str, str, str]  # what, measured, lower bound, ratio, target, verdict


def summary_rows(run: BenchRun) -> list[Row]:
    r = run.result
    if isinstance(r, PodStartResult):
        rows: list[Row] = [(f"pod start, N = {t.n}", f"{t.agent:.3f} s", f"{t.raw:.3f} s (raw CRI)",
                            f"**{t.ratio:.2f}×**", f"≤ {POD_START_RATIO:.2f}×", verdict(t.ratio <= POD_START_RATIO))
                           for t in r.sizes]
        rows.append(("exit → status on /pods, p99", f"{r.exit_p99:.0f} ms", "-", "-", f"≤ {EXIT_P99_MS:.0f} ms",
                     verdict(r.exit_p99 <= EXIT_P99_MS)))
        rows.append((f"agent RSS with {r.rss_pods} pods", f"{r.rss_mib:.0f} MiB", "-", "-", "-", "-"))
        return rows
    if isinstance(r, ProbesResult):
        rows = []
        base = r.baseline
        for m in r.modes:
            if m.period is None:
                rows.append((f"agent CPU / RSS, {r.pods} pods without probes", f"{m.cpu_pct:.2f} % / "
                             f"{m.rss_mib:.0f} MiB", "-", "-", "-", "-"))
                continue
            share = r.probe_cpu_pct(m)
            ratio = f"{m.cpu_pct / base.cpu_pct:.2f}×" if base and base.cpu_pct > 0 else "-"
            cpu_target = m.period == 10
            rows.append((f"agent CPU / RSS, {r.pods} probed pods, periodSeconds {m.period}",
                         f"{m.cpu_pct:.2f} % / {m.rss_mib:.0f} MiB",
                         f"{base.cpu_pct:.2f} % (no probes)" if base else "-", ratio,
                         f"probes ≤ {PROBE_CPU_PCT:g} % of a core" if cpu_target else "-",
                         (verdict(share <= PROBE_CPU_PCT) + f" ({share:.2f} %)" if share is not None
                          else "no baseline") if cpu_target else
                         (f"probes {share:.2f} %" if share is not None else "-")))
            late_target = m.period == 10
            rows.append((f"probe lateness p99, periodSeconds {m.period}",
                         "-" if m.p99_ms is None else f"{m.p99_ms:.1f} ms", "-", "-",
                         f"≤ {PROBE_LATENESS_P99_MS:.0f} ms" if late_target else "-",
                         ("no window logged" if m.p99_ms is None else verdict(m.p99_ms <= PROBE_LATENESS_P99_MS))
                         if late_target else "-"))
        return rows
    if isinstance(r, ObservabilityResult):
        rows = []
        if r.socket:
            worst = max(r.socket, key=lambda c: c.added_p50)
            rows.append((f"debug socket, added p50 (worst call: {worst.call})", f"{worst.added_p50:.3f} ms",
                         f"{worst.direct_p50:.3f} ms (direct)", f"{worst.via_p50 / worst.direct_p50:.2f}×",
                         f"≤ {SOCKET_ADDED_P50_MS} ms", verdict(worst.added_p50 <= SOCKET_ADDED_P50_MS)))
        cold = r.scrape_of("/metrics/resource", True)
        if cold:
            rows.append((f"/metrics/resource scrape, {r.pods} pods, cold, p50", f"{cold.p50_ms:.1f} ms",
                         "-", "-", f"< {SCRAPE_MS:.0f} ms", verdict(cold.p50_ms < SCRAPE_MS)
                         + f" (agent CPU {cold.cpu_ms:.1f} ms)"))
        return rows
    if isinstance(r, CniResult):
        add50 = median(r.add)
        return [("CNI ADD, p50 / p99", f"{add50:.1f} / {pct(r.add, 99):.1f} ms",
                 f"{median(r.version):.1f} ms (plugin exec alone)", f"{add50 / median(r.version):.2f}×",
                 f"≤ {CNI_ADD_P50_MS:.0f} ms p50", verdict(add50 <= CNI_ADD_P50_MS)),
                ("RunPodSandbox, agent network vs host network, p50",
                 f"{median(r.sandbox_pod_network):.1f} ms", f"{median(r.sandbox_host_network):.1f} ms (host network)",
                 f"**{r.sandbox_ratio:.2f}×**", "-", "-")]
    if isinstance(r, ApiPodsResult):
        return [(f"{r.pods} API server pods → Running", f"{r.agent:.3f} s", f"{r.raw:.3f} s (raw CRI)",
                 f"**{r.ratio:.2f}×**", "-", "-")]
    return []


# -- the details: one table per benchmark --------------------------------------

def _rounds(values: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in values)


def details(run: BenchRun) -> list[str]:
    r = run.result
    out: list[str] = []
    if isinstance(r, PodStartResult):
        out += ["N static pod manifests written at once into a running agent (one pod started and removed "
                "first, then a second of quiet) → all Running on `/pods` (read over one keep-alive connection), "
                "against the same pods' CRI calls made directly after the same quiet second (ImageStatus, "
                "RunPodSandbox, PodSandboxStatus, CreateContainer, StartContainer, with the agent's own "
                "/etc/hosts and termination-log mounts); rounds alternate, medians; N = 1 takes three starts "
                "per round.", "",
                "| N | agent (s) | raw CRI (s) | ratio | agent CPU (s) | starts agent / raw (s) |",
                "|---|---|---|---|---|---|"]
        out += [f"| {t.n} | {t.agent:.3f} | {t.raw:.3f} | **{t.ratio:.2f}×** | {t.cpu:.2f} | "
                f"{_rounds(t.agent_s)} / {_rounds(t.raw_s)} |" for t in r.sizes]
        out += ["", f"Exit → status: a container's `finishedAt` to `/pods` showing it terminated, "
                f"{len(r.exit_ms)} exits: p50 {r.exit_p50:.0f} ms, p99 **{r.exit_p99:.0f} ms**, "
                f"max {max(r.exit_ms):.0f} ms. Agent RSS with {r.rss_pods} pods: {r.rss_mib:.0f} MiB."]
    elif isinstance(r, ProbesResult):
        out += [f"{r.pods} static pods (busybox httpd), each with a readiness httpGet and a liveness exec probe, "
                f"against the same pods without probes; agent CPU (% of one core) and RSS over a "
                f"{r.seconds:g} s window; lateness from the agent's 30 s `probe lateness` summaries.", "",
                "| mode | agent CPU % | probes' share % | RSS MiB | lateness p50 ms | p99 ms | max ms | "
                "probes run | restarts | start (s) |",
                "|---|---|---|---|---|---|---|---|---|---|"]

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"
        for m in r.modes:
            share = r.probe_cpu_pct(m)
            mode = "no probes" if m.period is None else f"periodSeconds {m.period}"
            out.append(f"| {mode} | {m.cpu_pct:.2f} | {'-' if share is None else f'{share:.2f}'} | "
                       f"{m.rss_mib:.0f} | {ms(m.p50_ms)} | {ms(m.p99_ms)} | {ms(m.max_ms)} | {m.probes} | "
                       f"{m.restarts} | {m.start_s:.1f} |")
    elif isinstance(r, ObservabilityResult):
        if r.socket:
            out += [f"CRI calls through `--cri-debug-socket` and directly, {r.calls} each, alternating; "
                    "50 containers in one sandbox.", "",
                    "| call | direct p50 | via p50 | added p50 | ratio | direct p99 | via p99 |",
                    "|---|---|---|---|---|---|---|"]
            out += [f"| {c.call} | {c.direct_p50:.3f} ms | {c.via_p50:.3f} ms | **{c.added_p50:.3f} ms** | "
                    f"{c.via_p50 / c.direct_p50:.2f}× | {c.direct_p99:.3f} ms | {c.via_p99:.3f} ms |"
                    for c in r.socket]
            out.append("")
        out += [f"Scrapes with {r.pods} sandboxes (host network, started in {r.start_s:.0f} s); "
                f"/metrics/resource is {r.resource_bytes} bytes, {r.resource_series} container CPU series; "
                "cold = the 1 s stats cache expired.", "",
                "| endpoint | p50 | p99 | agent CPU per scrape | samples |", "|---|---|---|---|---|"]
        out += [f"| {t.label} | {t.p50_ms:.1f} ms | {t.p99_ms:.1f} ms | {t.cpu_ms:.1f} ms | {t.samples} |"
                for t in r.scrape]
    elif isinstance(r, CniResult):
        out += [f"The installed plugin run as containerd runs it against a running agent, ADD then DEL, "
                f"{r.cycles} times; then RunPodSandbox on the agent's network vs host network, alternating, "
                f"{r.sandboxes} each.", "",
                "| what | p50 | p99 | min | n |", "|---|---|---|---|---|"]
        rows = [("CNI ADD, plugin exec → exit (agent running)", r.add),
                ("CNI DEL, plugin exec → exit (agent running)", r.delete),
                ("ADD: the agent's share (-v 4 only)", r.agent_side),
                ("plugin alone (VERSION)", r.version),
                ("`python3 -IS` start-up floor", r.interpreter),
                ("CNI ADD, in-process fallback (agent stopped)", r.fallback),
                ("RunPodSandbox, agent's pod network", r.sandbox_pod_network),
                ("RunPodSandbox, host network", r.sandbox_host_network)]
        out += [f"| {name} | {median(v):.1f} ms | {pct(v, 99):.1f} ms | {min(v):.1f} ms | {len(v)} |"
                for name, v in rows if v]
    elif isinstance(r, ApiPodsResult):
        out += [f"{r.pods} pods created at once in the API server double → all Running there, against the raw "
                "CRI calls for the same pods; rounds alternate, medians.", "",
                "| agent (s) | raw CRI (s) | ratio | rounds agent / raw (s) |", "|---|---|---|---|",
                f"| {r.agent:.3f} | {r.raw:.3f} | **{r.ratio:.2f}×** | {_rounds(r.agent_s)} / {_rounds(r.raw_s)} |"]
    return out


TITLES = {"pod_start": "Pod start and exit → status (`bench/pod_start.py`, issue 3)",
          "probes": "Probes (`bench/probes.py`, issue 6)",
          "observability": "Debug socket and scrape cost (`bench/observability.py`, issue 8)",
          "cni_add": "CNI ADD and sandbox start (`bench/cni_add.py`)",
          "api_pods": "Pods from the API server (`bench/api_pods.py`, issue 7)"}


def render(report: Report) -> str:
    """The generated section, markers excluded."""
    m = report.machine
    loads = [x for run in report.runs for x in run.load]
    lines = ["## Latest run (generated by `python -m bench`)", "",
             f"Written by `{report.command}` on {report.started:%Y-%m-%d %H:%M} UTC "
             f"in {report.seconds / 60:.1f} min. Do not edit between the markers: rerun instead. "
             "The hand-written sections below it are the history from earlier sessions.", "",
             "| machine | |", "|---|---|",
             f"| CPU | {m.cpu_model}, {m.cpus} CPUs |",
             f"| memory | {m.memory_gib:.1f} GiB |",
             f"| OS, kernel | {m.os}, {m.kernel} |",
             f"| runtime (CRI Version) | {m.runtime} |",
             f"| runc | {m.runc} |",
             f"| Python | {m.python} |",
             f"| 1-min load average | {_load_text(loads)} |", ""]
    if loads and max(loads) > HIGH_LOAD:
        lines += [f"**Noisy run:** the 1-min load average reached {max(loads):.1f} on {m.cpus} CPUs "
                  "(other engineers' test suites share this machine). Wall-clock figures are inflated; "
                  "the ratios, measured against the raw bound in the same run, less so.", ""]
    lines += ["| benchmark | settings | took | load (start → end, max) |", "|---|---|---|---|"]
    lines += [f"| {run.name} | {settings_text(run.settings)} | {run.seconds / 60:.1f} min | "
              f"{_load_text(run.load)} |" for run in report.runs]
    lines += ["", "### Summary", "",
              "| what | measured | lower bound | ratio | target | |", "|---|---|---|---|---|---|"]
    for run in report.runs:
        if run.error is not None:
            lines.append(f"| {run.name} | **failed** | - | - | - | {run.error} |")
        lines += ["| " + " | ".join(row) + " |" for row in summary_rows(run)]
    for run in report.runs:
        lines += ["", f"### {TITLES.get(run.name, run.name)}", ""]
        lines += [f"**Failed:** {run.error}"] if run.error is not None else details(run)
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str) -> str:
    """`text` with the generated block replaced by `section`; the first time,
    the block goes before the first `## ` heading. Everything outside the
    markers is kept byte for byte."""
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    start, end = text.find(BEGIN), text.find(END)
    if start != -1 and end > start:
        return text[:start] + block + text[end + len(END):]
    at = text.find("\n## ")
    if at == -1:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[:at + 1] + block + "\n\n" + text[at + 1:]
