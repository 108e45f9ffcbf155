"""A client that sends a lot and never reads. Its echo backs up; once more than
limits.max_output is queued the server stops reading from it, so the server
holds a bounded amount for it, its memory stays flat, and other clients are
served meanwhile. When the client finally reads, every byte comes back, in order."""
import selectors
import socket
import time

from vqtest import (Service, alarming, check, echo_check, pattern, proc_status, recv_exact,
                    tcp_queues)

MAX_OUTPUT = 1 << 20
svc = Service("echo", overrides={"shards.cpus": "0-1", "limits.max_output": MAX_OUTPUT})
rss0 = proc_status(svc.proc.pid, "VmRSS")

slow = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
slow.setblocking(False)
here = slow.getsockname()[1]
data = pattern(1, 64 << 20)
sent, last = 0, time.time()
while time.time() - last < 1.0 and sent < len(data):
    try:
        sent += slow.send(data[sent:sent + (1 << 20)])
        last = time.time()
    except BlockingIOError:
        time.sleep(0.01)
check(sent < len(data), "the server took all %d MiB from a client that never reads" %
      (len(data) >> 20))

# Where the sent bytes are: every byte is in one of the four socket queues or in
# the server's own hands. The server may hold max_output plus what was already in
# flight (multishot recvs landing before the pause takes effect).
def held_by_server(what):
    ends = {(here, svc.port), (svc.port, here)}
    q = {k: v for k, v in tcp_queues(svc.port).items() if k in ends}
    check(len(q) == 2, "expected the two ends of one connection in /proc/net/tcp: %s" % q)
    in_kernel = sum(tx + rx for tx, rx in q.values())
    held = sent - in_kernel
    print("%s: %d KiB sent, %d KiB in socket queues, %d KiB held by the server"
          % (what, sent >> 10, in_kernel >> 10, held >> 10))
    check(held <= MAX_OUTPUT + (1 << 20),
          "the server holds %d KiB for a client that does not read (limits.max_output = "
          "%d KiB)" % (held >> 10, MAX_OUTPUT >> 10))
    return held


held = held_by_server("stalled")

# Meanwhile others are served, on both shards (connections spread by hash).
n = echo_check(svc.port, [pattern(100 + i, 256 << 10) for i in range(16)], timeout=30)
check(n == 16 * (256 << 10), "other clients: %d bytes echoed" % n)
with svc.connect() as s:
    s.sendall(b"ping\n")
    check(recv_exact(s, 5) == b"ping\n", "ping while a reader is stalled")
rss1 = proc_status(svc.proc.pid, "VmRSS")
check(rss1 - rss0 < 16 << 10, "VmRSS grew from %d to %d kB" % (rss0, rss1))

# Still paused: had the server gone on reading from the slow client, the bytes
# would have moved from the socket queues into its hands.
held = max(held, held_by_server("after the others"))

# Now it reads: all of it comes back, and the rest of its data goes through too.
slow.setblocking(True)
slow.settimeout(30)
stalled, got = sent, 0
sel = selectors.DefaultSelector()
sel.register(slow, selectors.EVENT_READ | selectors.EVENT_WRITE)
slow.setblocking(False)
deadline = time.time() + 60
while got < len(data):
    check(time.time() < deadline, "slow reader: %d of %d bytes back" % (got, len(data)))
    for _, ev in sel.select(1):
        if ev & selectors.EVENT_WRITE and sent < len(data):
            try:
                sent += slow.send(data[sent:sent + (256 << 10)])
            except BlockingIOError:
                pass
            if sent == len(data):
                sel.modify(slow, selectors.EVENT_READ)
        if ev & selectors.EVENT_READ:
            try:
                b = slow.recv(1 << 20)
            except BlockingIOError:
                continue
            check(b, "slow reader: EOF after %d bytes" % got)
            check(b == data[got:got + len(b)], "slow reader: bytes differ at %d" % got)
            got += len(b)
sel.close()
slow.close()

svc.stop()
bad = alarming(svc.text())
check(not bad, "alarming log lines:\n" + "\n".join(bad))
print("ok: stalled at %d KiB, server held %d KiB, VmRSS %d -> %d kB, %d MiB echoed after"
      % (stalled >> 10, held >> 10, rss0, rss1, len(data) >> 20))
