#!/usr/bin/env python3
"""What one `EVALSHA` costs `redis-server` before a script does anything: the fixed cost per
call, and the cost per argument (the state script gets ~67 per call in `serve_load`).

Starts `redis-server` on a free loopback port (no persistence), loads two scripts (one that
returns at once, one that reads every argument), sends each N times in one pipeline with 0
and with 67 arguments of 12 bytes, and prints Redis' own accounting (`INFO commandstats`:
microseconds of the server's time per call). If a call costs little before the script runs,
making fewer, larger calls (one per hash slot for a whole round trip, instead of one per
partition batch and slot) saves little; the script's own work is what costs.

    scripts/evalsha_overhead.py [N]
"""

import shutil
import socket
import subprocess
import sys
import tempfile
import time


def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("redis-server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """One reply: simple, error, integer or bulk string (all these commands give)."""
        line = self.line()
        if line[:1] == b"$":
            n = int(line[1:])
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(1 << 20)
            data, self.buf = self.buf[:n], self.buf[n + 2 :]
            return data
        if line[:1] == b"-":
            raise SystemExit(f"redis: {line[1:].decode()}")
        return line[1:]

    def call(self, *args):
        self.sock.sendall(command(*args))
        return self.reply()

    def pipeline(self, payload, n):
        self.sock.sendall(payload)
        for _ in range(n):
            self.reply()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    server = shutil.which("redis-server")
    if not server:
        raise SystemExit("redis-server not found (Debian: apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                conn = Conn(port)
                conn.call("PING")
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit("redis-server did not start")
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
                payload = command("EVALSHA", sha, "0", *(["x" * 12] * args)) * n
                conn.pipeline(payload, n)
                stats = conn.call("INFO", "commandstats").decode()
                line = [l for l in stats.split("\r\n") if l.startswith("cmdstat_evalsha:")][0]
                per_call = dict(f.split("=") for f in line.split(":", 1)[1].split(","))
                print(f"{name:>22}, {args:2} arguments: {per_call['usec_per_call']} µs per call")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
