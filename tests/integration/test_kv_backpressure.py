"""A client that asks for far more reply than it reads cannot grow veloq-kv's
memory: a pipeline of gets for a large value, and one get line naming a large
value hundreds of times, each ask for hundreds of MiB, also when every key
lives on the other shard. The server stops taking requests while the
connection's output is full and goes on, in order and with nothing lost, as
the client reads: also after the client has half-closed, and also for a deep
pipeline read as fast as it is answered (held-back requests are not "input
too large"). Nor can a crowd of such clients on one shard keep the reply
buffers from everyone else there."""
import random
import re
import socket
import sys
import threading
import time

from kvtest import Client, kv_service, shards_available
from vqtest import check, fail, proc_status, raise_nofile

VALUE = 512 * 1024
COPIES = 600                    # 600 x 512 KiB: 300 MiB of replies per load
GROWTH_MAX = 96 * 1024 * 1024   # far below 300 MiB, far above the per-connection limits


def value(k):
    return (k * (VALUE // len(k) + 1))[:VALUE]


def rss(svc):
    return proc_status(svc.proc.pid, "VmRSS") * 1024


def stalled(svc, c, request, what):
    """Send request without reading; the server's memory must stay put meanwhile."""
    before = rss(svc)
    c.send(request)
    time.sleep(1.5)
    grown = rss(svc) - before
    check(grown < GROWTH_MAX, "%s: the server grew by %d MiB for a client that does not read" %
          (what, grown >> 20))
    return grown


def read_copies(c, keys, what):
    for i, k in enumerate(keys):
        l = c.line()
        check(l == b"VALUE %s 0 %d" % (k, VALUE), "%s: reply %d is %r" % (what, i, l[:60]))
        check(c.exact(VALUE + 2) == value(k) + b"\r\n", "%s: value %d wrong" % (what, i))


def run(cpus, nshards):
    svc = kv_service(overrides={"shards.cpus": cpus, "kv.memory": "64M"})
    c = Client(svc, timeout=60)
    keys = [b"big%d" % i for i in range(8)]  # spread over the shards
    for k in keys:
        check(c.set(k, value(k)) == b"STORED", "set %r" % k)
    order = [keys[i % len(keys)] for i in range(COPIES)]

    # 1. a pipeline of single gets, then a set and a get that must come after them
    c = Client(svc, timeout=60)
    grown = stalled(svc, c, b"".join(b"get %s\r\n" % k for k in order) +
                    b"set after 0 0 2\r\nok\r\nget after\r\n", "pipelined gets")
    for k in order:
        read_copies(c, [k], "pipelined gets")
        check(c.line() == b"END", "pipelined gets: END")
    check(c.line() == b"STORED", "the set behind the gets")
    check(c.read_values() == [(b"after", 0, b"ok", None)], "the get behind the set")
    print("%d shard(s), pipelined gets: grew %d MiB" % (nshards, grown >> 20))

    # 2. one get line naming the large values COPIES times
    c = Client(svc, timeout=60)
    grown = stalled(svc, c, b"get " + b" ".join(order) + b"\r\n", "one long get line")
    read_copies(c, order, "one long get line")
    check(c.line() == b"END", "long get line: END")
    check(c.cmd(b"version").startswith(b"VERSION"), "in step after the long get")
    print("%d shard(s), one long get line: grew %d MiB" % (nshards, grown >> 20))

    # 3. the client half-closes right after asking: every reply still comes, then EOF
    c = Client(svc, timeout=60)
    stalled(svc, c, b"".join(b"get %s\r\n" % k for k in order[:200]), "half-closed")
    c.sock.shutdown(socket.SHUT_WR)
    for k in order[:200]:
        read_copies(c, [k], "half-closed")
        check(c.line() == b"END", "half-closed: END")
    check(c.eof(), "half-closed: the server closes after the last reply")

    # 4. a client that vanishes with its replies unread costs nothing afterwards
    c = Client(svc, timeout=60)
    stalled(svc, c, b"get " + b" ".join(order) + b"\r\n", "vanishing client")
    c.close()
    c = Client(svc)
    check(c.cmd(b"version").startswith(b"VERSION"), "serving after a client vanished")
    svc.stop()  # checks the log for leaks: every buffer back, every fd closed


def shard_of_connection(svc, probe):
    """Open connections until one lands on a shard; return (client, its shard)."""
    for _ in range(50):
        before = probe.stats()
        c = Client(svc, timeout=60)
        c.cmd(b"version")
        after = probe.stats()
        grew = [i for i in range(2) if int(after["shard%d:curr_connections" % i]) >
                int(before["shard%d:curr_connections" % i])]
        if len(grew) == 1:
            return c, grew[0]
        c.close()
    check(False, "could not tell which shard a connection is on")


def remote_only():
    """Every key on the other shard: replies come back over the message rings,
    lent, and must not be copied faster than the client reads them."""
    svc = kv_service(overrides={"shards.cpus": "0-1", "kv.memory": "64M"})
    probe = Client(svc, timeout=60)
    owner = {}
    for i in range(16):
        k = b"far%d" % i
        before = probe.stats()
        check(probe.set(k, value(k)) == b"STORED", "set %r" % k)
        after = probe.stats()
        owner[k] = [sh for sh in range(2) if int(after["shard%d:curr_items" % sh]) >
                    int(before["shard%d:curr_items" % sh])][0]
    c, home = shard_of_connection(svc, probe)
    far = [k for k in owner if owner[k] != home]
    check(far, "no key on the other shard")
    order = [far[i % len(far)] for i in range(COPIES)]
    grown = stalled(svc, c, b"".join(b"get %s\r\n" % k for k in order), "remote pipelined gets")
    for k in order:
        read_copies(c, [k], "remote pipelined gets")
        check(c.line() == b"END", "remote pipelined gets: END")
    print("2 shards, every key remote, pipelined gets: grew %d MiB" % (grown >> 20))
    c, home = shard_of_connection(svc, probe)
    far = [k for k in owner if owner[k] != home]
    order = [far[i % len(far)] for i in range(COPIES)]
    grown = stalled(svc, c, b"get " + b" ".join(order) + b"\r\n", "remote long get line")
    read_copies(c, order, "remote long get line")
    check(c.line() == b"END", "remote long get line: END")
    print("2 shards, every key remote, one long get line: grew %d MiB" % (grown >> 20))
    svc.stop()


def deep_pipeline(cpus):
    """150 000 small gets written in one go while another thread reads: requests
    held back by back-pressure must not be taken for an oversized request."""
    svc = kv_service(overrides={"shards.cpus": cpus})
    c = Client(svc, timeout=60)
    check(c.set(b"small", b"v" * 100) == b"STORED", "set small")
    n = 150000
    reply = b"VALUE small 0 100\r\n" + b"v" * 100 + b"\r\nEND\r\n"
    got = []

    def reader():
        want, have = n * len(reply), 0
        while have < want:
            d = c.sock.recv(1 << 20)
            if not d:
                break
            got.append(d)
            have += len(d)

    t = threading.Thread(target=reader)
    t.start()
    c.send(b"get small\r\n" * n)
    t.join(120)
    data = b"".join(got)
    check(len(data) == n * len(reply) and data == reply * n,
          "deep pipeline: %d of %d replies" % (len(data) // len(reply), n))
    svc.stop()


def pending_limit():
    """kv.max_pending = 2: a deep pipeline over keys of both shards waits for room
    instead of piling up, and every reply still comes back, in order."""
    svc = kv_service(overrides={"shards.cpus": "0-1", "kv.max_pending": "2"})
    c = Client(svc, timeout=60)
    keys = [b"k%d" % i for i in range(200)]
    c.send(b"".join(b"set %s 0 0 %d noreply\r\n%s\r\n" % (k, len(k), k) for k in keys))
    load = [keys[(i * 7) % len(keys)] for i in range(3000)]
    c.send(b"".join(b"get %s\r\n" % k for k in load) + b"get " + b" ".join(keys) + b"\r\n")
    for i, k in enumerate(load):
        check(c.read_values() == [(k, 0, k, None)], "reply %d of the pipeline" % i)
    check(c.read_values() == [(k, 0, k, None) for k in keys], "the multi-get at the end")
    st = c.stats()
    check(sum(int(st["shard%d:forwarded" % i]) for i in range(2)) > 1000,
          "keys of the other shard were forwarded")
    check(sum(int(st["shard%d:pending_stops" % i]) for i in range(2)) > 0,
          "the session never stopped at kv.max_pending")
    svc.stop()


STALL_ASKS = 40        # of each key, per staller: ~50 MiB of replies each


class Deadline(Client):
    """A client whose reads must all be done by one deadline, not merely each
    within a timeout: a server that answers a byte now and then still fails."""

    def __init__(self, svc, seconds):
        super().__init__(svc, timeout=seconds)
        self.start = time.time()
        self.deadline = self.start + seconds

    def _fill(self):
        left = self.deadline - time.time()
        if left <= 0:
            raise TimeoutError("deadline passed")
        self.sock.settimeout(left)
        super()._fill()


def staller(svc, request):
    """A client with a small receive buffer (set before connect, so the window
    is small from the handshake on) that sends request and never reads."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.settimeout(10)
    s.connect(("127.0.0.1", svc.port))
    s.sendall(request)
    return s


def answered(c, what, ask, reply_ok):
    """ask(), then reply_ok(reply) must hold, all before c's deadline."""
    try:
        reply = ask()
    except OSError as e:
        fail("fresh client beside stalled ones: no complete answer to %s after %.1f s (%s)" %
             (what, time.time() - c.start, e))
    check(reply_ok(reply), "fresh client: wrong answer to %s: %s" % (what, repr(reply)[:120]))


def stalled_crowd(stallers=40, within=5.0, overrides={}):
    """One shard, `stallers` clients each asking for ~50 MiB of 1 MiB and 256 KiB
    values and reading none of it: a fresh client on that shard is still answered
    within `within` seconds. Each staller may fill its own output limit, but
    together they must not pin the shard's whole reply pool, which everyone
    else's replies come from. Past a few hundred they hold a buffer or two each,
    and limits.stall_timeout must close them."""
    svc = kv_service(overrides=dict({"shards.cpus": "0"}, **overrides))
    c = Client(svc, timeout=20)
    big, mid = b"b" * (1024 * 1024 - 100), b"m" * (256 * 1024)
    check(c.set(b"big", big) == b"STORED", "set big")
    check(c.set(b"mid", mid) == b"STORED", "set mid")
    c.close()
    request = b"get big\r\nget mid\r\n" * STALL_ASKS
    stallers_ = []
    try:
        before = rss(svc)
        for _ in range(stallers):
            stallers_.append(staller(svc, request))
        time.sleep(2)  # time for every staller's output to fill and its reading to pause
        grown = rss(svc) - before
        print("%d stalled clients: grew %d MiB" % (stallers, grown >> 20), flush=True)
        check(grown < GROWTH_MAX, "%d stalled clients grew the server by %d MiB" %
              (stallers, grown >> 20))
        f = Deadline(svc, within)
        answered(f, "version", lambda: f.cmd(b"version"), lambda l: l.startswith(b"VERSION"))
        answered(f, "get mid", lambda: f.get(b"mid"), lambda v: v == [(b"mid", 0, mid, None)])
        st = {}
        answered(f, "stats", lambda: st.update(f.stats()) or st,
                 lambda st: "curr_connections" in st)
        def closed(st):  # by limits.stall_timeout, or sooner if the pool ran dry
            return int(st["shard0:stall_closed"]) + int(st["shard0:pool_stall_closed"])
        print("%d stalled clients: a fresh client answered in %.1f s, %d stalled ones closed" %
              (stallers, time.time() - f.start, closed(st)))
        f.close()
        # The fresh client may be answered before the stall timeout has closed
        # anyone (the pool kept buffers for it); the stallers still go.
        deadline = time.time() + 10
        while "limits.stall_timeout" in overrides and not closed(st):
            check(time.time() < deadline, "limits.stall_timeout closed none in 10 s")
            time.sleep(0.5)
            f = Client(svc, timeout=5)
            st = f.stats()
            f.close()
    finally:
        for s in stallers_:  # also when a check failed: the server is killed at exit
            s.close()
    svc.stop()  # checks the log for leaks: every buffer back, every fd closed
    stops = re.findall(r"stopped: .*", svc.text())
    check(stops, "no shard's stop line in the log:\n" + svc.text())
    for line in stops:
        check(line.endswith("; 0 buffers outstanding, 0 connections open"),
              "after the stalled clients went: %s" % line)


def pipelining_hogs(svc, n, send_for, hogs):
    """Append to hogs n clients that each pipeline gets of k for send_for
    seconds, as fast as the socket takes them, and read nothing."""
    chunk = b"get k\r\n" * 8192
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
        s.setblocking(False)
        t0 = time.time()
        while time.time() - t0 < send_for:
            try:
                s.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
        hogs.append(s)


def pipelining_crowd(hogs=30, within=1.0, recv_cap="yes", send_for=0.15, stall="10s",
                     pool_stall="2s", driver="auto", pool=1024):
    """One shard, `hogs` clients that each send megabytes of pipelined small
    gets as fast as the socket takes them and read nothing. Requests are read
    only as fast as their replies leave, so each hog may hold a few input
    buffers, not its whole backlog: a fresh client is answered at once, long
    before limits.stall_timeout (10 s) closes anyone. Before the recv byte cap
    30 hogs took every buffer and the fresh client waited 5 s. Without the cap
    (kernels before 6.17, or io.recv_cap = no) connections receive one buffer
    at a time once the pool runs short, which bounds them as well. Each hog
    then holds about 3.5 buffers (input, the reply queued, the one in the
    kernel), so 200 fit in the default pool of 1 024 beside fresh clients;
    the provided ring keeps only its share of the buffers the hogs leave, or
    it would take every buffer coming back and leave none for replies. Past
    about 300 the hogs take the whole pool (`pool` buffers: 512 makes sure);
    then limits.pool_stall_timeout (2 s) closes those whose peers took no
    output for that long, instead of everyone waiting for
    limits.stall_timeout."""
    svc = kv_service(overrides={"shards.cpus": "0", "io.recv_cap": recv_cap,
                                "limits.stall_timeout": stall,
                                "limits.pool_stall_timeout": pool_stall,
                                "io.driver": driver, "buffers.count": str(pool),
                                "buffers.provided": str(min(512, pool // 2))})
    if recv_cap == "yes" and "recv_cap" not in svc.text() and "epoll" not in svc.text():
        print("skip pipelining_crowd: the kernel has no recv byte cap (6.17)")
        svc.stop()
        return
    c = Client(svc, timeout=10)
    check(c.set(b"k", b"v") == b"STORED", "set k")
    c.close()
    hogs_ = []
    try:
        pipelining_hogs(svc, hogs, send_for, hogs_)
        f = Deadline(svc, within)
        answered(f, "get k", lambda: f.get(b"k"), lambda v: v == [(b"k", 0, b"v", None)])
        st = {}
        answered(f, "stats", lambda: st.update(f.stats()) or st,
                 lambda st: "curr_connections" in st)
        print("%d pipelining non-readers (io.recv_cap = %s): a fresh client answered in "
              "%.2f s; buffers free %s, in use %s; %s closed for the dry pool" %
              (hogs, recv_cap, time.time() - f.start, st["shard0:pool_free"],
               st["shard0:pool_in_use"], st["shard0:pool_stall_closed"]), flush=True)
        check(st["shard0:stall_closed"] == "0", "hogs closed: the answer came from the timeout")
        check(int(st["shard0:pool_in_use"]) <= 16 * hogs,
              "%s buffers in use: more than 16 per hog" % st["shard0:pool_in_use"])
        f.close()
        deadline = time.time() + 10  # the hogs may leave the fresh client room at first
        while hogs >= pool / 3 and st["shard0:pool_stall_closed"] == "0":
            check(time.time() < deadline,
                  "%d hogs on %d buffers and none closed for the dry pool in 10 s" % (hogs, pool))
            time.sleep(0.5)
            st = Client(svc).stats()
    finally:
        for s in hogs_:
            s.close()
    svc.stop()
    for line in re.findall(r"stopped: .*", svc.text()):
        check(line.endswith("; 0 buffers outstanding, 0 connections open"),
              "after the pipelining clients went: %s" % line)


def slow_reader_kept(driver="auto"):
    """limits.pool_stall_timeout closes peers that take none of their output,
    not slow ones: a client that reads a 6 MiB value at 20 KiB/s while 300
    pipelining hogs keep a pool of 512 dry, then the rest at full speed, gets
    all of it, and the hogs go. Its smallest receive buffer gives a 16 KiB
    window, which opens (and our output is acknowledged) about every 0.75 s,
    well within the 2 s timeout; at 10 KiB/s, 1.5 s, a 1 s timeout closed it
    now and then. Its segments are an Ethernet's 1 460 bytes, not loopback's
    64 KiB, which a window that small could not take at all."""
    svc = kv_service(overrides={"shards.cpus": "0", "io.driver": driver,
                                "limits.stall_timeout": "60s", "kv.max_value": "8M",
                                "buffers.count": "512", "buffers.provided": "256"})
    big = random.randbytes(6 << 20)
    c = Client(svc, timeout=10)
    check(c.set(b"k", b"v") == b"STORED", "set k")
    check(c.set(b"big", big) == b"STORED", "set big")
    c.close()
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    slow.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
    slow.settimeout(10)
    slow.connect(("127.0.0.1", svc.port))
    slow.sendall(b"get big\r\n")
    want = b"VALUE big 0 %d\r\n" % len(big) + big + b"\r\nEND\r\n"
    got, error, hurry = [], [], threading.Event()

    def read_slowly():
        n = 0
        try:
            while n < len(want):
                got.append(slow.recv(65536 if hurry.is_set() else 1024))
                if not got[-1]:
                    break
                n += len(got[-1])
                if not hurry.is_set():
                    time.sleep(0.05)
        except OSError as e:
            error.append(e)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    hogs = []
    try:
        pipelining_hogs(svc, 300, 0.03, hogs)
        time.sleep(3)
        hurry.set()
        reader.join(30)
        st = Client(svc).stats()
        print("a slow reader beside 300 hogs: %d of %d bytes, %s hogs closed for the dry pool"
              % (len(b"".join(got)), len(want), st["shard0:pool_stall_closed"]), flush=True)
        check(not error and b"".join(got) == want,
              "the slow reader lost its reply: %s, %d of %d bytes" %
              (error, len(b"".join(got)), len(want)))
        check(st["shard0:pool_stall_closed"] != "0", "no hog closed: the pool never ran dry")
    finally:
        hurry.set()
        for s in hogs:
            s.close()
        slow.close()
    svc.stop()


def slow_big_reader():
    """limits.stall_timeout (2 s here) closes peers that take nothing, not a
    client reading 12 MB at 100 KB/s: our sends of it are zero-copy and finish
    only once acknowledged, behind megabytes of send buffer (40 s at that
    pace), but the bytes it acknowledges keep growing."""
    svc = kv_service(overrides={"shards.cpus": "0", "limits.stall_timeout": "2s"})
    val = random.randbytes(1000 * 1000)
    keys = [b"v%d" % i for i in range(12)]
    c = Client(svc, timeout=10)
    for k in keys:
        check(c.set(k, val) == b"STORED", "set %s" % k)
    c.close()
    want = b"".join(b"VALUE %s 0 %d\r\n" % (k, len(val)) + val + b"\r\n" for k in keys) + b"END\r\n"
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)  # an Ethernet's segments
    s.settimeout(10)
    s.connect(("127.0.0.1", svc.port))
    s.sendall(b"get " + b" ".join(keys) + b"\r\n")
    got, t0 = [], time.time()
    try:
        while sum(map(len, got)) < len(want):
            slow = time.time() - t0 < 6
            got.append(s.recv(4096 if slow else 1 << 20))
            if not got[-1]:
                break
            if slow:
                time.sleep(0.04)
    except OSError as e:
        fail("a slow reader of 12 MB: %s after %d bytes" % (e, sum(map(len, got))))
    check(b"".join(got) == want, "a slow reader of 12 MB got %d of %d bytes" %
          (sum(map(len, got)), len(want)))
    print("a reader at 100 KB/s with stall_timeout 2 s: all %d bytes" % len(want), flush=True)
    s.close()
    svc.stop()


def arg(v):
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v


if sys.argv[1:]:  # one case alone: test_kv_backpressure.py pipelining_crowd hogs=200 ...
    globals()[sys.argv[1]](**{k: arg(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])})
    print("ok")
    sys.exit(0)
run("0", 1)
deep_pipeline("0")
stalled_crowd()
stalled_crowd(300, 6.0, {"limits.stall_timeout": "1s", "limits.pool_stall_timeout": "0"})
raise_nofile(1100 + 200)
stalled_crowd(1100, 6.0)  # the pool runs dry: limits.pool_stall_timeout, not stall_timeout
pipelining_crowd()
pipelining_crowd(recv_cap="no")
pipelining_crowd(hogs=200, within=3.0, send_for=0.05, stall="60s")
pipelining_crowd(hogs=300, within=3.0, send_for=0.03, stall="60s", pool=512)
pipelining_crowd(hogs=300, within=3.0, send_for=0.03, stall="60s", pool=512, driver="epoll")
slow_reader_kept()
slow_big_reader()
if shards_available():
    run("0-1", 2)
    remote_only()
    deep_pipeline("0-1")
    pending_limit()
print("ok")
