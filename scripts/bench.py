#!/usr/bin/env python3
"""`make bench`: rulehost against a native-Rust build of the same rules (stdlib only).

Generates 1M deterministic Databricks audit events once (bench-data/, git-ignored), then
runs, interleaved round after round (A B A B, machines are noisy):

* native 2 rules    `rulehost-native` with the two seed specs
* rulehost 2 rules  `rulehost eval` with the same specs and components
* native 50 rules   the seeds plus 48 native never-matching checks
* rulehost 50 rules the seeds plus `Synthetic.NoMatch.01`..`48` (one component, 48 RuleIDs)

and, in the same rounds, the peers a user would pick instead (issue 13):

* typed 2 rules     `rulehost-typed` (bench/typed): the seed rules hand-written over typed
                    structs, the ceiling
* DuckDB 2 rules    `bench/duckdb/rules.sql` run by PyPI `duckdb`, on the same threads
* rulehost slice    `rulehost eval` on the first 100k events, for the Panther ratio
* Panther slice     panther-core running Panther's own Python rules (read in place from a
                    panther-analysis checkout, `--panther-analysis`) on those 100k, one core

and, on the same 100k events, each seed rule alone three ways (issue 14): its Rust port in
`rulehost eval`, Panther's Python rule unchanged in `rulehost eval` (the Python runtime,
`build/runtimes/python.wasm`), and Panther's Python rule in panther-core. rulehost's cost per
event is its CPU on the slice less its CPU on an empty input (the same rule loaded, no
events), so start-up does not count; panther-core's is its rule loop's.

and reports medians of wall time, CPU time, events/s, MB/s and peak RSS, the per-round
ratios (rulehost/native, 50/2 rules, DuckDB/rulehost, rulehost/typed), the time to load 50
rules, and a verdict for each target of issues 5 and 13. The four rulehost and native runs
must write byte-identical alerts (the 48 extra rules never match, so all four
configurations write the same file); a difference fails the bench. The peers write one
record per alert (rule, dedup, window start, counts): those must name the same windows as
rulehost's alerts, and their counts per rule are printed side by side.

DuckDB and panther-core come from PyPI, pinned in `bench/requirements.txt`, installed
into a virtualenv the bench creates (`bench-data/venv`); without it (or with `--no-peers`)
those rows are left out and their targets reported as not measured.

`--threads N` is passed to both binaries only when `rulehost eval --help` offers it.
`--check` only compares the two binaries' output on the committed demo sample.
`--python-rules` (`make bench-python`) runs only issue 14's rows, on the same first 100k events,
and prints their table.
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
# The seed rules' specs: a fixed folder, so that adding a rule to rules-tests/ changes
# neither what the bench runs nor which native ports it needs (bench/native).
SEED_DIR = ROOT / "rules-tests" / "seed"
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

# Issue 13's targets.
TARGET_DUCKDB = 1.5  # rulehost wall <= DuckDB wall / 1.5
TARGET_TYPED = 1.6  # rulehost wall <= 1.6x the typed native detector
TARGET_PANTHER = 40  # rulehost events per CPU second >= 40x Panther's engine
SLICE_EVENTS = 100_000  # events given to Panther's engine (and rulehost, for the ratio)
# Issue 14's target: a Python rule in rulehost is not slower than in Panther's engine.
TARGET_PYTHON = 1.0  # rulehost Python CPU per event <= 1.0x panther-core's
# A call's deadline is wall time: on a busy machine a Python call may wait for a core longer
# than the default 100 ms (README, "Bring your Panther rules").
PYTHON_TIMEOUT_MS = "5000"
REQUIREMENTS = ROOT / "bench" / "requirements.txt"
# What DuckDB's SQL cannot say as rulehost does (bench/duckdb/rules.sql says why).
DUCKDB_GAPS = (
    "null vs missing (`read_ndjson` gives SQL NULL for both: a `workspaceId: null` titles "
    "\"Unknown Workspace\", not Panther's \"None\")",
    "the case-insensitive key fallback (keys match exactly)",
    "duplicate keys (an error, where Python keeps the last value)",
    "Python's `str()` of a float, boolean or object value (SQL casts it)",
    "a value of another type than declared (an error)",
    "event times other than epoch ms or ISO 8601; it assumes the input in time order",
)


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
            shutil.copy(SEED_DIR / name, d / name)
    for i in range(1, SYNTHETIC_RULES + 1):
        (fifty / f"synthetic_no_match_{i:02}.yml").write_text(synthetic_spec(i))
    return two, fifty


def write_load_folder(tmp: Path) -> Path:
    """50 specs, each with its own component file (48 copies of the no-match component
    next to their specs), so that loading them loads 50 components."""
    load = tmp / "rules-50-load"
    load.mkdir()
    for name in SEED_SPECS:
        shutil.copy(SEED_DIR / name, load / name)
    for i in range(1, SYNTHETIC_RULES + 1):
        wasm = f"synthetic_no_match_{i:02}.wasm"
        shutil.copy(components_dir() / "synthetic_no_match.wasm", load / wasm)
        (load / f"synthetic_no_match_{i:02}.yml").write_text(synthetic_spec(i, wasm))
    return load


def write_single_rule_folders(tmp: Path, panther_analysis: Path) -> dict[str, tuple[Path, Path]]:
    """For each seed rule: a folder with its spec alone (the Rust port) and one with
    Panther's spec and `.py` for it, copied unchanged from `panther_analysis`."""
    folders = {}
    for name in SEED_SPECS:
        stem = Path(name).stem
        rust, python = tmp / f"rust-{stem}", tmp / f"python-{stem}"
        rust.mkdir()
        python.mkdir()
        shutil.copy(SEED_DIR / name, rust / name)
        for suffix in (".yml", ".py"):
            src = panther_analysis / "rules" / "databricks_rules" / (stem + suffix)
            shutil.copy(src, python / src.name)
        folders[stem] = (rust, python)
    return folders


