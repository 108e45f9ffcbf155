"""Helpers for veloq-kv's integration tests: a tiny memcached text-protocol client."""
import atexit
import os

from vqtest import SOURCE, Service, fail


def shards_available():
    """Two shards need the message rings (framework/msg.c)."""
    return os.path.exists(os.path.join(SOURCE, "framework", "msg.c"))


class Client:
    def __init__(self, svc, timeout=20):
        self.sock = svc.connect(timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            fail("connection closed; pending input %r" % self.buf[:200])
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def eof(self):
        """True if the server closes the connection with nothing more to say."""
        while True:
            d = self.sock.recv(65536)
            if not d:
                return self.buf == b""
            self.buf += d

    def cmd(self, line):
        self.send(line + b"\r\n")
        return self.line()

    def store(self, verb, key, value, flags=0, exp=0, extra=b""):
        self.send(b"%s %s %d %d %d%s\r\n%s\r\n" % (verb, key, flags, exp, len(value), extra,
                                                   value))
        return self.line()

    def set(self, key, value, flags=0, exp=0):
        return self.store(b"set", key, value, flags, exp)

    def read_values(self):
        """Read VALUE blocks up to END: {key: (flags, value, cas or None)}, in order."""
        out = []
        while True:
            l = self.line()
            if l == b"END":
                return out
            parts = l.split()
            if parts[0] != b"VALUE":
                fail("expected VALUE or END, got %r" % l)
            n = int(parts[3])
            data = self.exact(n + 2)
            if data[-2:] != b"\r\n":
                fail("value of %r not terminated" % parts[1])
            out.append((parts[1], int(parts[2]), data[:-2],
                        int(parts[4]) if len(parts) > 4 else None))

    def get(self, *keys, verb=b"get"):
        self.send(verb + b" " + b" ".join(keys) + b"\r\n")
        return self.read_values()

    def stats(self):
        self.send(b"stats\r\n")
        st = {}
        while True:
            l = self.line()
            if l == b"END":
                return st
            _, k, v = l.decode().split(" ", 2)
            st[k] = v


_services = []


def _kill_all():
    for s in _services:
        s.kill()


atexit.register(_kill_all)


def kv_service(**kw):
    """Start veloq-kv; killed at exit if a failed check ends the script before stop()."""
    svc = Service("kv", **kw)
    _services.append(svc)
    return svc
