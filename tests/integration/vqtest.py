"""Shared helpers for veloq's integration tests: start a real service, talk to it
over real sockets on 127.0.0.1, stop it, and check that it shut down cleanly."""
import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

BUILD = os.environ.get("VQ_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("VQ_SOURCE", os.path.join(os.path.dirname(__file__), "../.."))
SKIP = 77


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def skip(msg):
    print("SKIP: " + msg, flush=True)
    sys.exit(SKIP)


def check(cond, msg):
    if not cond:
        fail(msg)


def free_port():
    """A free port below the kernel's ephemeral range, so that the many client
    sockets of tests running in parallel cannot take it before the server binds."""
    import random
    for _ in range(200):
        port = random.randint(10000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    fail("no free port found in 10000-32000")


_started = []


@atexit.register
def _kill_leftovers():
    """A test that fails (sys.exit) midway must not leave its servers running."""
    for svc in _started:
        svc.kill()


class Service:
    """A veloq service process: `Service("echo", overrides={"shards.cpus": "0"})`."""

    def __init__(self, app, config=None, overrides=None, args=(), env=None, port=None,
                 wait=True, prefix=()):
        self.app = app
        self.port = port or free_port()
        self.binary = os.path.join(BUILD, "apps", "veloq-" + app)
        config = config or os.path.join(SOURCE, "configs", app + ".ini")
        cmd = list(prefix) + [self.binary, "--config", config, "-o", "listen.port=%d" % self.port]
        for k, v in (overrides or {}).items():
            cmd += ["-o", "%s=%s" % (k, v)]
        cmd += list(args)
        self.cmd = cmd
        self.log = []
        self._lines = threading.Condition()
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True)
        _started.append(self)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait:
            self.wait_log(r"listening on", timeout=15)

    def _read(self):
        for line in self.proc.stderr:
            with self._lines:
                self.log.append(line.rstrip("\n"))
                self._lines.notify_all()
        with self._lines:
            self._lines.notify_all()

    def text(self):
        with self._lines:
            return "\n".join(self.log)

    def wait_log(self, pattern, timeout=10, start=0):
        """Wait for a log line matching pattern (from line index `start`); return it."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        with self._lines:
            while True:
                for line in self.log[start:]:
                    if rx.search(line):
                        return line
                if self.proc.poll() is not None and not self._reader.is_alive():
                    fail("%s exited (%s) before logging /%s/:\n%s" %
                         (self.app, self.proc.returncode, pattern, "\n".join(self.log)))
                left = deadline - time.time()
                if left <= 0:
                    fail("timed out waiting for /%s/ in the log of %s:\n%s" %
                         (pattern, self.app, "\n".join(self.log)))
                self._lines.wait(min(left, 0.2))

    def connect(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30, expect_clean=True):
        """SIGTERM, wait, and (by default) insist on a clean, leak-free shutdown."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail("%s did not stop within %ss of SIGTERM:\n%s" % (self.app, timeout, self.text()))
        self._reader.join(5)
        if expect_clean:
            check(rc == 0, "%s exited %s:\n%s" % (self.app, rc, self.text()))
            check("stopped cleanly" in self.text(), "no clean-stop line:\n" + self.text())
            check("leak" not in self.text(), "leak reported:\n" + self.text())
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def recv_exact(sock, n):
    chunks, got = [], 0
    while got < n:
        b = sock.recv(min(n - got, 1 << 20))
        if not b:
            fail("connection closed after %d of %d bytes" % (got, n))
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def raise_nofile(n):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- Process inspection -------------------------------------------------------

ALARMING = re.compile(r"^(<[0-4]>|(emerg|alert|crit|err|warning): )|leak|AddressSanitizer|"
                      r"LeakSanitizer|runtime error:|Assertion|assertion", re.M)


def alarming(text):
    """Log lines a healthy run never prints: err/warning and worse, sanitizer reports."""
    return [line for line in text.splitlines() if ALARMING.search(line)]


def proc_status(pid, field):
    """A /proc/PID/status field in kB (VmRSS, VmHWM, ...), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def socket_fds(pid):
    """How many sockets the process has open (listeners included)."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def shard_totals(text):
    """Sum the per-shard 'stopped: N accepted, N closed, N bytes in, N bytes out' lines."""
    tot = {"shards": 0, "accepted": 0, "closed": 0, "bytes_in": 0, "bytes_out": 0}
    rx = re.compile(r"stopped: (\d+) accepted, (\d+) closed, (\d+) bytes in, (\d+) bytes out")
    for m in rx.finditer(text):
        tot["shards"] += 1
        for k, v in zip(("accepted", "closed", "bytes_in", "bytes_out"), m.groups()):
            tot[k] += int(v)
    return tot


# --- Load ------------------------------------------------------------------------

def echo_check(port, payloads, chunk=None, timeout=120, sock_opts=()):
    """Echo every payload over its own connection, all at once, from one selector
    loop: each connection sends while it receives (so a large payload cannot
    deadlock on its own socket buffers) and every byte that comes back is checked
    against what was sent, in order. chunk(i) gives the size of connection i's
    next send() (default: up to 256 KiB). Fails the test on any mismatch, early
    EOF, reset or timeout; returns the total bytes echoed."""
    import selectors
    sel = selectors.DefaultSelector()
    conns = []
    for i, data in enumerate(payloads):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for level, opt, val in sock_opts:
            s.setsockopt(level, opt, val)
        s.setblocking(False)
        c = {"i": i, "s": s, "data": memoryview(data), "sent": 0, "got": 0}
        conns.append(c)
        sel.register(s, selectors.EVENT_READ | (selectors.EVENT_WRITE if data else 0), c)
    left = sum(1 for c in conns if len(c["data"]))
    total = 0
    deadline = time.time() + timeout
    try:
        while left:
            if time.time() > deadline:
                stuck = [(c["i"], c["sent"], c["got"], len(c["data"])) for c in conns
                         if c["got"] < len(c["data"])]
                fail("echo timed out; (conn, sent, received, size) not done: %s" % stuck[:8])
            for key, ev in sel.select(0.5):
                c = key.data
                s, data = c["s"], c["data"]
                if ev & selectors.EVENT_WRITE and c["sent"] < len(data):
                    n = chunk(c["i"]) if chunk else 256 << 10
                    try:
                        c["sent"] += s.send(data[c["sent"]:c["sent"] + n])
                    except BlockingIOError:
                        pass
                    if c["sent"] == len(data):
                        sel.modify(s, selectors.EVENT_READ, c)
                if ev & selectors.EVENT_READ:
                    try:
                        b = s.recv(256 << 10)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        fail("conn %d: %s after %d of %d bytes" % (c["i"], e, c["got"],
                                                                  len(data)))
                    if not b:
                        fail("conn %d: EOF after %d of %d bytes" % (c["i"], c["got"],
                                                                   len(data)))
                    want = data[c["got"]:c["got"] + len(b)]
                    if b != want:
                        off = next(k for k in range(len(b)) if k >= len(want) or b[k] != want[k])
                        fail("conn %d: byte %d differs (got %r, sent %r)" %
                             (c["i"], c["got"] + off, b[off:off + 16],
                              bytes(want[off:off + 16])))
                    c["got"] += len(b)
                    total += len(b)
                    if c["got"] == len(data):
                        sel.unregister(s)
                        left -= 1
    finally:
        for c in conns:
            c["s"].close()
        sel.close()
    return total


def pattern(seed, n):
    """n pseudo-random bytes, different for every seed: misrouted or reordered data shows."""
    import random
    return random.Random(seed).randbytes(n)


def tcp_queues(port):
    """{(local_port, remote_port): (send_queue, recv_queue)} for established
    127.0.0.1 TCP sockets with `port` at either end, from /proc/net/tcp. Send
    queue: bytes written but not yet acknowledged by the peer; receive queue:
    bytes acknowledged but not yet read by the owner."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            lport, rport = int(p[1].split(":")[1], 16), int(p[2].split(":")[1], 16)
            if p[3] == "01" and port in (lport, rport):
                tx, rx = (int(x, 16) for x in p[4].split(":"))
                out[(lport, rport)] = (tx, rx)
    return out