def python_runtime() -> Path:
    """The Python runtime `rulehost eval` will use (the Makefile exports the variable)."""
    return Path(os.environ.get("RULEHOST_PYTHON_RUNTIME",
                               ROOT / "build" / "runtimes" / "python.wasm"))


def short(stem: str) -> str:
    """`databricks_install_library_all_clusters` -> `InstallLibraryAllClusters`."""
    return "".join(p.title() for p in stem.removeprefix("databricks_").split("_"))


def write_slice(data: Path, dest: Path, events: int) -> int:
    """The first `events` lines of `data`; returns how many there were."""
    n = 0
    with open(data, "rb") as src, open(dest, "wb") as out:
        for line in src:
            out.write(line)
            n += 1
            if n == events:
                break
    return n


# --------------------------------------------------------------------------
# Peers: the virtualenv, alert records
# --------------------------------------------------------------------------

def ensure_venv(venv: Path) -> Path | None:
    """The virtualenv's python with `bench/requirements.txt` installed (once: a stamp holds
    the requirements' hash), or None when it cannot be made (no network, no venv module)."""
    python = venv / "bin" / "python"
    stamp = venv / "requirements.sha256"
    want = sha256_file(REQUIREMENTS)
    if python.is_file() and stamp.is_file() and stamp.read_text().strip() == want:
        return python
    log(f"bench: installing `{REQUIREMENTS.relative_to(ROOT)}` into `{venv}`...")
    try:
        if not python.is_file():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS)], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        log(f"bench: warning: no virtualenv for DuckDB and panther-core ({e}): those rows "
            "are left out\n\nhint: on Debian, `apt-get install python3-venv`; pip needs PyPI")
        return None
    stamp.write_text(want + "\n")
    return python


def alert_keys(path: Path) -> list[tuple]:
    """What identifies each alert in an output file, sorted: rulehost's alert records and
    the peers' records alike (rule, dedup, window start, event and unique counts)."""
    keys = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind", "alert") == "alert":
                keys.append((r["rule_id"], r["dedup"], r["window_start"], r["event_count"],
                             r.get("unique_count")))
    return sorted(keys)


