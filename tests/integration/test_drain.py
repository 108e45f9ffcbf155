"""SIGTERM drains: a client whose large echo is still in flight when the signal
arrives -- part of it queued in the server, part still being sent -- gets every
byte back, then the server closes the connection and stops cleanly (no leaked
buffer or connection). A peer that never reads is cut off at the deadline.
veloq-kv: a request the client is part way through sending when SIGTERM
arrives (a command line, a value) is waited for and answered, though the
server already took its first part out of the input queue."""
import os
import signal
import socket
import threading
import time

from vqtest import Service, check, recv_exact

# Far more than the socket buffers plus limits.max_output (4M): when SIGTERM
# lands, the server holds queued output and has paused reading the rest.
SIZE = 24 << 20


def send_all(s, payload):
    try:
        s.sendall(payload)
    except OSError:
        pass  # the deadline case: the server resets a peer that never reads


def start_sender(s, payload):
    t = threading.Thread(target=send_all, args=(s, payload), daemon=True)
    t.start()
    return t


svc = Service("echo", overrides={"shards.cpus": "0", "shutdown.drain_timeout": "20s"})
payload = os.urandom(SIZE)
s = svc.connect(timeout=30)
sender = start_sender(s, payload)
time.sleep(0.5)
check(sender.is_alive(), "the whole request was taken before SIGTERM; nothing was in flight")
svc.signal(signal.SIGTERM)
svc.wait_log(r"draining", timeout=10)
got = recv_exact(s, SIZE)
sender.join(10)
check(got == payload, "echo differs after the drain")
s.settimeout(10)
check(s.recv(1) == b"", "the server should close the connection once it is drained")
s.close()
svc.stop()
check("drain deadline passed" not in svc.text(), "drain hit its deadline:\n" + svc.text())
print("ok  %d MiB echo in flight at SIGTERM delivered whole, clean stop" % (SIZE >> 20))

# A peer that never reads: the drain deadline closes it and the stop stays clean.
svc = Service("echo", overrides={"shards.cpus": "0", "shutdown.drain_timeout": "300ms"})
s = svc.connect()
sender = start_sender(s, payload)
time.sleep(0.5)
t0 = time.time()
svc.stop()
took = time.time() - t0
check("drain deadline passed: closing 1 connections" in svc.text(), "no deadline:\n" + svc.text())
check(took < 5, "stop took %.1fs with a 300ms drain deadline" % took)
s.close()
print("ok  drain deadline closes a peer that never reads, clean stop")

# veloq-kv keeps a half-received request in the session, not the input queue.
for first, rest, want in [
        (b"set k 0 0 1000000\r\n" + b"x" * 400000, b"x" * 600000 + b"\r\n", b"STORED\r\n"),
        (b"ver", b"sion\r\n", b"VERSION ")]:
    svc = Service("kv", overrides={"shards.cpus": "0", "shutdown.drain_timeout": "5s"})
    s = svc.connect(timeout=10)
    s.sendall(first)
    time.sleep(0.3)  # quiet long enough that a drain would take it for idle
    svc.signal(signal.SIGTERM)
    svc.wait_log(r"draining", timeout=10)
    time.sleep(0.5)
    try:
        s.sendall(rest)
        got = recv_exact(s, len(want))
    except OSError as e:
        got = repr(e).encode()
    check(got == want, "a request half sent at SIGTERM: %r, not %r" % (got, want))
    s.close()
    svc.stop()
    check("drain deadline passed" not in svc.text(), "drain hit its deadline:\n" + svc.text())
print("ok  kv: requests half sent at SIGTERM are waited for and answered")
