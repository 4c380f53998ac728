"""Where a Snakemake run of the DAG spends its time: per rule, jobs, wall time and start-up share,
and the packing efficiency of the whole run.

It reads one run's Snakemake log (``.snakemake/log/*.snakemake.log``: each job's rule, start and
finish, and its shell command) and the benchmark files the rules write (a job's wall time, when
the rule has one; else the log's timestamps, to the second). A job's start-up is that of its
stage: the median wall time of ``python -m lpe.<package>.<stage> --help`` (interpreter and
imports, then exit), measured here three times per stage in the run's directory, so with that
commit's code; run it on a quiet machine.

- job wall: the sum over jobs of each job's wall time;
- start-up share: start-up / job wall;
- packing efficiency: job wall / (cores x DAG wall), the DAG wall running from the first job's
  start to the last job's finish.

Usage: ``python benchmarks/dag_profile.py RUN_DIR [--label NAME] [--baseline BASE_DIR
--baseline-label NAME] --cores 2 --out benchmarks/results/dag_profile.md``; each directory is
where ``snakemake --cores 2`` ran (its ``.snakemake/log`` and ``work/``). With ``--baseline``
the table compares the two runs.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


@dataclass
class Job:
    rule: str
    jobid: int
    start: float
    end: float | None = None
    command: str = ""
    benchmark: str = ""
    wall: float = 0.0
    startup: float = 0.0

    @property
    def stage(self) -> str | None:
        found = re.search(r"python -m (lpe(?:\.\w+)+)", self.command)  # lpe.stages.train
        return found.group(1) if found else None


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%a %b %d %H:%M:%S %Y").timestamp()


def read_log(path: Path) -> list[Job]:
    """The jobs of one Snakemake log, with their rule, times, command and benchmark file."""
    jobs: dict[int, Job] = {}
    now, current, last = None, None, None
    for line in path.read_text().splitlines():
        if found := STAMP.match(line):
            now, current = _stamp(found.group(1)), None
        elif found := re.match(r"^(?:local)?rule (\w+):$", line):
            current = {"rule": found.group(1), "start": now}
        elif current is not None and (found := re.match(r"^\s+(benchmark): (.+)$", line)):
            current[found.group(1)] = found.group(2).split(",")[0].strip()
        elif current is not None and (found := re.match(r"^\s+jobid: (\d+)$", line)):
            current["jobid"] = int(found.group(1))
            last = jobs[current["jobid"]] = Job(**current)
        elif (found := re.match(r"^Shell command: (.+)$", line)) and last is not None:
            last.command = last.command or found.group(1)  # the command of the job just listed
        elif found := re.match(r"^Finished jobid: (\d+)", line):
            jobs[int(found.group(1))].end = now
    return [j for j in jobs.values() if j.end is not None and j.rule != "all"]


def latest_log(run: Path) -> Path:
    """The newest Snakemake log of ``run`` that finished a job (a dry run or a lint run after
    the real one, as the tests make in a clone, writes a log of its own with none)."""
    logs = sorted((run / ".snakemake/log").glob("*.snakemake.log"))
    if not logs:
        raise SystemExit(f"no Snakemake log in {run}/.snakemake/log: run snakemake there first")
    return next((log for log in reversed(logs) if read_log(log)), logs[-1])


def stage_startup(run: Path, stage: str, cache: dict) -> float:
    """Median wall time of ``python -m STAGE --help`` in ``run``: start-up without work."""
    if stage not in cache:
        times = []
        for _ in range(3):
            begin = time.perf_counter()
            subprocess.run([sys.executable, "-m", stage, "--help"], cwd=run,
                           capture_output=True, check=True)  # fmt: skip
            times.append(time.perf_counter() - begin)
        cache[stage] = statistics.median(times)
    return cache[stage]


def measure(run: Path, jobs: list[Job]) -> None:
    """Fill each job's wall (benchmark file, else timestamps) and its stage's start-up."""
    cache: dict[str, float] = {}
    for job in jobs:
        bench = run / job.benchmark if job.benchmark else None
        if bench is not None and bench.is_file():
            with bench.open() as f:
                job.wall = float(next(csv.DictReader(f, delimiter="\t"))["s"])
        else:
            job.wall = job.end - job.start
        if job.stage:
            job.startup = stage_startup(run, job.stage, cache)


@dataclass
class Profile:
    label: str
    jobs: list[Job]
    cores: int

    @property
    def dag_wall(self) -> float:
        return max(j.end for j in self.jobs) - min(j.start for j in self.jobs)

    @property
    def job_wall(self) -> float:
        return sum(j.wall for j in self.jobs)

    @property
    def startup(self) -> float:
        return sum(j.startup for j in self.jobs)

    @property
    def packing(self) -> float:
        return self.job_wall / (self.cores * self.dag_wall)

    def rules(self) -> list[tuple[str, int, float, float]]:
        by_rule: dict[str, list[Job]] = {}
        for job in self.jobs:
            by_rule.setdefault(job.rule, []).append(job)
        rows = [
            (rule, len(js), sum(j.wall for j in js), sum(j.startup for j in js))
            for rule, js in by_rule.items()
        ]
        return sorted(rows, key=lambda r: -r[2])


def profile(run: Path, label: str, cores: int) -> Profile:
    jobs = read_log(latest_log(run))
    if not jobs:
        raise SystemExit(f"{latest_log(run)} has no finished job")
    measure(run, jobs)
    return Profile(label, jobs, cores)


def summary(p: Profile) -> list[str]:
    return [
        f"| {p.label} | {len(p.jobs)} | {p.dag_wall:.0f} | {p.job_wall:.0f} | "
        f"{p.startup:.0f} ({100 * p.startup / p.job_wall:.1f}%) | {100 * p.packing:.1f}% |"
    ]


def rule_table(p: Profile) -> list[str]:
    lines = [
        f"### {p.label}: per rule",
        "",
        "| rule | jobs | job wall (s) | mean per job (s) | start-up (s) | start-up share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for rule, n, wall, startup in p.rules():
        share = f"{100 * startup / wall:.1f}%" if wall > 0 else "-"  # jobs under a second
        lines.append(f"| {rule} | {n} | {wall:.0f} | {wall / n:.1f} | {startup:.0f} | {share} |")
    return lines


def report(profiles: list[Profile], cores: int) -> str:
    lines = [
        "# DAG profile",
        "",
        "Written by `benchmarks/dag_profile.py` from Snakemake's logs and benchmark files "
        f"(cores = {cores}). Job wall: sum of the jobs' wall times. Start-up: per job, its "
        "stage's `python -m lpe.<package>.<stage> --help` time. Packing efficiency: job wall / "
        "(cores x DAG wall).",
        "",
        "| run | jobs | DAG wall (s) | job wall (s) | start-up (s, share) | packing |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in profiles:
        lines += summary(p)
    if len(profiles) == 2:
        base, new = profiles
        lines += [
            "",
            f"DAG wall {new.label} / {base.label}: **{new.dag_wall / base.dag_wall:.2f}**;"
            f" job wall: {new.job_wall / base.job_wall:.2f}.",
        ]
    for p in profiles:
        lines += ["", *rule_table(p)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="where snakemake ran")
    parser.add_argument("--label", default="this run")
    parser.add_argument("--baseline", type=Path, help="another run, to compare against")
    parser.add_argument("--baseline-label", default="baseline")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, help="markdown file (else printed)")
    args = parser.parse_args(argv)
    profiles = [profile(args.run, args.label, args.cores)]
    if args.baseline:
        profiles.insert(0, profile(args.baseline, args.baseline_label, args.cores))
    text = report(profiles, args.cores)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