def per_rule(keys: list[tuple]) -> dict[str, int]:
    counts = {}
    for k in keys:
        counts[k[0]] = counts.get(k[0], 0) + 1
    return counts


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
    """Byte-identical output on the demo sample, 2 and 50 rules, 1 and 2 threads; and
    the typed detector's alerts against rulehost's (`rulehost-typed --check`)."""
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
            if rules is two:
                for threads in (1, 2):
                    typed = subprocess.run(
                        [str(args.typed), "--threads", str(threads), "--output", os.devnull,
                         "--check", str(expected), str(sample)],
                        stderr=subprocess.DEVNULL,
                    )
                    ok &= typed.returncode == 0
                    log(f"bench-check: {name}, typed on {threads} thread(s): "
                        f"{'same windows' if typed.returncode == 0 else 'DIFFERENT'}")
    return 0 if ok else 1


def python_rule_configs(args, tmp: Path, slice_path: Path, empty: Path, python: Path | None,
                        threaded: bool, peers: dict) -> tuple[list, dict, set]:
    """Issue 14's rows: each seed rule alone as its Rust port and as Panther's Python rule
    in rulehost (each also on an empty input: its start-up), and in panther-core (when
    `python`, the peers' virtualenv, is there). Sets `peers["python_rules"]`."""
    configs, inputs, keyed = [], {}, set()
    peers["python_rules"] = []
    rules_dir = args.panther_analysis / "rules" / "databricks_rules"
    if not rules_dir.is_dir():
        log(f"bench: warning: no `{rules_dir}`: the Python rule rows are left out")
        return configs, inputs, keyed
    if not python_runtime().is_file():
        log(f"bench: warning: no `{python_runtime()}`: the Python rule rows are left out\n\n"
            "hint: `make python-runtime`")
        return configs, inputs, keyed
    helpers = ["--helpers", str(args.panther_analysis / "global_helpers"),
               "--timeout-ms", PYTHON_TIMEOUT_MS]

    # One worker, as Panther's engine has one core: the CPU per event of one rule.
    # The empty run loads the rule (its trial instance); the slice run also makes
    # the worker's instance, a one-off left in the per-event figure.
    def one_thread(rules: Path) -> list[str]:
        return [str(args.rulehost), "eval", "--rules", str(rules),
                *(["--threads", "1"] if threaded else [])]

    k = peers["slice_events"] // 1000
    for stem, (rust, py) in write_single_rule_folders(tmp, args.panther_analysis).items():
        name = short(stem)
        peers["python_rules"].append(stem)
        runs_of = [(f"rust-{stem}", f"rulehost, Rust port: {name}", one_thread(rust)),
                   (f"python-{stem}", f"rulehost, Python rule: {name}",
                    [*one_thread(py), *helpers])]
        for key, label, cmd in runs_of:
            configs.append((key, f"{label}, first {k}k", cmd))
            inputs[key] = slice_path
            configs.append((f"{key}-empty", f"{label}, empty input", cmd))
            inputs[f"{key}-empty"] = empty
            keyed.add(key)
        if python:
            key = f"panther-{stem}"
            configs.append((key, f"Panther engine: {name}, first {k}k, 1 core",
                            [str(python), str(ROOT / "bench" / "panther" / "run.py"),
                             "--panther-analysis", str(args.panther_analysis),
                             "--rule", stem, "--stats", str(tmp / f"{key}-stats.json")]))
            inputs[key] = slice_path
            keyed.add(key)
        # The runtime's first compile (~10 s, then cached) is not a round's cost.
        subprocess.run([*one_thread(py), *helpers, "--output", os.devnull, str(empty)],
                       check=True, stderr=subprocess.DEVNULL)
    return configs, inputs, keyed


