"""Before/after benchmark pairs: does a change cost server CPU, memory or throughput?

    python bench/compare.py --before REV_OR_DIR --after REV_OR_DIR [--pairs 5] [--seconds 5] [--large-count 6]
                            [--before-args "..."] [--after-args "..."] [other run.py options, e.g. --million]

Runs this checkout's bench/run.py alternately on two source trees, in ABBA order (before, after,
after, before, ...: the first run of a session, the slowest, falls on each side as often), so that
whatever else the machine does over the session falls on both alike: single runs on
a shared machine swing by up to half, pairs on the same machine do not. A git revision is checked
out with `git worktree add` into a temporary directory and removed afterwards; a directory is used
as it is (a checkout, or the directory holding tunnelmesh/). Only tunnelmesh is measured: no moto,
no limits. --before-args / --after-args give one side's run.py its own options, so that one tree can
be compared with itself under two settings (e.g. --access-policy 0 against --access-policy 20).

Per workload it prints the medians over the runs with their min-max spread: throughput, the
server's CPU time per request (per MB for byte workloads; /proc, the whole process tree) with the
after/before ratio, flagged when worse than +5%, and peak RSS. Every run's figures are kept in
bench/results/compare-<time>/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORSE = 1.05  # CPU per unit above this after/before ratio is flagged


def git(*args: str) -> str:
    out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


@contextlib.contextmanager
def source_tree(spec: str, into: Path) -> Iterator[tuple[Path, str]]:
    """(directory holding tunnelmesh/, description) for a directory or a git revision."""
    path = Path(spec)
    if path.is_dir():
        for src in (path / "src", path):
            if (src / "tunnelmesh" / "__init__.py").is_file():
                yield src.resolve(), str(path.resolve())
                return
        sys.exit(f"{spec}: neither {spec}/src/tunnelmesh nor {spec}/tunnelmesh")
    commit = git("rev-parse", "--verify", f"{spec}^{{commit}}")
    git("worktree", "add", "--detach", "--quiet", str(into), commit)
    try:
        yield into / "src", f"{spec} ({commit[:10]})"
    finally:
        git("worktree", "remove", "--force", str(into))


def cpu_now() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, stolen ones included; CPU seconds of our waited-for descendants)."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    ours = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, ours.ru_utime + ours.ru_stime


def figures(run: dict) -> dict[str, dict]:
    """Per workload: throughput, server CPU ms per request (or per MB), peak RSS in MiB, errors."""
    out = {}
    for row in run["rows"]:
        tm = row["servers"].get("tunnelmesh")
        if tm is None:
            continue
        units = tm["ops"] if row["unit"] == "ops" else tm["bytes"] / 1e6
        cpu = tm["cpu_s"] * 1000 / units if units and tm["cpu_s"] is not None else math.nan
        out[row["name"]] = {
            "unit": row["unit"],
            "value": tm["value"],
            "cpu": cpu,
            "rss": (tm["peak_rss"] or 0) / 2**20,
            "errors": tm["errors"],
        }
    return out


def div(x: float, y: float) -> float:
    return x / y if y else math.nan


def num(v: float) -> str:
    """Three significant digits, thousands separated."""
    if not math.isfinite(v) or v == 0:
        return f"{v:g}"
    return f"{v:,.{max(0, 2 - math.floor(math.log10(abs(v))))}f}"


def spread(vals: list[float]) -> str:
    return f"{num(statistics.median(vals))} ({num(min(vals))}–{num(max(vals))})"


def table(before: list[dict], after: list[dict]) -> tuple[list[str], list[str]]:
    """The Markdown table, and the workloads whose CPU per unit got worse than WORSE."""
    b, a = [figures(r) for r in before], [figures(r) for r in after]
    lines = [
        "| workload | unit | throughput before | throughput after | CPU before | CPU after "
        "| CPU after/before | peak RSS MiB before | peak RSS MiB after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    worse = []
    for name, first in b[0].items():
        if not all(name in f for f in b + a):
            continue
        vb, va = ({k: [f[name][k] for f in runs] for k in first} for runs in (b, a))
        cb, ca = vb["cpu"], va["cpu"]
        ratio = div(statistics.median(ca), statistics.median(cb))
        pairs = [div(x, y) * 100 for x, y in zip(ca, cb, strict=True)]
        cell = f"{ratio:.1%} ({min(pairs):.0f}–{max(pairs):.0f}%)"
        if ratio > WORSE:
            worse.append(name)
            cell = f"**{cell}**"
        errors = sum(vb["errors"]) + sum(va["errors"])
        unit = "ops/s, CPU ms/req" if first["unit"] == "ops" else "MB/s, CPU ms/MB"
        cells = [
            name + (f" ({errors} errors)" if errors else ""),
            unit,
            spread(vb["value"]),
            spread(va["value"]),
            spread(cb),
            spread(ca),
            cell,
            spread(vb["rss"]),
            spread(va["rss"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines, worse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="git revision or source directory")
    ap.add_argument("--after", required=True, help="git revision or source directory")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--large-count", type=int, default=6)
    ap.add_argument("--before-args", default="", help="run.py options for the before side only (one string)")
    ap.add_argument("--after-args", default="", help="run.py options for the after side only (one string)")
    args, rest = ap.parse_known_args()
    side_args = {"before": shlex.split(args.before_args), "after": shlex.split(args.after_args)}
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    keep = BENCH / "results" / f"compare-{stamp}"
    keep.mkdir(parents=True)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
        trees = {
            "before": stack.enter_context(source_tree(args.before, Path(d) / "before")),
            "after": stack.enter_context(source_tree(args.after, Path(d) / "after")),
        }
        for i in range(1, args.pairs + 1):
            order = ["before", "after"] if i % 2 else ["after", "before"]
            for label in order:
                src = trees[label][0]
                out = keep / f"{label}-{i}.json"
                t0, (busy0, ours0) = time.monotonic(), cpu_now()
                cmd = [sys.executable, str(BENCH / "run.py"), "--src", str(src), "--json", str(out)]
                cmd += ["--skip-moto", "--skip-limits", "--skip-wrk", "--runs", "1", "--seconds", f"{args.seconds:g}"]
                cmd += ["--large-count", str(args.large_count), *rest, *side_args[label]]
                # cwd: an empty directory, so that `python -m tunnelmesh` cannot pick up a tunnelmesh/ from it
                if subprocess.run(cmd, cwd=d, stdout=subprocess.DEVNULL).returncode:
                    sys.exit(f"bench/run.py failed on {label} (pair {i}): {' '.join(cmd)}")
                wall, (busy, ours) = time.monotonic() - t0, cpu_now()
                # what the rest of the machine did meanwhile: CPU per request rises when it is busy
                other = max(0.0, (busy - busy0) - (ours - ours0)) / (wall * (os.cpu_count() or 1)) * 100
                runs[label].append(json.loads(out.read_text()) | {"other_load": other})
                print(f"pair {i}/{args.pairs} {label}: {wall:.0f} s, other load {other:.0f}%", file=sys.stderr)
    lines, worse = table(runs["before"], runs["after"])
    peak = {k: [max(f["rss"] for f in figures(r).values()) for r in v] for k, v in runs.items()}
    others = {k: [r["other_load"] for r in v] for k, v in runs.items()}
    extra = " ".join(rest)

    def side(label: str) -> str:
        return f", with `{shlex.join(side_args[label])}`" if side_args[label] else ""

    print(
        f"{args.pairs} interleaved pairs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{(time.monotonic() - started) / 60:.0f} min; `bench/run.py --seconds {args.seconds:g} "
        f"--large-count {args.large_count}{' ' + extra if extra else ''}`, tunnelmesh only.\n"
        f"Before: {trees['before'][1]}{side('before')}. After: {trees['after'][1]}{side('after')}.\n"
        "Cells: median (min–max) over the runs. CPU: the server's whole process tree, from /proc, "
        "per request or per MB moved; its ratio is of the medians, (per-pair ratios' range).\n"
    )
    print("\n".join(lines))
    print()
    print(
        f"- CPU per unit within +{WORSE - 1:.0%} on every workload: "
        + (f"**no**: {', '.join(worse)}" if worse else "yes")
    )
    print(f"- peak RSS over a whole run, MiB: before {spread(peak['before'])}, after {spread(peak['after'])}")
    print(
        f"- other load on the machine (% of all cores' time): "
        f"before {spread(others['before'])}, after {spread(others['after'])}"
    )
    print(f"- every run's figures: {keep.relative_to(REPO)}/")


if __name__ == "__main__":
    main()
