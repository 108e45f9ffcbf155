"""Under a small per-shard memory limit, veloq-kv evicts the least recently used
items, counts them, stays under the limit, and never returns a wrong value."""
from kvtest import Client, kv_service, shards_available
from vqtest import check


def run(cpus, nshards):
    svc = kv_service(overrides={"shards.cpus": cpus, "kv.memory": "1M"})
    c = Client(svc)
    n = 3000
    val = lambda i: (b"%06d" % i) * 170  # ~1 KiB
    for start in range(0, n, 100):
        c.send(b"".join(b"set k%d 0 0 %d\r\n%s\r\n" % (i, len(val(i)), val(i))
                        for i in range(start, start + 100)))
        for i in range(100):
            check(c.line() == b"STORED", "set under memory pressure")
    st = c.stats()
    evictions = int(st["evictions"])
    # about 1 KiB items: a shard holds under a thousand of them
    check(int(st["curr_items"]) <= nshards * 1000 and evictions >= n - nshards * 1000,
          "evictions: %d, items %s" % (evictions, st["curr_items"]))
    check(int(st["curr_items"]) + evictions == n, "items %s + evictions %d != %d" %
          (st["curr_items"], evictions, n))
    for s in range(nshards):
        check(int(st["shard%d:bytes" % s]) <= 1 << 20, "shard %d over its limit" % s)
        check(int(st["shard%d:evictions" % s]) > 0, "shard %d evicted nothing" % s)
    got = dict((k, v) for k, _, v, _ in c.get(*[b"k%d" % i for i in range(n)]))
    for k, v in got.items():
        check(v == val(int(k[1:])), "wrong value for %r" % k)
    check(len(got) == int(st["curr_items"]), "present %d, stats say %s" %
          (len(got), st["curr_items"]))
    check(all(b"k%d" % i in got for i in range(n - 200, n)), "the newest keys were evicted")
    check(b"k0" not in got, "the oldest key survived")
    # a value that cannot fit at all
    c.send(b"set huge 0 0 1048576\r\n" + b"x" * 1048576 + b"\r\n")
    check(c.line() == b"SERVER_ERROR out of memory storing object", "oversized for the limit")
    check(c.cmd(b"version").startswith(b"VERSION"), "in step after the refusal")
    svc.stop()


run("0", 1)
if shards_available():
    run("0-1", 2)
else:
    print("two-shard run skipped: message rings not merged yet")
print("ok")