def run_rounds(args, tmp: Path, configs: list, inputs: dict, keyed: set, data: Path):
    """Runs every config once per round, interleaved: (runs, alert keys, load averages),
    or an exit code when a run failed or a keyed config wrote other alerts than before."""
    runs: dict[str, list[dict]] = {key: [] for key, _, _ in configs}
    keys: dict[str, list[tuple]] = {}
    load_avg = [os.getloadavg()[0]]
    for r in range(1, args.rounds + 1):
        for key, label, cmd in configs:
            out, err = tmp / f"{key}.jsonl", tmp / f"{key}.err"
            res = measure([*cmd, "--output", str(out), str(inputs.get(key, data))], out, err)
            runs[key].append(res)
            log(f"bench: round {r}/{args.rounds}: {label:<28} {res['wall']:7.2f} s wall "
                f"{res['cpu']:7.2f} s CPU {res['rss_mb']:6.0f} MB  exit {res['exit']}")
            if res["exit"] != 0:
                log(err.read_text(errors="replace")[-2000:])
                return 2
            if key in keyed:
                got = alert_keys(out)
                res["alerts"] = per_rule(got)
                if keys.setdefault(key, got) != got:
                    log(f"bench: error: {label} wrote different alerts in round {r}")
                    return 1
            if key.startswith("panther-"):
                res["engine_cpu"] = json.loads((tmp / f"{key}-stats.json").read_text())[
                    "cpu_s"]
        load_avg.append(os.getloadavg()[0])
    return runs, keys, load_avg


def python_same_alerts(peers: dict, keys: dict) -> None:
    """Whether each Python row raised its Rust port's alerts, into `peers["same_alerts"]`."""
    same = peers.setdefault("same_alerts", {})
    for stem in peers["python_rules"]:
        for other in (f"python-{stem}", f"panther-{stem}"):
            if other in keys:
                same[other] = keys[other] == keys[f"rust-{stem}"]


def bench_data(args) -> Path:
    """The JSON-lines file to run on: `--data`, else the generated one (made if missing)."""
    data = args.data.resolve() if args.data else ROOT / "bench-data" / (
        "databricks-1m.jsonl" if args.events == 1_000_000 else f"databricks-{args.events}.jsonl"
    )
    if not args.data:
        ensure_data(data, args.events)
    return data


def commit(args) -> str:
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    return rev + (" + local changes" if args.dirty else "")


def python_only(args) -> int:
    """`--python-rules`: issue 14's rows alone (each seed rule as its Rust port, as Panther's
    Python rule in rulehost, and in panther-core), on the first events of the bench file,
    interleaved rounds; prints their table."""
    data = bench_data(args)
    with tempfile.TemporaryDirectory(prefix="rulehost-bench-") as t:
        tmp = Path(t)
        peers: dict = {}
        slice_path = tmp / "slice.jsonl"
        peers["slice_events"] = write_slice(data, slice_path, SLICE_EVENTS)
        peers["slice_bytes"] = slice_path.stat().st_size
        empty = tmp / "empty.jsonl"
        empty.write_bytes(b"")
        python = None if args.no_peers else ensure_venv(args.venv)
        configs, inputs, keyed = python_rule_configs(
            args, tmp, slice_path, empty, python, supports_threads(args.rulehost), peers)
        if not configs:
            return 2
        done = run_rounds(args, tmp, configs, inputs, keyed, slice_path)
        if isinstance(done, int):
            return done
        runs, keys, load_avg = done
    python_same_alerts(peers, keys)
    med = {k: {m: statistics.median(r[m] for r in rs) for m in ("wall", "cpu", "rss_mb")}
           for k, rs in runs.items()}
    print(f"### `make bench-python`: {time.strftime('%Y-%m-%d')}, {machine()}, commit "
          f"{commit(args)}")
    print()
    print(f"Median of {args.rounds} interleaved rounds; load average {min(load_avg):.1f}-"
          f"{max(load_avg):.1f}.")
    print()
    print("| run | wall s | CPU s | peak RSS MB |")
    print("|---|---:|---:|---:|")
    for key, label, _ in configs:
        m = med[key]
        print(f"| {label} | {m['wall']:.2f} | {m['cpu']:.2f} | {m['rss_mb']:.0f} |")
    report_python(runs, med, peers)
    (args.json or ROOT / "bench-data" / "last-python-run.json").write_text(
        json.dumps({"runs": runs, "peers": peers}, indent=1) + "\n")
    return 0


