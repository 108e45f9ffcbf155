"""Peers that reset the connection (SO_LINGER 0, then close) while the server is
still sending them a large echo: the server drops those connections quietly,
keeps serving a healthy client throughout, and stops cleanly with every buffer
back in its pool."""
import socket
import struct
import threading
import time

from vqtest import Service, alarming, check, echo_check, pattern, shard_totals

svc = Service("echo", overrides={"shards.cpus": "0-1"})


def reset_mid_send(k, size):
    s = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
    # A small receive buffer: the echo backs up in the server, whose sends are in
    # flight or queued when the reset lands.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
    data = pattern(k, size)
    s.setblocking(False)
    sent, got, stall = 0, 0, time.time()
    while sent < size and time.time() - stall < 1.0:
        try:
            n = s.send(data[sent:sent + (256 << 10)])
            sent += n
            stall = time.time()
        except BlockingIOError:
            time.sleep(0.005)
    # Read a little of the echo, so the server is provably sending.
    s.settimeout(10)
    while got < 1000:
        b = s.recv(4096)
        check(b, "reset %d: EOF before the echo started" % k)
        got += len(b)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST: the unread echo and what the server still sends hit a dead socket
    return sent


# A healthy client runs all along, pipelining and checking every byte.
healthy_err = []


def healthy():
    try:
        echo_check(svc.port, [pattern(10 ** 6 + i, 8 << 20) for i in range(2)],
                   chunk=lambda i: 64 << 10)
    except SystemExit:  # fail() inside the thread
        healthy_err.append("healthy client failed (see above)")


h = threading.Thread(target=healthy)
h.start()
total = 0
for k in range(24):
    total += reset_mid_send(k, (8 << 20) if k % 2 else (512 << 10))
h.join(120)
check(not h.is_alive(), "healthy client hung")
check(not healthy_err, healthy_err[0] if healthy_err else "")

# After all that, a new client is served at once.
n = echo_check(svc.port, [pattern(7, 1 << 20)])
check(n == 1 << 20, "fresh client after the resets: %d bytes" % n)

time.sleep(0.2)  # let the server see the last reset
svc.stop()
tot = shard_totals(svc.text())
check(tot["accepted"] == 24 + 2 + 1 and tot["closed"] == tot["accepted"],
      "accepted/closed %d/%d, expected 27:\n%s" % (tot["accepted"], tot["closed"], svc.text()))
bad = alarming(svc.text())
check(not bad, "alarming log lines:\n" + "\n".join(bad))
print("ok: 24 resets after %d bytes sent; log:\n%s" % (total, svc.text()))
