"""veloq-kv against the real memcached: the same byte streams to both, and the
replies must be byte-identical. Only deliberate, documented differences are
normalised (docs/KV.md, "Where the protocol differs"): the version text, cas
unique values (compared by order of first appearance), and the spaces memcached
pads an incr/decr result with when it shrinks in place. Skipped (77) when the
memcached binary is not installed (scripts/deps.txt lists it)."""
import os
import re
import select
import shutil
import socket
import subprocess
import time

from kvtest import kv_service, shards_available
from vqtest import check, fail, free_port, skip

SENTINEL = b"version\r\n"
NOW = int(time.time())
BIG = b"v" * 3000  # more than a kv_pend's inline copy: a lent hit between shards

CASES = [
    # ordinary traffic
    b"set a 5 0 3\r\nabc\r\nget a\r\nget a nope a\r\n",
    b"set a 0 0 0\r\n\r\nget a\r\nset b 4294967295 0 1\r\nx\r\nget b\r\n",
    b"set b 0 0 1\nx\r\nget b\n",
    b"add x 1 0 1\r\na\r\nadd x 1 0 1\r\nb\r\nreplace y 1 0 1\r\nb\r\nreplace x 2 0 1\r\nb\r\n"
    b"append x 9 0 2\r\ncd\r\nprepend x 9 0 2\r\n01\r\nget x\r\nappend no 0 0 1\r\na\r\n",
    b"set k 0 0 1\r\n1\r\ngets k\r\ncas k 0 0 1 0\r\n2\r\ncas nokey 0 0 1 1\r\nx\r\ngets k\r\n",
    b"set d 0 0 1\r\n1\r\ndelete d\r\ndelete d\r\nset d 0 0 1\r\n1\r\ndelete d 0\r\n"
    b"delete d 5\r\ndelete d noreply\r\nget d\r\n",
    b"set t 0 100 1\r\n1\r\ntouch t 10\r\ntouch nope 10\r\ngat 0 t\r\ngats 100 t nope\r\n"
    b"touch t x\r\ngat x t\r\ngat 1\r\n",
    b"set big 0 0 3000\r\n" + BIG + b"\r\nget big a big\r\ndelete big\r\nget big\r\n",
    b"set e 0 -1 1\r\nx\r\nget e\r\nset e 0 %d 1\r\nx\r\nget e\r\n" % (NOW + 1000),
    b"set e 0 %d 1\r\nx\r\nget e\r\n" % (NOW - 100),
    b"version\r\nversion foo\r\nverbosity 1\r\nverbosity 1 noreply\r\nbogus\r\n\r\n"
    b"GET a\r\nget\r\ngets\r\ngat\r\n",
    b"quit\r\nget a\r\n",
    b"set " + b"k" * 250 + b" 0 0 1\r\nx\r\nget " + b"k" * 250 + b"\r\nget " + b"k" * 251 + b"\r\n",
    b"get a " + b"k" * 251 + b"\r\ndelete " + b"k" * 251 + b"\r\n",
    # incr/decr (results that shrink are padded by memcached: normalised below)
    b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nget n\r\n",
    b"set n 0 0 20\r\n18446744073709551615\r\nincr n 2\r\nget n\r\nincr nope 1\r\ndecr nope 1\r\n",
    b"set n 0 0 2\r\nab\r\nincr n 1\r\nincr n -1\r\nincr n 18446744073709551616\r\n",
    b"set n 0 0 3\r\n 12\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 3\r\n12 \r\nincr n 1\r\n",
    b"set n 0 0 4\r\n100 \r\ndecr n 1\r\nget n\r\n",
    b"set n 0 0 21\r\n000000000000000000001\r\nincr n 1\r\n",
    b"set n 0 0 25\r\n0000000000000000000000012\r\ndecr n 1\r\n",
    b"set n 0 0 3\r\n+12\r\nincr n 1\r\nset n 0 0 4\r\n\t\x0b12\r\nincr n 1\r\n",
    b"set n 0 0 6\r\n12 abc\r\nincr n 1\r\nset n 0 0 3\r\n12\t\r\nincr n 1\r\n",
    b"set n 0 0 21\r\n18446744073709551615 \r\nincr n 1\r\n",
    b"set n 0 0 20\r\n18446744073709551616\r\nincr n 1\r\nset n 0 0 3\r\n12a\r\nincr n 1\r\n",
    b"set n 0 0 3\r\n0x1\r\nincr n 1\r\nset n 0 0 3\r\n+ 1\r\nincr n 1\r\n",
    b"set n 0 0 0\r\n\r\nincr n 1\r\nset n 0 0 3\r\n-12\r\nincr n 1\r\n",
    b"set n 0 0 2\r\n12\r\nincr n +5\r\nincr n 5x\r\nincr n 1 x\r\nincr n 1 x y\r\n",
    # bad data blocks: exactly <bytes> + 2 bytes are the block
    b"set k 0 0 3\r\nabcX\r\nget k\r\n",
    b"set k 0 0 3\r\nabc\rXget k\r\nget k\r\n",
    b"set k 0 0 3\r\nabcdef\r\nget k\r\n",
    b"set k 0 0 5\r\nabc\r\nget k\r\nget k\r\n",
    b"set k 0 0 3\r\nabc\n\nget k\r\n",
    b"set k 0 0 3\r\nabc\nget k\r\n",
    b"set k 0 0 7\r\nget k\r\n\r\nget k\r\n",
    b"set k 0 0 1\r\nxyzget k\r\n",
    b"set a 0 0 2000000\r\n" + b"x" * 2000000 + b"XYget a\r\n",
    b"set a 0 0 1\r\nx\r\nset a 0 0 2000000\r\n" + b"x" * 2000000 + b"\r\nget a\r\n",
    b"set a 0 0 -1\r\nset a 0 0 x\r\nset a x 0 1\r\nx\r\n",
    # noreply: every reply of the command goes, errors included
    b"set k 0 0 3 noreply\r\nabcde\r\nget k\r\n",
    b"set k 0 0 3 noreply\r\nabcX\r\nget k\r\n",
    b"set a 0 0 2000000 noreply\r\n" + b"x" * 2000000 + b"\r\nget a\r\n",
    b"set k x 0 1 noreply\r\nx\r\nset k 0 0 noreply\r\nset k 0 0 -1 noreply\r\n",
    b"cas k 0 0 1 noreply\r\nx\r\nincr k x noreply\r\nincr k noreply\r\ntouch k x noreply\r\n",
    b"delete k 5 noreply\r\ndelete k x noreply\r\ndelete noreply\r\nverbosity x noreply\r\n",
    b"set q 0 0 1 noreply\r\n1\r\nadd q 0 0 1 noreply\r\n2\r\nappend q 0 0 1 noreply\r\n3\r\n"
    b"incr q 1 noreply\r\ntouch q 10 noreply\r\ndelete zz noreply\r\nget q\r\n",
    # token counts: too few or too many is ERROR; the noreply place takes anything
    b"cas k 0 0 abc\r\ncas k 0 0\r\nset k 0 0\r\nadd k 0 0\r\nreplace k 0 0\r\n"
    b"append k 0 0\r\nprepend k 0 0\r\nset k\r\nset\r\ncas\r\n",
    b"set k 0 0 1 2 3 4 5\r\nx\r\ncas k 0 0 1 2 noreply extra\r\nx\r\n"
    b"set k 0 0 1 noreply extra\r\nx\r\n",
    b"set k 0 0 1 extra\r\nx\r\ncas j 0 0 1 2 3\r\nx\r\nget k\r\n",
    b"set k +0 0 00001\r\ny\r\nget k\r\n",
    b"incr k 1 2 3\r\ntouch k 1 2 3\r\ndelete k 1 2 3\r\ndelete k 0 x\r\ntouch k\r\n"
    b"incr k\r\ndelete\r\n",
    b"set k 0 0 1\r\nx\r\ntouch k 1 x\r\n",
    b"verbosity\r\nverbosity x\r\nverbosity -1\r\nverbosity x y\r\nverbosity noreply x\r\n"
    b"verbosity 1 x\r\nverbosity +1\r\nverbosity 99999999999\r\nverbosity noreply\r\n"
    b"verbosity 1 2 3\r\n",
    # flush_all
    b"set f 0 0 1\r\nx\r\nflush_all\r\nget f\r\nset f 0 0 1\r\nx\r\nflush_all 0\r\nget f\r\n",
    b"set f 0 0 1\r\nx\r\nflush_all -1\r\nget f\r\n",
    b"set f 0 0 1\r\nx\r\nflush_all 1000\r\nget f\r\nflush_all 0\r\nget f\r\n",
    b"set f 0 0 1\r\nx\r\nflush_all %d\r\nget f\r\nflush_all noreply\r\nget f\r\n" % (NOW + 1000),
    b"flush_all x\r\nflush_all 10 x\r\nflush_all noreply 10\r\nflush_all 1 2 3\r\n"
    b"flush_all x noreply\r\nflush_all +5\r\nflush_all 0 x\r\nflush_all 0\r\n",
]