def bench(args) -> int:
    data = bench_data(args)
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
        same_output = [key for key, _, _ in configs]

        # The peers (issue 13): each writes its own alert records, compared by key.
        peers = {"threads": n_threads}
        inputs: dict[str, Path] = {}
        configs.append(("typed-2", "typed native, 2 rules",
                        [str(args.typed), "--threads", str(n_threads)]))
        python = None if args.no_peers else ensure_venv(args.venv)
        if python:
            peers["duckdb"] = subprocess.run(
                [str(python), "-c", "import duckdb; print(duckdb.__version__)"],
                capture_output=True, text=True, check=True).stdout.strip()
            configs.append(("duckdb-2", f"DuckDB {peers['duckdb']}, 2 rules",
                            [str(python), str(ROOT / "bench" / "duckdb" / "run.py"),
                             "--threads", str(n_threads)]))
        slice_path = tmp / "slice.jsonl"
        peers["slice_events"] = write_slice(data, slice_path, SLICE_EVENTS)
        peers["slice_bytes"] = slice_path.stat().st_size
        configs.append(("rulehost-slice", f"rulehost, 2 rules, first "
                        f"{peers['slice_events'] // 1000}k events", rulehost(two)))
        inputs["rulehost-slice"] = slice_path
        rules_dir = args.panther_analysis / "rules" / "databricks_rules"
        if python and rules_dir.is_dir():
            configs.append(("panther-slice", f"Panther engine (panther-core), first "
                            f"{peers['slice_events'] // 1000}k events, 1 core",
                            [str(python), str(ROOT / "bench" / "panther" / "run.py"),
                             "--panther-analysis", str(args.panther_analysis),
                             "--stats", str(tmp / "panther-slice-stats.json")]))
            inputs["panther-slice"] = slice_path
        elif python:
            log(f"bench: warning: no `{rules_dir}`: the Panther row is left out\n\n"
                "hint: pass --panther-analysis DIR (a panther-analysis checkout)")
        keyed = {"rulehost-2", "typed-2", "duckdb-2", "rulehost-slice", "panther-slice"}
        empty = tmp / "empty.jsonl"
        empty.write_bytes(b"")

        # Issue 14: each seed rule alone, as a Rust port and as Panther's Python rule in
        # rulehost, and in panther-core.
        rows, row_inputs, row_keyed = python_rule_configs(args, tmp, slice_path, empty, python,
                                                          threaded, peers)
        configs += rows
        inputs.update(row_inputs)
        keyed |= row_keyed

        # Load time: 50 component files, empty input, with a fresh code cache: the first run
        # compiles (or has no cache), the next five load what it cached; their median is
        # the figure (a single run on this kind of VM can take twice as long).
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

        done = run_rounds(args, tmp, configs, inputs, keyed, data)
        if isinstance(done, int):
            return done
        runs, keys, load_avg = done

    hashes = {res["sha256"] for key in same_output for res in runs[key]}
    if len(hashes) != 1:
        log("bench: error: the runs wrote different alerts:")
        for key in same_output:
            log(f"  {key}: {sorted({r['sha256'] for r in runs[key]})}")
        return 1
    # The typed detector is the ceiling only if it finds exactly rulehost's alerts.
    if keys["typed-2"] != keys["rulehost-2"]:
        log("bench: error: rulehost-typed's alerts differ from rulehost's "
            "(`rulehost-typed --check` shows which)")
        return 1
    peers["same_alerts"] = {
        "typed-2": True,
        "duckdb-2": keys.get("duckdb-2") == keys["rulehost-2"] if "duckdb-2" in keys else None,
        "panther-slice": keys.get("panther-slice") == keys["rulehost-slice"]
        if "panther-slice" in keys else None,
    }
    python_same_alerts(peers, keys)

    report(args, data, size, runs, configs, load, threaded, n_threads, load_avg, peers)
    return 0


