#!/usr/bin/env python3
"""Dev-only: do Panther's Python rules alert the same in rulehost as in Panther's engine?

Runs every Python rule of a panther-analysis style folder over a JSON-lines file twice:
with panther-core (PyPI, pinned below, in a virtualenv of its own that this script makes)
and with `rulehost eval`. Panther's engine gives each event's match, dedup, title and
unique value; this script groups the matches into windows with rulehost's documented
rules (README, "Alert semantics": keyed by RuleID and dedup, fixed, anchored at the first
match, `DedupPeriodMinutes` long, event time, an alert once `Threshold` matches or
distinct unique values are reached). Then it compares the alerts: rule id, dedup, title,
event count and unique count. Exit 0 when they are the same, 1 when they differ.

    python3 scripts/panther_compare.py --pack ../shared/panther-analysis \\
        --rules ../shared/panther-analysis/rules/databricks_rules \\
        --events demo/databricks-audit-sample.jsonl
"""

import argparse
import collections
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# panther-core's engine and what Panther's helpers import; PyYAML reads the specs.
REQUIREMENTS = [
    "panther-core==0.16.3",
    "jmespath==1.0.1",
    "python-dateutil==2.9.0.post0",
    "PyYAML==6.0.2",
]
VENV = REPO / "build" / "panther-venv"


def ensure_venv():
    """Re-runs this script in the virtualenv with panther-core, made on first use."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            + REQUIREMENTS,
            check=True,
        )
    os.execv(str(python), [str(python), __file__] + sys.argv[1:])


def event_time_ms(event):
    """rulehost's default clock: `p_event_time`, else Databricks' `timestamp` (epoch ms)."""
    from datetime import datetime, timezone

    value = event.get("p_event_time")
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return int(parsed.timestamp() * 1000)
    value = event.get("timestamp")
    return int(value) if isinstance(value, (int, float)) else None


def panther_alerts(pack, rules_dir, events_path):
    import yaml
    from panther_core.enriched_event import PantherEvent
    from panther_core.rule import Rule

    sys.path.insert(0, str(Path(pack) / "global_helpers"))
    rules = []
    for spec_path in sorted(Path(rules_dir).rglob("*.yml")):
        spec = yaml.safe_load(spec_path.read_text())
        if spec.get("AnalysisType") != "rule" or not spec["Filename"].endswith(".py"):
            continue
        body = (spec_path.parent / spec["Filename"]).read_text()
        rule = Rule(
            {
                "id": spec["RuleID"],
                "versionId": "compare",
                "body": body,
                "analysisType": "RULE",
                "dedupPeriodMinutes": spec.get("DedupPeriodMinutes") or 60,
            }
        )
        rules.append((spec, rule))

    windows = {}  # (rule id, dedup) -> live window
    closed = []
    errors = collections.Counter()
    last_ms = 0
    for line in Path(events_path).read_text().splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        time_ms = event_time_ms(event)
        time_ms = last_ms if time_ms is None else time_ms
        last_ms = max(last_ms, time_ms)
        for spec, rule in rules:
            result = rule.run(PantherEvent(event, None), {}, {}, batch_mode=True)
            if result.detection_exception or result.setup_exception:
                errors[spec["RuleID"]] += 1
                continue
            if not result.trigger_alert:
                continue
            key = (spec["RuleID"], result.dedup_output)
            period = (spec.get("DedupPeriodMinutes") or 60) * 60_000
            window = windows.get(key)
            if window is None or time_ms >= window["start"] + period:
                if window is not None:
                    closed.append(window)
                window = {
                    "spec": spec,
                    "start": time_ms,
                    "dedup": result.dedup_output,
                    "title": result.title_output,
                    "count": 0,
                    "uniques": set(),
                    "unique_defined": result.unique_defined,
                }
                windows[key] = window
            window["count"] += 1
            if result.unique_output is not None:
                window["uniques"].add(result.unique_output)
    closed.extend(windows.values())

    alerts = []
    for w in closed:
        threshold = w["spec"].get("Threshold") or 1
        counted = len(w["uniques"]) if w["unique_defined"] else w["count"]
        if counted >= threshold:
            alerts.append(
                (
                    w["spec"]["RuleID"],
                    w["dedup"],
                    w["title"],
                    w["count"],
                    len(w["uniques"]) if w["unique_defined"] else None,
                )
            )
    return sorted(alerts, key=repr), errors


def rulehost_alerts(rulehost, pack, rules_dir, events_path):
    out = subprocess.run(
        # A call's deadline is wall time: on a busy machine a Python call can wait for a core
        # longer than the default 100 ms (README, "Bring your Panther rules"); the
        # comparison is about alerts, so give it the tests' 5 s.
        [rulehost, "eval", "--rules", str(rules_dir), "--helpers",
         str(Path(pack) / "global_helpers"), "--timeout-ms", "5000", str(events_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode not in (0, 1):
        sys.exit(f"rulehost eval failed ({out.returncode}):\n{out.stderr}")
    alerts = []
    for line in out.stdout.splitlines():
        record = json.loads(line)
        if record["kind"] != "alert":
            continue
        alerts.append(
            (
                record["rule_id"],
                record["dedup"],
                record["title"],
                record["event_count"],
                record.get("unique_count"),
            )
        )
    return sorted(alerts, key=repr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", default=str(REPO.parent / "shared" / "panther-analysis"))
    parser.add_argument("--rules", default=None, help="default: PACK/rules/databricks_rules")
    parser.add_argument("--events", default=str(REPO / "demo" / "databricks-audit-sample.jsonl"))
    parser.add_argument("--rulehost", default=str(REPO / "target" / "release" / "rulehost"))
    args = parser.parse_args()
    ensure_venv()
    rules = args.rules or str(Path(args.pack) / "rules" / "databricks_rules")
    panther, errors = panther_alerts(args.pack, rules, args.events)
    ours = rulehost_alerts(args.rulehost, args.pack, rules, args.events)
    per_rule = collections.Counter(a[0] for a in panther)
    for rule_id, n in sorted(per_rule.items()):
        print(f"{rule_id}: {n} alert(s)")
    for rule_id, n in sorted(errors.items()):
        print(f"{rule_id}: {n} rule error(s) in panther-core")
    only_panther = sorted(set(panther) - set(ours), key=repr)
    only_rulehost = sorted(set(ours) - set(panther), key=repr)
    for alert in only_panther:
        print(f"only in panther-core: {alert}")
    for alert in only_rulehost:
        print(f"only in rulehost:     {alert}")
    same = panther == ours
    print(f"{len(panther)} alerts from panther-core, {len(ours)} from rulehost: "
          f"{'the same' if same else 'DIFFERENT'}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
