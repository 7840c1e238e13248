#!/usr/bin/env python3
"""Replays the state script's calls of a captured `rulehost serve` run into a fresh
`redis-server`, to measure the script alone and to check that a change leaves it exact.

Capture (while `serve_load` or any `serve` run applies its batches):

    redis-cli -p PORT MONITOR > capture.txt

Then, for a version of `host/src/state/redis_apply.lua`:

    scripts/replay_script_calls.py capture.txt host/src/state/redis_apply.lua

It starts `redis-server` on a free loopback port (no persistence) under callgrind, loads
the script, sends every captured `EVALSHA` (in order, renamed to the loaded script's
digest) and prints the instructions per call, then replays once more without callgrind and
prints a digest of every reply, key, set, sorted set, hash and outbox entry (stream ids and
TTLs left out: they follow the clock). Two versions of the script that give the same digest
gave the same replies and left the same state. Callgrind's counts move by about 0.5% from
run to run (the server's timers), far less than wall time on a shared VM.
"""

import hashlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"')
ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}


def unquote(text):
    """An argument as `MONITOR` prints it (`sdscatrepr`), back to its bytes."""
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] == "\\":
            if text[i + 1] == "x":
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
            else:
                out += ESCAPES[text[i + 1]]
                i += 2
        else:
            out.append(ord(text[i]))
            i += 1
    return bytes(out)


def captured_calls(path):
    """The `EVALSHA` calls clients made (not the commands scripts made), in order."""
    calls = []
    with open(path, encoding="latin-1") as capture:
        for line in capture:
            if '"EVALSHA"' not in line or " lua]" in line:
                continue
            calls.append([unquote(t) for t in TOKEN.findall(line.split("] ", 1)[1])])
    return calls


def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Connection:
    """A minimal RESP2 client: enough for this replay."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(1 << 16)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self.buf += self.sock.recv(1 << 16)
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return (kind + rest).decode("latin-1")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if int(rest) < 0 else self._exact(int(rest))
        if kind == b"*":
            return None if int(rest) < 0 else [self.reply() for _ in range(int(rest))]
        raise ValueError(f"unexpected reply {line!r}")

    def call(self, *args):
        self.sock.sendall(command(*args))
        return self.reply()

    def pipeline(self, commands, window=200):
        """Sends `commands` `window` at a time and returns their replies in order."""
        replies = []
        for i in range(0, len(commands), window):
            chunk = commands[i : i + window]
            self.sock.sendall(b"".join(chunk))
            replies.extend(self.reply() for _ in chunk)
        return replies


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port, workdir, prefix=()):
    server = subprocess.Popen(
        [*prefix, "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            conn = Connection(port)
            if conn.call("PING") == "+PONG":
                return server, conn
        except OSError:
            time.sleep(0.1)
    server.kill()
    sys.exit("replay: redis-server did not start")


def replay(calls, script, conn):
    digest = conn.call("SCRIPT", "LOAD", script)
    if isinstance(digest, str):
        sys.exit(f"replay: the script did not load: {digest}")
    return conn.pipeline([command("EVALSHA", digest, *c[2:]) for c in calls])


def state_digest(conn, replies):
    h = hashlib.sha256()
    h.update(repr(replies).encode())
    keys, cursor = [], b"0"
    while True:
        cursor, found = conn.call("SCAN", cursor, "COUNT", 1000)
        keys += found
        if cursor == b"0":
            break
    for key in sorted(keys):
        kind = conn.call("TYPE", key)
        if kind == "+hash":
            flat = conn.call("HGETALL", key)
            value = sorted(zip(flat[::2], flat[1::2]))
        elif kind == "+set":
            value = sorted(conn.call("SMEMBERS", key))
        elif kind == "+zset":
            value = conn.call("ZRANGE", key, 0, -1, "WITHSCORES")
        elif kind == "+stream":
            value = [sorted(zip(f[::2], f[1::2])) for _, f in conn.call("XRANGE", key, "-", "+")]
        else:
            value = kind
        # Whether it expires, not when.
        h.update(repr((key, kind, conn.call("PTTL", key) > 0, value)).encode())
    return h.hexdigest(), len(keys)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    calls = captured_calls(sys.argv[1])
    if not calls:
        sys.exit(f"replay: no EVALSHA in {sys.argv[1]}")
    script = open(sys.argv[2], "rb").read()
    workdir = tempfile.mkdtemp()
    try:
        if shutil.which("valgrind"):
            out = f"{workdir}/callgrind.out"
            server, conn = start(free_port(), workdir,
                                 ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"])
            replies = replay(calls, script, conn)
            conn.sock.sendall(command("SHUTDOWN", "NOSAVE"))
            server.wait()
            total = int(re.search(r"^summary: (\d+)", open(out).read(), re.M).group(1))
            print(f"{len(calls)} calls, {total / len(calls) / 1000:.1f}k instructions per call "
                  "(the server's start-up included)")
        else:
            print("(valgrind not found: no instruction count)")
        server, conn = start(free_port(), workdir)
        replies = replay(calls, script, conn)
        errors = sum(1 for r in replies if isinstance(r, str) and r.startswith("-"))
        digest, keys = state_digest(conn, replies)
        conn.sock.sendall(command("SHUTDOWN", "NOSAVE"))
        server.wait()
        print(f"{errors} errors; replies and state ({keys} keys): {digest}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