def report(args, data, size, runs, configs, load, threaded, n_threads, load_avg,
           peers) -> None:
    events = args.events
    med = {k: {m: statistics.median(r[m] for r in rs) for m in ("wall", "cpu", "rss_mb")}
           for k, rs in runs.items()}

    def ratio(a: str, b: str, metric: str = "wall") -> float:
        return statistics.median(x[metric] / y[metric] for x, y in zip(runs[a], runs[b]))

    p = print
    p(f"### `make bench`: {time.strftime('%Y-%m-%d')}, {machine()}, commit {commit(args)}")
    p()
    p(f"{events:,} events, {size / 1e6:,.0f} MB (`{data.relative_to(ROOT)}`), "
      f"{n_threads} thread(s) each{'' if threaded else ' (rulehost eval has no --threads yet)'}; "
      f"median of {args.rounds} interleaved rounds; load average {min(load_avg):.1f}-"
      f"{max(load_avg):.1f}. The rulehost and native runs wrote the same alerts (sha256 "
      f"match); the peers' alerts are compared below.")
    p()
    p("| run | wall s | CPU s | events/s | MB/s | peak RSS MB |")
    p("|---|---:|---:|---:|---:|---:|")
    for key, label, _ in configs:
        m = med[key]
        if key.endswith("-empty"):
            p(f"| {label} | {m['wall']:.2f} | {m['cpu']:.2f} | | | {m['rss_mb']:.0f} |")
            continue
        on_slice = key.endswith("-slice") or key.startswith(("rust-", "python-", "panther-"))
        n, b = (peers["slice_events"], peers["slice_bytes"]) if on_slice else (events, size)
        p(f"| {label} | {m['wall']:.2f} | {m['cpu']:.2f} | {fmt_eps(n / m['wall'])} | "
          f"{b / 1e6 / m['wall']:,.0f} | {m['rss_mb']:.0f} |")
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
    p()
    report_peers(runs, med, ratio, many, n_threads, peers)
    report_python(runs, med, peers)
    (args.json or ROOT / "bench-data" / "last-run.json").write_text(
        json.dumps({"runs": runs, "load": load, "peers": peers}, indent=1) + "\n")


