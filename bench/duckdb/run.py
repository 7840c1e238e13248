#!/usr/bin/env python3
"""`make bench`'s DuckDB peer: the two seed rules in SQL (`rules.sql` beside this file).

Runs the SQL on one JSON-lines file with DuckDB on `--threads` threads and writes one JSON
line per alert (rule_id, dedup, window_start as rulehost prints it, event_count,
unique_count), the records `rulehost-typed` writes, so that `scripts/bench.py` can compare
all three. Needs the `duckdb` package: `scripts/bench.py` runs it from its virtualenv.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import duckdb

SQL = Path(__file__).with_name("rules.sql")


def format_ms(ms: int) -> str:
    """Epoch ms as rulehost prints it: RFC 3339 UTC, fraction without trailing zeros."""
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))
    frac = ms % 1000
    return f"{text}{f'.{frac:03}'.rstrip('0') if frac else ''}Z"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", type=Path, help="JSON-lines file")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", "-o", type=Path, help="alert records (default: stdout)")
    args = p.parse_args(argv)

    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {int(args.threads)}")
    # Nothing here depends on the order rows are read in (the alerts are sorted), and
    # DuckDB's docs advise this for large loads: less memory, more parallel reading.
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET VARIABLE input = ?", [str(args.input)])
    rows = con.execute(SQL.read_text()).fetchall()
    out = open(args.output, "w") if args.output else sys.stdout
    per_rule: dict[str, int] = {}
    for rule_id, dedup, start_ms, event_count, unique_count in rows:
        record = {"rule_id": rule_id, "dedup": dedup, "window_start": format_ms(start_ms),
                  "event_count": event_count}
        if unique_count is not None:
            record["unique_count"] = unique_count
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        per_rule[rule_id] = per_rule.get(rule_id, 0) + 1
    out.flush()
    counts = ", ".join(f"`{r}` {n}" for r, n in sorted(per_rule.items()))
    print(f"duckdb {duckdb.__version__}: {args.input} on {args.threads} thread(s) in "
          f"{time.perf_counter() - started:.2f} s; alerts: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
