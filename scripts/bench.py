#!/usr/bin/env python3
"""`make bench`: rulehost against a native-Rust build of the same rules (stdlib only).

Generates 1M deterministic Databricks audit events once (bench-data/, git-ignored), then
runs, interleaved round after round (A B A B, machines are noisy):

* native 2 rules    `rulehost-native` with the two seed specs
* rulehost 2 rules  `rulehost eval` with the same specs and components
* native 50 rules   the seeds plus 48 native never-matching checks
* rulehost 50 rules the seeds plus `Synthetic.NoMatch.01`..`48` (one component, 48 RuleIDs)

and reports medians of wall time, CPU time, events/s, MB/s and peak RSS, the per-round
ratios (rulehost/native, 50/2 rules), the time to load 50 rules, and a verdict for each
target of issue 5. Every run's alerts must be byte-identical (the 48 extra rules never
match, so all four configurations write the same file); a difference fails the bench.

`--threads N` is passed to both binaries only when `rulehost eval --help` offers it.
`--check` only compares the two binaries' output on the committed demo sample.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED_SPECS = (
    "databricks_access_to_multiple_workspaces.yml",
    "databricks_install_library_all_clusters.yml",
)
SYNTHETIC_RULES = 48
# Same arguments => byte-identical output (scripts/gen_databricks.py).
GEN_ARGS = ("--seed", "42", "--hours", "72", "--roamers", "30")

# Issue 5's targets.
TARGET_RATIO = 1.5  # rulehost wall <= 1.5x native
TARGET_EPS = 300_000  # events/s on 2 cores
TARGET_MANY = 1.3  # 50 rules <= 1.3x the 2-rule cost
TARGET_LOAD_S = 0.100  # loading 50 cached components
LOAD_WARM_RUNS = 5  # cached loads timed; the median counts


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

def ensure_data(path: Path, events: int) -> None:
    """Generates `path` unless it is there with the size and hash recorded next to it."""
    generator = ROOT / "scripts" / "gen_databricks.py"
    args = ["--events", str(events), *GEN_ARGS]
    stamp = path.with_name(path.name + ".json")
    want = {"args": args, "generator_sha256": sha256_file(generator)}
    if path.is_file() and stamp.is_file():
        try:
            have = json.loads(stamp.read_text())
        except ValueError:
            have = {}
        if (
            all(have.get(k) == v for k, v in want.items())
            and have.get("size") == path.stat().st_size
            and have.get("sha256") == sha256_file(path)
        ):
            log(f"bench: `{path.relative_to(ROOT)}` is up to date ({have['size']:,} bytes)")
            return
    log(f"bench: generating `{path.relative_to(ROOT)}` ({events:,} events)...")
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(generator), *args, "--output", str(path)], check=True)
    want.update(size=path.stat().st_size, sha256=sha256_file(path))
    stamp.write_text(json.dumps(want, indent=1) + "\n")
    log(f"bench: generated in {time.perf_counter() - started:.0f} s")


def components_dir() -> Path:
    return Path(os.environ["RULEHOST_COMPONENTS"].split(":")[0])


def synthetic_spec(i: int, filename: str = "synthetic_no_match.wasm") -> str:
    return (
        "AnalysisType: rule\n"
        f"Filename: {filename}\n"
        f"RuleID: Synthetic.NoMatch.{i:02}\n"
        "Enabled: true\n"
        "LogTypes: [Databricks.Audit]\n"
        "Severity: Info\n"
        # The rule declares its condition as a host-side prefilter (issue 5: "let the host
        # skip a rule whose declared prefilter rules the event out"); the native baseline
        # applies the same InlineFilters before its native rule. Each rule filters on its
        # own value, as rules about different actions do, so no two share a filter.
        "InlineFilters:\n"
        "  - KeyPath: actionName\n"
        "    Condition: Equals\n"
        f"    Value: rulehost.synthetic.neverMatches.{i:02}\n"
    )


def write_rule_folders(tmp: Path) -> tuple[Path, Path]:
    """rules-2: the two seed specs; rules-50: those plus 48 synthetic no-match specs."""
    two, fifty = tmp / "rules-2", tmp / "rules-50"
    for d in (two, fifty):
        d.mkdir()
        for name in SEED_SPECS:
            shutil.copy(ROOT / "rules-tests" / name, d / name)
    for i in range(1, SYNTHETIC_RULES + 1):
        (fifty / f"synthetic_no_match_{i:02}.yml").write_text(synthetic_spec(i))
    return two, fifty


def write_load_folder(tmp: Path) -> Path:
    """50 specs, each with its own component file (48 copies of the no-match component
    next to their specs), so that loading them loads 50 components."""
    load = tmp / "rules-50-load"
    load.mkdir()
    for name in SEED_SPECS:
        shutil.copy(ROOT / "rules-tests" / name, load / name)
    for i in range(1, SYNTHETIC_RULES + 1):
        wasm = f"synthetic_no_match_{i:02}.wasm"
        shutil.copy(components_dir() / "synthetic_no_match.wasm", load / wasm)
        (load / f"synthetic_no_match_{i:02}.yml").write_text(synthetic_spec(i, wasm))
    return load


# --------------------------------------------------------------------------
# Running and measuring
# --------------------------------------------------------------------------

TIME = shutil.which("time", path="/usr/bin")


def measure(cmd: list[str], out: Path, err: Path) -> dict:
    """Runs `cmd` once: wall and CPU seconds, peak RSS, exit code, alerts' hash."""
    if TIME:
        rusage = err.with_suffix(".time")
        full = [TIME, "-v", "-o", str(rusage), *cmd]
    else:
        full = cmd
    with open(err, "wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=stderr)
        # wait4 gives this child's own rusage (peak RSS included) even without /usr/bin/time.
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = {
        "wall": wall,
        "cpu": ru.ru_utime + ru.ru_stime,
        "rss_mb": ru.ru_maxrss / 1024,
        "exit": proc.returncode,
    }
    if TIME:
        text = rusage.read_text()
        user = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1))
        system = float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
        result.update(cpu=user + system, rss_mb=rss / 1024)
        m = re.search(r"Exit status: (\d+)", text)
        if m:
            result["exit"] = int(m.group(1))
    result["sha256"] = sha256_file(out) if out.exists() else None
    return result


