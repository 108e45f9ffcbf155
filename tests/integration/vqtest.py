"""Shared helpers for veloq's integration tests: start a real service, talk to it
over real sockets on 127.0.0.1, stop it, and check that it shut down cleanly."""
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
