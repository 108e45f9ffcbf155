"""limits.idle_timeout closes idle connections, and also stuck ones: a peer that
stopped reading its answers (the send never finishes) or went silent. Before,
a stuck connection could keep its pool buffers until shutdown.
limits.stall_timeout closes only stuck ones: an idle connection stays open.
A reload that turns limits.stall_timeout on covers connections already stuck."""
import os
import signal
import socket
import tempfile
import time

from vqtest import Service, check, recv_exact

svc = Service("echo", overrides={"shards.cpus": "0", "limits.idle_timeout": "500ms",
                                 "limits.max_output": "64K"})

# An idle connection is closed after the limit, not before.
idle = svc.connect()
time.sleep(0.2)
idle.sendall(b"ping")
check(recv_exact(idle, 4) == b"ping", "echo")
t0 = time.time()
idle.settimeout(5)
check(idle.recv(1) == b"", "idle connection not closed")
took = time.time() - t0
check(0.4 <= took < 3, "idle close after %.2fs, limit 0.5s" % took)


def send_until(stuck, secs, stop_after_timeouts=0):
    """Send without reading for up to secs. Returns (bytes sent, reset by the
    server). With stop_after_timeouts, return once that many sends in a row
    found no room: the server is stuck, its reading paused."""
    sent, timeouts, t0 = 0, 0, time.time()
    while time.time() - t0 < secs:
        try:
            sent += stuck.send(b"x" * (1 << 20))
            timeouts = 0
        except socket.timeout:
            timeouts += 1
            if stop_after_timeouts and timeouts >= stop_after_timeouts:
                return sent, False
        except (ConnectionResetError, BrokenPipeError):
            return sent, True
    return sent, False


def stuck_peer(svc):
    stuck = svc.connect()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.settimeout(1)
    return stuck


def cut_off_when_stuck(svc):
    """A peer that never reads: once the kernel's socket buffers are full (they
    grow to a few MB first) the server's send stalls and its reading pauses; with
    no progress for the limit the connection goes (a reset, as data is left
    unread). Everyone else is still served."""
    sent, closed = send_until(stuck_peer(svc), 30)
    check(closed, "a peer that stopped reading was never cut off (%d bytes sent)" % sent)
    check(sent > 256 << 10, "the server was cut off before it was stuck (%d bytes)" % sent)
    with svc.connect() as s:
        s.sendall(b"still here")
        check(recv_exact(s, 10) == b"still here", "echo after the stuck peer")


cut_off_when_stuck(svc)
svc.stop()

# limits.stall_timeout alone: the idle connection outlives it, the stuck one does not.
svc = Service("echo", overrides={"shards.cpus": "0", "limits.idle_timeout": "0",
                                 "limits.stall_timeout": "500ms", "limits.max_output": "64K"})
idle = svc.connect()
idle.sendall(b"ping")
check(recv_exact(idle, 4) == b"ping", "echo")
time.sleep(1.5)
idle.sendall(b"pong")
check(recv_exact(idle, 4) == b"pong", "an idle connection was closed by limits.stall_timeout")
cut_off_when_stuck(svc)
idle.sendall(b"ping")
check(recv_exact(idle, 4) == b"ping", "the idle connection after the stuck one went")
svc.stop()

# No timeouts at first: a connection gets stuck and stays. A reload turns
# limits.stall_timeout on, and the stuck connection goes without any new traffic.
fd, path = tempfile.mkstemp(suffix=".ini")
os.close(fd)
CONF = ("[shards]\ncpus = 0\n[limits]\nidle_timeout = 0\nstall_timeout = %s\n"
        "max_output = 64K\n")
with open(path, "w") as f:
    f.write(CONF % "0")
svc = Service("echo", config=path)
try:
    stuck = stuck_peer(svc)
    sent, closed = send_until(stuck, 30, stop_after_timeouts=3)
    check(not closed and sent > 256 << 10, "the peer should be stuck (%d bytes sent)" % sent)
    time.sleep(1)
    _, closed = send_until(stuck, 0.1)
    check(not closed, "a stuck connection was closed with every timeout off")
    with open(path, "w") as f:
        f.write(CONF % "500ms")
    mark = len(svc.log)
    svc.signal(signal.SIGHUP)
    svc.wait_log(r"reloaded", start=mark)
    t0 = time.time()
    _, closed = send_until(stuck, 10)
    check(closed, "a reload turning limits.stall_timeout on left a stuck connection open")
    print("ok  stuck connection closed %.1fs after the reload" % (time.time() - t0))
finally:
    svc.stop()
    os.unlink(path)
print("ok")
