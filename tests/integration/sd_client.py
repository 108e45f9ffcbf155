"""Clients for test_systemd.py, run inside the test's network namespace through
`nsenter -t PID -n python3 sd_client.py MODE ...` (its own loopback)."""
import socket
import sys
import threading
import time

PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 7000


def connect():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=20)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n):
    got = bytearray()
    while len(got) < n:
        b = s.recv(min(n - len(got), 1 << 20))
        if not b:
            break
        got += b
    return bytes(got)


def echo(count):
    """Round trips on fresh connections; prints ok or the first failure."""
    for i in range(count):
        with connect() as s:
            msg = b"ping %d\n" % i
            s.sendall(msg)
            if recv_exact(s, len(msg)) != msg:
                print("bad echo", flush=True)
                sys.exit(1)
    print("ok %d" % count, flush=True)


def hold(n, seconds):
    """Open n connections, say so, keep them open for `seconds`."""
    conns = [connect() for _ in range(n)]
    for s in conns:
        s.sendall(b"x")
        recv_exact(s, 1)
    print("open %d" % n, flush=True)
    time.sleep(seconds)
    for s in conns:
        s.close()
    print("closed", flush=True)


def bulk(total, read_delay):
    """Send `total` bytes without reading, so the service holds queued output
    (a request in flight); only after read_delay seconds read the whole answer
    back and check it byte for byte."""
    pattern = bytes(range(256)) * 256
    data = (pattern * (total // len(pattern) + 1))[:total]
    s = connect()
    sender = threading.Thread(target=s.sendall, args=(data,), daemon=True)
    sender.start()
    print("sending", flush=True)
    time.sleep(read_delay)
    back = recv_exact(s, total)
    sender.join(10)
    s.shutdown(socket.SHUT_WR)
    tail = s.recv(1)  # the service closes after the answer: EOF
    s.close()
    if back != data:
        print("answer: %d of %d bytes, %s" % (len(back), total,
              "equal so far" if data.startswith(back) else "corrupt"), flush=True)
        sys.exit(1)
    print("answered %d eof=%s" % (len(back), tail == b""), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    args = [float(a) for a in sys.argv[3:]]
    if mode == "echo":
        echo(int(args[0]) if args else 5)
    elif mode == "hold":
        hold(int(args[0]), args[1])
    elif mode == "bulk":
        bulk(int(args[0]), args[1])