def report_peers(runs, med, ratio, many, n_threads, peers) -> None:
    """Issue 13's table: rulehost against the tools a user would pick instead."""
    p = print
    not_measured = "not measured (`--no-peers`, or no virtualenv)"
    p(f"#### Against the peers (issue 13): same file, {n_threads} thread(s), medians of "
      "interleaved rounds")
    p()
    p("| target | measured | verdict |")
    p("|---|---|---|")
    rh = med["rulehost-2"]["wall"]
    if "duckdb-2" in runs:
        d = ratio("duckdb-2", "rulehost-2")
        p(f"| rulehost wall <= DuckDB wall / {TARGET_DUCKDB} (2 rules) | DuckDB / rulehost "
          f"{d:.2f}x (DuckDB {med['duckdb-2']['wall']:.2f} s, rulehost {rh:.2f} s) | "
          f"{verdict(d >= TARGET_DUCKDB)} |")
    else:
        p(f"| rulehost wall <= DuckDB wall / {TARGET_DUCKDB} (2 rules) | {not_measured} | |")
    t = ratio("rulehost-2", "typed-2")
    p(f"| rulehost wall <= {TARGET_TYPED}x a hand-written typed detector (2 rules) | {t:.2f}x "
      f"(typed {med['typed-2']['wall']:.2f} s, rulehost {rh:.2f} s; CPU "
      f"{ratio('rulehost-2', 'typed-2', 'cpu'):.2f}x) | {verdict(t <= TARGET_TYPED)} |")
    n = peers["slice_events"]
    rh_eps = n / med["rulehost-slice"]["cpu"]
    if "panther-slice" in runs:
        engine = statistics.median(r["engine_cpu"] for r in runs["panther-slice"])
        pa_eps = n / engine
        p(f"| events per CPU second >= {TARGET_PANTHER}x Panther's engine (first {n:,} "
          f"events) | {rh_eps / pa_eps:.1f}x (rulehost {fmt_eps(rh_eps)}: whole process, "
          f"{n_threads} thread(s); panther-core {pa_eps / 1000:,.1f}k: its rule loop alone, "
          f"1 core) | {verdict(rh_eps / pa_eps >= TARGET_PANTHER)} |")
    else:
        p(f"| events per CPU second >= {TARGET_PANTHER}x Panther's engine | {not_measured} "
          f"(rulehost: {fmt_eps(rh_eps)} per CPU second) | |")
    p(f"| 50 rules <= {TARGET_MANY}x the 2-rule wall time | {many:.2f}x | "
      f"{verdict(many <= TARGET_MANY)} |")
    p(f"| peak memory bounded by threads × batch size, not input size | rulehost "
      f"{med['rulehost-2']['rss_mb']:.0f} MB on the whole file, "
      f"{med['rulehost-slice']['rss_mb']:.0f} MB on its first {n:,} events; typed "
      f"{med['typed-2']['rss_mb']:.0f} MB"
      + (f", DuckDB {med['duckdb-2']['rss_mb']:.0f} MB" if "duckdb-2" in runs else "")
      + " | reported |")
    p(f"| (why not native) rulehost / rulehost-native, which shares rulehost's parser, "
      f"windows and records, so it measures the sandbox alone | "
      f"{ratio('rulehost-2', 'native-2'):.2f}x | |")
    p()
    columns = [("rulehost-2", "rulehost"), ("typed-2", "typed native"), ("duckdb-2", "DuckDB"),
               ("rulehost-slice", f"rulehost, first {n // 1000}k"),
               ("panther-slice", f"Panther engine, first {n // 1000}k")]
    columns = [(k, name) for k, name in columns if k in runs]
    rules = sorted({r for k, _ in columns for r in runs[k][0]["alerts"]})
    p("| alerts | " + " | ".join(name for _, name in columns) + " |")
    p("|---|" + "---:|" * len(columns))
    for rule in rules:
        p(f"| `{rule}` | " + " | ".join(str(runs[k][0]["alerts"].get(rule, 0))
                                       for k, _ in columns) + " |")
    same = {True: "yes", False: "**no**", None: ""}
    p("| same windows as rulehost's (rule, dedup, start, counts) | | "
      + " | ".join(("(Panther's reference)" if "panther-slice" in runs else "")
                   if k == "rulehost-slice"
                   else same[peers["same_alerts"].get(k)] for k, _ in columns[1:]) + " |")
    p()
    p("Notes: rulehost-typed (`bench/typed`) deserializes only the five values the rules and "
      "the clock read, with Panther's lookups, and keeps rulehost's windows: the ceiling. "
      f"DuckDB (`bench/duckdb/rules.sql`) anchors windows with a recursive CTE and an ASOF "
      f"join; it cannot express: {'; '.join(DUCKDB_GAPS)}. Panther's engine "
      "(`bench/panther/run.py`) runs Panther's own Python rules with `json.loads`, "
      "`PantherEvent` and `Rule.run`; its CPU is that loop's, without interpreter start-up; "
      "the windows (Panther's backend keeps them) are rulehost's, applied afterwards and "
      "not timed.")


