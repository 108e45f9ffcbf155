"""veloq-echo under each driver (io.driver=uring, io.driver=epoll): concurrent
clients with messages across many buffers, a client that writes far more than
it reads (reading pauses at limits.max_output and must resume without losing a
byte), peers that reset mid-stream, and a clean, leak-free stop."""
import os
import random
import socket
import struct
import threading

from vqtest import Service, check, fail, recv_exact


def pattern(seed, n):
    r = random.Random(seed)
    return r.randbytes(n)


def client(svc, seed, errors):
    try:
        with svc.connect(timeout=30) as s:
            for k in range(4):
                msg = pattern(seed * 10 + k, random.Random(seed + k).randint(1, 200000))
                t = threading.Thread(target=s.sendall, args=(msg,))
                t.start()
                got = recv_exact(s, len(msg))
                t.join()
                if got != msg:
                    errors.append("client %d message %d corrupted" % (seed, k))
                    return
    except Exception as e:  # noqa: BLE001 - report any failure of the client
        errors.append("client %d: %r" % (seed, e))


def slow_reader(svc):
    """Write 64 MB without reading: the server's output queue passes max_output
    (1M here), it stops reading; then read everything back and compare. 64 MB is
    more than every socket buffer on the way can absorb once autotuned (the
    server's receive buffer alone may grow to 32 MB), so the sender must block."""
    msg = pattern(99, 64 << 20)
    with svc.connect(timeout=60) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        t = threading.Thread(target=s.sendall, args=(msg,))
        t.start()
        t.join(2)  # sendall blocks once the server stops reading: that is the point
        check(t.is_alive(), "the server should have stopped reading from a slow reader")
        got = recv_exact(s, len(msg))
        t.join()
        check(got == msg, "slow reader: echoed bytes differ")


def resetter(svc):
    for _ in range(5):
        s = svc.connect()
        s.sendall(pattern(7, 300000)[:200000])
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST while the server is still echoing


for driver in ("uring", "epoll"):
    svc = Service("echo", overrides={"shards.cpus": "0-1", "io.driver": driver,
                                     "limits.max_output": "1M"})
    check(("%s " % driver) in svc.text(), "not running %s:\n%s" % (driver, svc.text()))
    errors = []
    threads = [threading.Thread(target=client, args=(svc, i, errors)) for i in range(24)]
    threads.append(threading.Thread(target=resetter, args=(svc,)))
    for t in threads:
        t.start()
    slow_reader(svc)
    for t in threads:
        t.join(120)
        if t.is_alive():
            fail("%s: a client hung:\n%s" % (driver, svc.text()))
    check(not errors, "%s: %s" % (driver, "; ".join(errors)))
    with svc.connect() as s:  # still serving after all that
        s.sendall(b"still here\n")
        check(recv_exact(s, 11) == b"still here\n", "%s: echo after stress" % driver)
    svc.stop()
    print(driver, "ok")
print("ok")