def supports_threads(rulehost: Path) -> bool:
    help_text = subprocess.run(
        [str(rulehost), "eval", "--help"], capture_output=True, text=True
    ).stdout
    return "--threads" in help_text


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} vCPU {model or platform.processor()}".strip()


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def fmt_eps(x: float) -> str:
    return f"{x / 1000:,.0f}k"


# --------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------

def check(args) -> int:
    """Byte-identical output on the demo sample, 2 and 50 rules, 1 and 2 threads."""
    sample = ROOT / "demo" / "databricks-audit-sample.jsonl"
    ok = True
    with tempfile.TemporaryDirectory(prefix="rulehost-bench-") as t:
        tmp = Path(t)
        two, fifty = write_rule_folders(tmp)
        for name, rules in (("2 rules", two), ("50 rules", fifty)):
            expected = tmp / f"rulehost-{rules.name}.jsonl"
            subprocess.run(
                [str(args.rulehost), "eval", "--rules", str(rules), "--output", str(expected),
                 str(sample)],
                check=True, stderr=subprocess.DEVNULL,
            )
            for threads in (1, 2):
                got = tmp / f"native-{rules.name}-{threads}.jsonl"
                subprocess.run(
                    [str(args.native), "--rules", str(rules), "--threads", str(threads),
                     "--output", str(got), str(sample)],
                    check=True, stderr=subprocess.DEVNULL,
                )
                same = expected.read_bytes() == got.read_bytes()
                ok &= same
                lines = expected.read_bytes().count(b"\n")
                log(f"bench-check: {name}, native on {threads} thread(s): "
                    f"{'identical' if same else 'DIFFERENT'} ({lines} alerts)")
    return 0 if ok else 1


