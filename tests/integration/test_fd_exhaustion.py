"""Out of fds at run time (the limit lowered under a running veloq-echo, as
another process in the same cgroup or a careless prlimit can): accepts fail,
the open connections are still served, the failure is logged a few times and
not once per retry, new connections are served again once fds free up, and
the stop is clean. On io_uring a multishot accept keeps the limit it was armed
with, so only the epoll driver sees EMFILE here; both must keep serving."""
import shutil
import socket
import subprocess
import time

from vqtest import Service, check, skip

if not shutil.which("prlimit"):
    skip("prlimit (util-linux) is not installed")


def ping(c, timeout=2):
    c.settimeout(timeout)
    try:
        c.sendall(b"ping")
        return c.recv(4) == b"ping"
    except OSError:
        return False


for driver in ("epoll", "uring"):
    svc = Service("echo", overrides={"shards.cpus": "0", "io.driver": driver,
                                     "limits.max_connections": "4096"})
    old = [svc.connect() for _ in range(4)]
    soft = subprocess.run(["prlimit", "--pid", str(svc.proc.pid), "--nofile", "--output=SOFT",
                           "--noheadings"], check=True, capture_output=True, text=True).stdout
    subprocess.run(["prlimit", "--pid", str(svc.proc.pid), "--nofile=128:"], check=True)
    crowd = []
    for _ in range(400):
        try:
            crowd.append(socket.create_connection(("127.0.0.1", svc.port), timeout=2))
        except OSError:
            break  # the listen backlog is full: enough
    time.sleep(1.5)
    check(all(ping(c) for c in old), "%s: open connections not served while out of fds" % driver)
    accept_lines = [l for l in svc.log if "accept:" in l]
    if driver == "epoll":
        check(accept_lines, "epoll: no accept failure logged:\n" + svc.text())
    check(len(accept_lines) <= 5, "%s: %d accept failure lines in 1.5 s" % (driver, len(accept_lines)))
    for c in crowd:
        c.close()
    subprocess.run(["prlimit", "--pid", str(svc.proc.pid), "--nofile=%s:" % soft.strip()], check=True)
    time.sleep(0.5)
    fresh = svc.connect()
    check(ping(fresh), "%s: a new connection is not served once fds are back" % driver)
    for c in old + [fresh]:
        c.close()
    svc.stop()
    print("ok  %s: served through fd exhaustion, %d accept failure lines, clean stop" %
          (driver, len(accept_lines)))
print("ok")
