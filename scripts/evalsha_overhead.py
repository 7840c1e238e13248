#!/usr/bin/env python3
"""What one `EVALSHA` costs `redis-server` before a script does anything: the fixed cost per
call, and the cost per argument (the state script gets ~70 per call in `serve_load`).

Starts `redis-server` on a free loopback port (no persistence; `replay_script_calls.py`'s
client), loads two scripts (one that returns at once, one that reads every argument), sends
each N times, pipelined, with 0 and with 67 arguments of 12 bytes, and prints Redis' own
accounting (`INFO commandstats`: microseconds of the server's time per call). If a call
costs little before the script runs, making fewer, larger calls (one per hash slot for a
whole round trip, instead of one per partition batch and slot) saves little; the script's
own work is what costs.

    scripts/evalsha_overhead.py [N]
"""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from replay_script_calls import command, free_port, start  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server not found (Debian: apt-get install redis-server)")
    workdir = tempfile.mkdtemp()
    server, conn = start(free_port(), workdir)
    try:
        version = [l for l in conn.call("INFO", "server").decode().split("\r\n")
                   if l.startswith("redis_version:")][0]
        print(f"{version}, {n} calls each")
        scripts = {
            "returns at once": "return 1",
            "reads every argument": "local n = 0 for i = 1, #ARGV do n = n + #ARGV[i] end return n",
        }
        for name, body in scripts.items():
            sha = conn.call("SCRIPT", "LOAD", body)
            for args in (0, 67):
                conn.call("CONFIG", "RESETSTAT")
                conn.pipeline([command("EVALSHA", sha, "0", *(["x" * 12] * args))] * n)
                stats = conn.call("INFO", "commandstats").decode()
                line = [l for l in stats.split("\r\n") if l.startswith("cmdstat_evalsha:")][0]
                per_call = dict(f.split("=") for f in line.split(":", 1)[1].split(","))
                print(f"{name:>22}, {args:2} arguments: {per_call['usec_per_call']} µs per call")
    finally:
        conn.sock.sendall(command("SHUTDOWN", "NOSAVE"))
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