def bench(args) -> int:
    data = args.data or ROOT / "bench-data" / (
        "databricks-1m.jsonl" if args.events == 1_000_000 else f"databricks-{args.events}.jsonl"
    )
    if not args.data:
        ensure_data(data, args.events)
    size = data.stat().st_size
    with open(data, "rb") as f:
        args.events = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    threads = args.threads or os.cpu_count() or 1
    threaded = supports_threads(args.rulehost)
    if not threaded:
        log("bench: `rulehost eval` has no --threads: rulehost and native run on 1 thread")

    with tempfile.TemporaryDirectory(prefix="rulehost-bench-") as t:
        tmp = Path(t)
        two, fifty = write_rule_folders(tmp)
        thread_args = ["--threads", str(threads)] if threaded else []
        n_threads = threads if threaded else 1

        def native(rules: Path, n: int) -> list[str]:
            return [str(args.native), "--rules", str(rules), "--threads", str(n)]

        def rulehost(rules: Path) -> list[str]:
            return [str(args.rulehost), "eval", "--rules", str(rules), *thread_args]

        configs = [
            ("native-2", "native, 2 rules", native(two, n_threads)),
            ("rulehost-2", "rulehost, 2 rules", rulehost(two)),
            ("native-50", "native, 50 rules", native(fifty, n_threads)),
            ("rulehost-50", "rulehost, 50 rules", rulehost(fifty)),
        ]
        if not threaded and threads > 1:
            # For scale only: what a parallel native pipeline does on this machine.
            configs.append((f"native-2-t{threads}", f"native, 2 rules, {threads} threads "
                            "(info)", native(two, threads)))

        # Load time: 50 component files, empty input, with a fresh code cache: the first run
        # compiles (or has no cache), the next five load what it cached; their median is
        # the figure (a single run on this kind of VM can take twice as long).
        empty = tmp / "empty.jsonl"
        empty.write_bytes(b"")
        load_rules = write_load_folder(tmp)
        os.environ["RULEHOST_CACHE_DIR"] = str(tmp / "code-cache")
        load = []
        for _ in range(1 + LOAD_WARM_RUNS):
            res = measure([*rulehost(load_rules), "--output", str(tmp / "load.jsonl"),
                           str(empty)], tmp / "load.jsonl", tmp / "load.err")
            if res["exit"] != 0:
                log((tmp / "load.err").read_text(errors="replace")[-2000:])
                return 2
            load.append(res)
        del os.environ["RULEHOST_CACHE_DIR"]
        warm = sorted(load[1:], key=lambda r: r["wall"])
        load = [load[0], warm[len(warm) // 2]]

        runs: dict[str, list[dict]] = {key: [] for key, _, _ in configs}
        load_avg = [os.getloadavg()[0]]
        for r in range(1, args.rounds + 1):
            for key, label, cmd in configs:
                out, err = tmp / f"{key}.jsonl", tmp / f"{key}.err"
                res = measure([*cmd, "--output", str(out), str(data)], out, err)
                runs[key].append(res)
                log(f"bench: round {r}/{args.rounds}: {label:<28} {res['wall']:7.2f} s wall "
                    f"{res['cpu']:7.2f} s CPU {res['rss_mb']:6.0f} MB  exit {res['exit']}")
                if res["exit"] != 0:
                    log(err.read_text(errors="replace")[-2000:])
                    return 2
            load_avg.append(os.getloadavg()[0])

    hashes = {res["sha256"] for rs in runs.values() for res in rs}
    if len(hashes) != 1:
        log("bench: error: the runs wrote different alerts:")
        for key, rs in runs.items():
            log(f"  {key}: {sorted({r['sha256'] for r in rs})}")
        return 1

    report(args, data, size, runs, configs, load, threaded, n_threads, load_avg)
    return 0


def report(args, data, size, runs, configs, load, threaded, n_threads, load_avg) -> None:
    events = args.events
    med = {k: {m: statistics.median(r[m] for r in rs) for m in ("wall", "cpu", "rss_mb")}
           for k, rs in runs.items()}

    def ratio(a: str, b: str, metric: str = "wall") -> float:
        return statistics.median(x[metric] / y[metric] for x, y in zip(runs[a], runs[b]))

    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    p = print
    p(f"### `make bench`: {time.strftime('%Y-%m-%d')}, {machine()}, commit {rev}"
      f"{' + local changes' if args.dirty else ''}")
    p()
    p(f"{events:,} events, {size / 1e6:,.0f} MB (`{data.relative_to(ROOT)}`), "
      f"{n_threads} thread(s) each{'' if threaded else ' (rulehost eval has no --threads yet)'}; "
      f"median of {args.rounds} interleaved rounds; load average {min(load_avg):.1f}-"
      f"{max(load_avg):.1f}. Every run wrote the same alerts (sha256 match).")
    p()
    p("| run | wall s | CPU s | events/s | MB/s | peak RSS MB |")
    p("|---|---:|---:|---:|---:|---:|")
    for key, label, _ in configs:
        m = med[key]
        p(f"| {label} | {m['wall']:.2f} | {m['cpu']:.2f} | {fmt_eps(events / m['wall'])} | "
          f"{size / 1e6 / m['wall']:,.0f} | {m['rss_mb']:.0f} |")
    p(f"| rulehost, load 50 components, empty input: cached, median of {LOAD_WARM_RUNS} (1st) | {load[1]['wall']:.3f} "
      f"({load[0]['wall']:.3f}) | {load[1]['cpu']:.2f} | | | {load[1]['rss_mb']:.0f} |")
    p()
    r2, r50, many = ratio("rulehost-2", "native-2"), ratio("rulehost-50", "native-50"), \
        ratio("rulehost-50", "rulehost-2")
    p("| ratio (median of per-round ratios) | wall | CPU |")
    p("|---|---:|---:|")
    p(f"| rulehost / native, 2 rules | {r2:.2f}x | {ratio('rulehost-2', 'native-2', 'cpu'):.2f}x |")
    p(f"| rulehost / native, 50 rules | {r50:.2f}x | "
      f"{ratio('rulehost-50', 'native-50', 'cpu'):.2f}x |")
    p(f"| rulehost 50 / 2 rules | {many:.2f}x | {ratio('rulehost-50', 'rulehost-2', 'cpu'):.2f}x |")
    p(f"| native 50 / 2 rules | {ratio('native-50', 'native-2'):.2f}x | "
      f"{ratio('native-50', 'native-2', 'cpu'):.2f}x |")
    p()
    eps = events / med["rulehost-2"]["wall"]
    per_rule_us = (med["rulehost-50"]["cpu"] - med["rulehost-2"]["cpu"]) / SYNTHETIC_RULES \
        / events * 1e6
    p("| target | measured | verdict |")
    p("|---|---|---|")
    p(f"| rulehost wall <= {TARGET_RATIO}x native (2 rules) | {r2:.2f}x | "
      f"{verdict(r2 <= TARGET_RATIO)} |")
    p(f"| >= {TARGET_EPS // 1000}k events/s on 2 cores (2 rules) | {fmt_eps(eps)} events/s on "
      f"{n_threads} thread(s) | {verdict(eps >= TARGET_EPS)} |")
    p(f"| 48 extra rules <= {TARGET_MANY}x the 2-rule cost | {many:.2f}x "
      f"({per_rule_us:.2f} µs CPU per extra rule per event) | {verdict(many <= TARGET_MANY)} |")
    p(f"| load 50 cached components < {TARGET_LOAD_S * 1000:.0f} ms | "
      f"{load[1]['wall'] * 1000:.0f} ms (whole process, cached, median of {LOAD_WARM_RUNS}; 1st: "
      f"{load[0]['wall'] * 1000:.0f} ms) | "
      f"{verdict(load[1]['wall'] < TARGET_LOAD_S)} |")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "load": load}, indent=1) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events to generate (default 1M)")
    p.add_argument("--data", type=Path, help="use this JSON-lines file instead of generating")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--threads", type=int, help="threads when rulehost supports --threads "
                   "(default: CPU count)")
    p.add_argument("--rulehost", type=Path, default=ROOT / "target/release/rulehost")
    p.add_argument("--native", type=Path, default=ROOT / "target/release/rulehost-native")
    p.add_argument("--json", type=Path, default=ROOT / "bench-data" / "last-run.json",
                   help="where to keep every run's numbers")
    p.add_argument("--check", action="store_true",
                   help="only check that both binaries write identical alerts on the demo sample")
    args = p.parse_args(argv)
    if "RULEHOST_COMPONENTS" not in os.environ:
        os.environ["RULEHOST_COMPONENTS"] = str(ROOT / "build" / "components")
    for binary in (args.rulehost, args.native):
        if not binary.is_file():
            p.error(f"`{binary}` not found: run `make build native` first")
    args.dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"],
                                     capture_output=True, text=True).stdout.strip())
    return check(args) if args.check else bench(args)


if __name__ == "__main__":
    sys.exit(main())
