"""Many clients at once on two shards, every byte checked: 64 connections sending
small messages back to back without waiting for replies (pipelined), then 16
connections sending 1 MiB messages while they read the echo, then 8 threads in
strict request/response. The server must stop cleanly with every buffer home."""
import random
import threading

from vqtest import Service, check, echo_check, pattern, recv_exact, shard_totals, alarming

svc = Service("echo", overrides={"shards.cpus": "0-1"})

# 1. Pipelined small messages: each send() is one 1..300-byte message.
rng = random.Random(1)
small = [pattern(i, 24 << 10) for i in range(64)]
n = echo_check(svc.port, small, chunk=lambda i: rng.randint(1, 300))
check(n == 64 * (24 << 10), "small: echoed %d bytes" % n)

# 2. 1 MiB messages: each connection sends 3 of them, reading as it goes.
big = [pattern(1000 + i, 3 << 20) for i in range(16)]
n = echo_check(svc.port, big, chunk=lambda i: 1 << 20)
check(n == 16 * (3 << 20), "big: echoed %d bytes" % n)

# 3. Request/response from threads: one message, wait for all of it, the next.
errors = []


def pingpong(t):
    try:
        with svc.connect() as s:
            r = random.Random(t)
            for k in range(200):
                msg = pattern(t * 1000 + k, r.randint(1, 20000))
                s.sendall(msg)
                if recv_exact(s, len(msg)) != msg:
                    errors.append("thread %d message %d differs" % (t, k))
                    return
    except Exception as e:  # a failure in a thread must fail the test
        errors.append("thread %d: %r" % (t, e))


threads = [threading.Thread(target=pingpong, args=(t,)) for t in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join(120)
check(not errors, "; ".join(errors))
check(not any(t.is_alive() for t in threads), "request/response threads hung")

svc.stop()
tot = shard_totals(svc.text())
check(tot["shards"] == 2, "expected two shards' stop lines:\n" + svc.text())
check(tot["accepted"] == 64 + 16 + 8 and tot["closed"] == tot["accepted"],
      "accepted/closed %d/%d, expected 88:\n%s" % (tot["accepted"], tot["closed"], svc.text()))
check(tot["bytes_in"] == tot["bytes_out"], "bytes in %d != out %d" % (tot["bytes_in"],
                                                                      tot["bytes_out"]))
bad = alarming(svc.text())
check(not bad, "alarming log lines:\n" + "\n".join(bad))
print("ok: %d connections, %d bytes in" % (tot["accepted"], tot["bytes_in"]))
