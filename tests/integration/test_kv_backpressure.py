"""A client that asks for far more reply than it reads cannot grow veloq-kv's
memory: a pipeline of gets for a large value, and one get line naming a large
value hundreds of times, each ask for hundreds of MiB, also when every key
lives on the other shard. The server stops taking requests while the
connection's output is full and goes on, in order and with nothing lost, as
the client reads: also after the client has half-closed, and also for a deep
pipeline read as fast as it is answered (held-back requests are not "input
too large")."""
import socket
import threading
import time

from kvtest import Client, kv_service, shards_available
from vqtest import check, proc_status

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


run("0", 1)
deep_pipeline("0")
if shards_available():
    run("0-1", 2)
    remote_only()
    deep_pipeline("0-1")
    pending_limit()
print("ok")