def start_memcached():
    binary = shutil.which("memcached")
    if not binary:
        skip("memcached is not installed (scripts/deps.txt)")
    port = free_port()
    cmd = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-t", "1", "-m", "64",
           "-I", "1m"]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                fail("memcached did not start: %s" % proc.stderr.read().decode())
            time.sleep(0.05)
    proc.kill()
    fail("memcached did not listen on %d" % port)


def exchange(port, data):
    """Send data and a version sentinel on a fresh connection; the replies, up to the
    sentinel's VERSION line or the connection's end."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got = bytearray()
    out = memoryview(data + SENTINEL)
    deadline = time.time() + 20
    try:
        while time.time() < deadline:
            r, w, _ = select.select([s], [s] if out else [], [], 0.5)
            if w:
                try:
                    out = out[s.send(out[:1 << 16]):]
                except (BrokenPipeError, ConnectionResetError):
                    out = None
            if r:
                d = s.recv(1 << 20)
                if not d:
                    return bytes(got) + b"<closed>"
                got += d
                if not out and re.search(rb"(^|\n)VERSION [^\r\n]*\r\n$", got):
                    return bytes(got)
        fail("no complete reply to %r: %r" % (data[:120], bytes(got[-200:])))
    finally:
        s.close()


def normalise(reply):
    """Only the documented differences: version text, cas numbers, incr/decr padding."""
    out, pos, cas = [], 0, {}
    while pos < len(reply):
        end = reply.find(b"\r\n", pos)
        if end < 0:
            out.append(reply[pos:])
            break
        line = reply[pos:end]
        pos = end + 2
        m = re.match(rb"VALUE (\S+) (\d+) (\d+)( (\d+))?$", line)
        if m:
            data = reply[pos:pos + int(m.group(3))]
            pos += int(m.group(3)) + 2
            if re.fullmatch(rb"\d+ +", data):
                data = data.rstrip(b" ")
            c = b""
            if m.group(5):
                c = b" cas%d" % cas.setdefault(m.group(5), len(cas))
            out.append(b"VALUE %s %s %d%s\r\n%s" % (m.group(1), m.group(2), len(data), c, data))
            continue
        if line.startswith(b"VERSION "):
            line = b"VERSION"
        out.append(line)
    return b"\r\n".join(out)


def reset(port):
    check(exchange(port, b"flush_all\r\n").startswith(b"OK\r\n"), "flush_all on %d" % port)


def compare(mc_port, svc, what):
    bad = 0
    for case in CASES:
        reset(mc_port)
        reset(svc.port)
        want = normalise(exchange(mc_port, case))
        got = normalise(exchange(svc.port, case))
        if want != got:
            bad += 1
            print("DIFF (%s) for %r\n  memcached: %r\n  veloq-kv:  %r" %
                  (what, case[:200], want[:400], got[:400]))
    check(bad == 0, "%d of %d streams differ from memcached (%s)" % (bad, len(CASES), what))


mc, mc_port = start_memcached()
try:
    svc = kv_service(overrides={"shards.cpus": "0", "kv.max_value": "1M"})
    compare(mc_port, svc, "one shard")
    svc.stop()
    if shards_available():
        svc = kv_service(overrides={"shards.cpus": "0-1", "kv.max_value": "1M"})
        compare(mc_port, svc, "two shards")
        svc.stop()
finally:
    mc.kill()
    mc.wait()
print("ok")
