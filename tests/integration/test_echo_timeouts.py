"""limits.idle_timeout closes idle connections, and also stuck ones: a peer that
stopped reading its answers (the send never finishes) or went silent. Before,
a stuck connection could keep its pool buffers until shutdown.
limits.stall_timeout closes only stuck ones: an idle connection stays open."""
import socket
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


def cut_off_when_stuck(svc):
    """A peer that never reads: once the kernel's socket buffers are full (they
    grow to a few MB first) the server's send stalls and its reading pauses; with
    no progress for the limit the connection goes (a reset, as data is left
    unread). Everyone else is still served."""
    stuck = svc.connect()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.settimeout(1)
    sent, closed, t0 = 0, False, time.time()
    while time.time() - t0 < 30 and not closed:
        try:
            sent += stuck.send(b"x" * (1 << 20))
        except socket.timeout:
            pass
        except (ConnectionResetError, BrokenPipeError):
            closed = True
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
print("ok")
