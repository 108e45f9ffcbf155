"""Many concurrent clients whose keys span every shard: each writes its own keys
(values from a few bytes to past a pool buffer), pipelines, reads its own and
everyone else's keys back with multi-gets, and every value is checked."""
import hashlib
import threading

from kvtest import Client, kv_service, shards_available
from vqtest import check, raise_nofile

CLIENTS = 48
KEYS = 120


def value(c, i):
    size = [3, 100, 1000, 20000][(c + i) % 4]
    seed = hashlib.sha256(b"%d/%d" % (c, i)).digest()
    return (seed * (size // len(seed) + 1))[:size]


def key(c, i):
    return b"c%d:k%d" % (c, i)


def run(cpus):
    svc = kv_service(overrides={"shards.cpus": cpus})
    errors = []
    written = threading.Barrier(CLIENTS)

    def client(c):
        try:
            cl = Client(svc, timeout=60)
            req = b"".join(b"set %s %d 0 %d\r\n%s\r\n" % (key(c, i), c, len(value(c, i)),
                                                         value(c, i)) for i in range(KEYS))
            cl.send(req)
            for i in range(KEYS):
                line = cl.line()
                if line != b"STORED":
                    errors.append("client %d set %d: %r" % (c, i, line))
                    return
            written.wait(60)
            for other in (c, (c + 1) % CLIENTS, (c + 7) % CLIENTS):
                keys = [key(other, i) for i in range(KEYS)]
                got = cl.get(*keys)
                want = [(key(other, i), other, value(other, i), None) for i in range(KEYS)]
                if got != want:
                    errors.append("client %d reading %d: %d values, first mismatch %r" %
                                  (c, other, len(got), next((g[0] for g, w in zip(got, want)
                                                             if g != w), None)))
            # pipelined single gets, answered in order
            cl.send(b"".join(b"get %s\r\n" % key(c, i) for i in range(KEYS)))
            for i in range(KEYS):
                if cl.read_values() != [(key(c, i), c, value(c, i), None)]:
                    errors.append("client %d pipelined get %d" % (c, i))
            cl.close()
        except BaseException as e:  # noqa: BLE001 - fail() raises SystemExit in a thread
            errors.append("client %d: %r" % (c, e))
            written.abort()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check(not errors, "%d errors, first: %s" % (len(errors), errors[:3]))
    st = Client(svc).stats()
    check(int(st["curr_items"]) == CLIENTS * KEYS, "items: %s" % st["curr_items"])
    check(int(st["get_hits"]) == CLIENTS * KEYS * 4, "hits: %s" % st["get_hits"])
    waits = sum(int(v) for k, v in st.items() if k.endswith(":pool_waits"))
    print("%s: replies waited for pool buffers %d times" % (cpus, waits))
    if cpus != "0":
        check(int(st["shard0:curr_items"]) > 0 and int(st["shard1:curr_items"]) > 0,
              "keys on every shard")
    svc.stop()


raise_nofile(4 * CLIENTS + 64)
run("0")
if shards_available():
    run("0-1")
else:
    print("two-shard run skipped: message rings not merged yet")
print("ok")