def report_python(runs, med, peers) -> None:
    """Issue 14's table: each seed rule as Panther wrote it, in rulehost and in Panther's
    engine, beside its Rust port, in CPU µs per event."""
    if not peers["python_rules"]:
        return
    p = print
    n = peers["slice_events"]
    p()

    def rulehost_us(key: str) -> float:
        # The slice's CPU less the same run's on no events: loading is not per event.
        return max(med[key]["cpu"] - med[f"{key}-empty"]["cpu"], 0.0) / n * 1e6

    p(f"#### Python rules (issue 14): each seed rule alone, first {n:,} events, 1 thread; "
      "CPU µs per event (medians)")
    p()
    p("| rule | rulehost, Rust port | rulehost, Panther's Python rule | Panther's engine "
      "(panther-core) | Python / Rust | Panther / rulehost Python | rulehost Python not "
      "slower than Panther's engine | same alerts as the Rust port (Python, Panther) |")
    p("|---|---:|---:|---:|---:|---:|---|---|")
    same = {True: "yes", False: "**no**", None: "–"}
    for stem in peers["python_rules"]:
        rust, py = rulehost_us(f"rust-{stem}"), rulehost_us(f"python-{stem}")
        key = f"panther-{stem}"
        if key in med:
            engine = statistics.median(r["engine_cpu"] for r in runs[key]) / n * 1e6
            panther = f"{engine:.1f}"
            versus = f"{engine / py:.1f}x" if py else "–"
            ok = verdict(py <= TARGET_PYTHON * engine)
        else:
            panther = versus = "not measured (`--no-peers`, or no virtualenv)"
            ok = ""
        p(f"| `{short(stem)}` | {rust:.2f} | {py:.1f} | {panther} | "
          f"{py / rust if rust else float('nan'):.0f}x | {versus} | {ok} | "
          f"{same[peers['same_alerts'].get(f'python-{stem}')]}, "
          f"{same[peers['same_alerts'].get(key)]} |")
    p()
    p("rulehost's figures are whole-process CPU on the slice less the same run on an empty "
      "input (loading and, for Python, the runtime's instances); its parse of each event "
      "(~2 µs) is in both. Panther's engine's is its rule loop alone (`json.loads`, "
      "`PantherEvent`, `Rule.run`).")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events to generate (default 1M)")
    p.add_argument("--data", type=Path, help="use this JSON-lines file instead of generating")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--threads", type=int, help="threads when rulehost supports --threads "
                   "(default: CPU count)")
    p.add_argument("--rulehost", type=Path, default=ROOT / "target/release/rulehost")
    p.add_argument("--native", type=Path, default=ROOT / "target/release/rulehost-native")
    p.add_argument("--typed", type=Path, default=ROOT / "target/release/rulehost-typed")
    p.add_argument("--venv", type=Path, default=ROOT / "bench-data" / "venv",
                   help="virtualenv for DuckDB and panther-core (created when missing)")
    p.add_argument("--panther-analysis", type=Path,
                   default=ROOT.parent / "shared" / "panther-analysis",
                   help="panther-analysis checkout whose Databricks rules Panther's engine runs")
    p.add_argument("--no-peers", action="store_true",
                   help="leave out DuckDB and Panther's engine (no virtualenv, no network)")
    p.add_argument("--json", type=Path,
                   help="where to keep every run's numbers (default: bench-data/last-run.json, "
                   "with --python-rules bench-data/last-python-run.json)")
    p.add_argument("--check", action="store_true",
                   help="only check that both binaries write identical alerts on the demo sample")
    p.add_argument("--python-rules", action="store_true",
                   help="only the Python rule rows (issue 14): each seed rule as its Rust "
                   "port, as Panther's Python rule in rulehost and in Panther's engine")
    args = p.parse_args(argv)
    if "RULEHOST_COMPONENTS" not in os.environ:
        os.environ["RULEHOST_COMPONENTS"] = str(ROOT / "build" / "components")
    needed = (args.rulehost,) if args.python_rules else (args.rulehost, args.native, args.typed)
    for binary in needed:
        if not binary.is_file():
            p.error(f"`{binary}` not found: run `make build native typed` first")
    args.dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"],
                                     capture_output=True, text=True).stdout.strip())
    if args.check:
        return check(args)
    return python_only(args) if args.python_rules else bench(args)


if __name__ == "__main__":
    sys.exit(main())
