#!/usr/bin/env python3
"""`make bench`'s Panther peer: Panther's own engine (panther-core) running Panther's own
Python rules, one core.

Loads the two seed rules (or those named by `--rule`) from a panther-analysis checkout, in place
(`rules/databricks_rules/*.py`, with `global_helpers/` on the import path), and runs them
on a JSON-lines file the way Panther's log analysis does: `json.loads`, a `PantherEvent`,
then `Rule.run(..., batch_mode=True)` per rule (filters, `rule`, and on a match the title,
dedup, alert context and unique functions). It reports the CPU seconds of that loop.

Panther's backend, not panther-core, keeps the dedup windows (by processing time). So that
the alerts can be compared with rulehost's, the matches are then put through rulehost's
windows (event time, anchored at the first match, Threshold on distinct `unique` values)
and written as the records `rulehost-typed` writes. That part is not timed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

RULES = (
    "databricks_access_to_multiple_workspaces",
    "databricks_install_library_all_clusters",
)


def spec(yml: Path) -> dict:
    """RuleID, DedupPeriodMinutes and Threshold from a rule's YAML (no YAML parser needed)."""
    text = yml.read_text()

    def field(name: str, default: str) -> str:
        m = re.search(rf"^{name}:\s*\"?([^\"\n]+?)\"?\s*$", text, re.M)
        return m.group(1) if m else default

    return {
        "id": field("RuleID", yml.stem),
        "period_ms": (int(field("DedupPeriodMinutes", "60")) or 60) * 60_000,
        "threshold": int(field("Threshold", "1")) or 1,
    }


def event_time(event: dict) -> int | None:
    """`p_event_time`, else `timestamp`, when it is epoch ms (the bench file's form)."""
    for key in ("p_event_time", "timestamp"):
        v = event.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return int(v)
        if isinstance(v, str) and v.strip().isdigit():
            return int(v)
    return None


def format_ms(ms: int) -> str:
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))
    frac = ms % 1000
    return f"{text}{f'.{frac:03}'.rstrip('0') if frac else ''}Z"


def windows(specs: list[dict], matches: list[tuple]) -> list[dict]:
    """rulehost's windows over (time, newest time before, rule, dedup, unique) matches."""
    live: dict[tuple, dict] = {}
    alerts = []
    watermark = None
    seq = 0

    def advance(t: int) -> None:
        nonlocal watermark
        if watermark is not None and watermark >= t:
            return
        watermark = t
        for key in [k for k, w in live.items() if w["end"] <= t]:
            close(key, live.pop(key))

    def close(key: tuple, w: dict) -> None:
        if w["alerted"]:
            record = {"rule_id": specs[key[0]]["id"], "dedup": key[1],
                      "window_start": format_ms(w["start"]), "event_count": w["events"]}
            if w["uniques"] is not None:
                record["unique_count"] = len(w["uniques"])
            alerts.append(record)

    for t, before, rule, dedup, unique in matches:
        if before is not None:
            advance(before)
        t = t if t is not None else (watermark or 0)
        advance(t)
        key = (rule, dedup)
        w = live.get(key)
        if w is None:
            seq += 1
            w = live[key] = {"start": t, "end": t + specs[rule]["period_ms"], "events": 0,
                             "uniques": set() if unique is not None else None,
                             "alerted": False}
        w["events"] += 1
        if w["uniques"] is not None:
            w["uniques"].add(unique)
        count = len(w["uniques"]) if w["uniques"] is not None else w["events"]
        w["alerted"] |= count >= specs[rule]["threshold"]
    for key, w in live.items():
        close(key, w)
    return alerts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", type=Path, help="JSON-lines file")
    p.add_argument("--panther-analysis", type=Path, required=True,
                   help="a panther-analysis checkout (rules/ and global_helpers/)")
    p.add_argument("--output", "-o", type=Path, help="alert records (default: stdout)")
    p.add_argument("--stats", type=Path, help="write {events, cpu_s} here as JSON")
    p.add_argument("--rule", action="append", choices=RULES,
                   help="run only this rule (repeatable; default: both seed rules)")
    args = p.parse_args(argv)

    root = args.panther_analysis
    sys.path.insert(0, str(root / "global_helpers"))
    from panther_core.enriched_event import PantherEvent
    from panther_core.rule import Rule

    specs, rules = [], []
    for name in args.rule or RULES:
        path = root / "rules" / "databricks_rules" / f"{name}.py"
        s = spec(path.with_suffix(".yml"))
        rule = Rule({"id": s["id"], "versionId": "bench", "path": str(path),
                     "analysisType": "RULE", "dedupPeriodMinutes": s["period_ms"] // 60_000})
        if rule.setup_exception:
            raise SystemExit(f"error: `{path}`: {rule.setup_exception!r}")
        specs.append(s)
        rules.append(rule)

    matches = []
    events = 0
    newest = None
    with open(args.input, "rb") as f:
        started = time.process_time()
        for line in f:
            if not line.strip():
                continue
            raw = json.loads(line)
            event = PantherEvent(raw)
            events += 1
            t = event_time(raw)
            for i, rule in enumerate(rules):
                result = rule.run(event, {}, {}, batch_mode=True)
                if result.trigger_alert:
                    matches.append((t, newest, i, result.dedup_output, result.unique_output))
            if t is not None and (newest is None or t > newest):
                newest = t
        cpu = time.process_time() - started

    alerts = windows(specs, matches)
    out = open(args.output, "w") if args.output else sys.stdout
    for a in alerts:
        out.write(json.dumps(a, ensure_ascii=False, separators=(",", ":")) + "\n")
    out.flush()
    if args.stats:
        args.stats.write_text(json.dumps({"events": events, "cpu_s": cpu}) + "\n")
    per_rule = {s["id"]: sum(a["rule_id"] == s["id"] for a in alerts) for s in specs}
    print(f"panther-core: {events} events in {cpu:.2f} CPU s ({events / cpu:,.0f} events per "
          f"CPU second); alerts: " + ", ".join(f"`{r}` {n}" for r, n in per_rule.items()),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
