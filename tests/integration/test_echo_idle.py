"""5,000 idle connections on two shards: all accepted and live (each echoes one
byte), then SIGTERM with all of them still open. Idle connections must not hold
up the drain (drain_timeout is set far above the limit we allow), every client
sees an orderly close, and the server stops with every buffer and fd accounted."""
import resource
import selectors
import socket
import time

from vqtest import (Service, alarming, check, fail, raise_nofile, shard_totals, skip,
                    socket_fds)

N = 5000
MAX_CONN = 6000  # per shard: the server asks for 2 x 6000 + a reserve of fds
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
if hard < 2 * MAX_CONN + 200 or raise_nofile(N + 200) < N + 200:
    skip("RLIMIT_NOFILE hard limit is %d; this test needs %d (ulimit -Hn)" %
         (hard, 2 * MAX_CONN + 200))

svc = Service("echo", overrides={"shards.cpus": "0-1", "limits.max_connections": MAX_CONN,
                                 "shutdown.drain_timeout": "60s"})
socks = []
for i in range(N):
    try:
        s = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
    except OSError as e:
        fail("connection %d: %s" % (i, e))
    socks.append(s)

# Accepted is not enough: the server must hold every one. Wait for its count.
deadline = time.time() + 30
while socket_fds(svc.proc.pid) < N + 2 and time.time() < deadline:
    time.sleep(0.1)
held = socket_fds(svc.proc.pid)
check(held >= N + 2, "server holds %d sockets, expected %d connections + 2 listeners" %
      (held, N))

# Every connection is live: one byte out and back on each, all at once.
sel = selectors.DefaultSelector()
for i, s in enumerate(socks):
    s.setblocking(False)
    s.send(bytes([i & 0xff]))
    sel.register(s, selectors.EVENT_READ, i)
left, deadline = N, time.time() + 60
while left:
    if time.time() > deadline:
        fail("%d of %d connections did not echo their byte" % (left, N))
    for key, _ in sel.select(1):
        b = key.fileobj.recv(16)
        check(b == bytes([key.data & 0xff]), "connection %d echoed %r" % (key.data, b))
        sel.unregister(key.fileobj)
        left -= 1
sel.close()

# SIGTERM with all 5,000 still open: a prompt, clean, leak-free stop.
t0 = time.time()
svc.stop(timeout=30)
took = time.time() - t0
check(took < 10, "stopping with %d idle connections took %.1fs" % (N, took))

# Every client sees the server's orderly close (EOF), not a reset.
eof = 0
for i, s in enumerate(socks):
    s.setblocking(True)
    s.settimeout(5)
    try:
        b = s.recv(16)
    except OSError as e:
        fail("connection %d after shutdown: %s" % (i, e))
    check(b == b"", "connection %d got %r after shutdown" % (i, b))
    eof += 1
    s.close()

tot = shard_totals(svc.text())
check(tot["accepted"] == N and tot["closed"] == N,
      "accepted/closed %d/%d, expected %d:\n%s" % (tot["accepted"], tot["closed"], N, svc.text()))
bad = alarming(svc.text())
check(not bad, "alarming log lines:\n" + "\n".join(bad))
print("ok: %d connections held, stopped in %.2fs, %d saw EOF" % (N, took, eof))
