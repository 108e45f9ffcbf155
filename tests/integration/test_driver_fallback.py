"""io.driver=auto on a host that blocks io_uring: with a seccomp filter making
io_uring_setup fail with EPERM (as Docker's default profile does), veloq-echo
must fall back to epoll, say so once with the reason, serve, and stop cleanly.
With io.driver=uring it must refuse to start and name the key. A memlock limit
too small for the registered buffers (without CAP_IPC_LOCK) falls back too."""
import os
import subprocess
import sys

from vqtest import Service, check, fail, recv_exact, skip

HERE = os.path.dirname(os.path.abspath(__file__))
WRAP = [sys.executable, os.path.join(HERE, "seccomp_no_uring.py")]

# The filter itself must work, or the test proves nothing.
probe = subprocess.run(WRAP + [sys.executable, "-c",
                               "import ctypes, ctypes.util\n"
                               "libc = ctypes.CDLL(None, use_errno=True)\n"
                               "p = ctypes.create_string_buffer(120)\n"
                               "r = libc.syscall(425, 8, p)\n"
                               "print(r, ctypes.get_errno())"],
                       capture_output=True, text=True, timeout=30)
if probe.returncode != 0 and "prctl" in probe.stderr:
    skip("cannot install a seccomp filter here: " + probe.stderr.strip())
check(probe.stdout.split() == ["-1", "1"],
      "seccomp filter did not make io_uring_setup fail with EPERM: %r %r" %
      (probe.stdout, probe.stderr))

svc = Service("echo", overrides={"shards.cpus": "0-1", "io.driver": "auto"}, prefix=WRAP)
line = svc.wait_log(r"io.driver = auto: io_uring unavailable")
check("Operation not permitted" in line and "using epoll" in line, "fallback line: " + line)
for i in range(10):
    with svc.connect() as s:
        msg = b"over epoll %d\n" % i * (1 + i * 500)
        s.sendall(msg)
        check(recv_exact(s, len(msg)) == msg, "echo mismatch on epoll")
svc.stop()
text = svc.text()
check(text.count("io_uring unavailable") == 1, "the choice must be logged once:\n" + text)
check("epoll" in text and " uring sq=" not in text, "shards must run epoll:\n" + text)

# Asking for io_uring explicitly on such a host is a start-up error naming the key.
svc = Service("echo", overrides={"io.driver": "uring"}, prefix=WRAP, wait=False)
try:
    rc = svc.proc.wait(30)
except subprocess.TimeoutExpired:
    svc.kill()
    fail("io.driver=uring under seccomp did not exit")
svc._reader.join(5)
check(rc != 0, "io.driver=uring must fail where io_uring is blocked")
check("io.driver = uring" in svc.text() and "Operation not permitted" in svc.text(),
      "error must name io.driver and the reason:\n" + svc.text())

# RLIMIT_MEMLOCK too small for 16 MB of registered buffers: registering fails with
# ENOMEM. Root is exempt (CAP_IPC_LOCK), so drop to nobody first when we are root.
MEMLOCK = [sys.executable, "-c",
           "import os, resource, sys\n"
           "resource.setrlimit(resource.RLIMIT_MEMLOCK, (65536, 65536))\n"
           "if os.getuid() == 0:\n"
           "    os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
           "os.execv(sys.argv[1], sys.argv[1:])\n"]
svc = Service("echo", overrides={"io.driver": "auto"}, prefix=MEMLOCK)
line = svc.wait_log(r"io.driver = auto: io_uring unavailable")
# Usually registering the buffers fails; ring set-up itself may fail first when the
# other shard's attempt is still charged to the same user's locked memory.
check("Cannot allocate memory" in line and "RLIMIT_MEMLOCK" in line,
      "memlock fallback line: " + line)
with svc.connect() as s:
    s.sendall(b"memlock\n")
    check(recv_exact(s, 8) == b"memlock\n", "echo mismatch after memlock fallback")
svc.stop()

# Without the filter, auto picks io_uring and says nothing about a fallback.
svc = Service("echo", overrides={"io.driver": "auto"})
with svc.connect() as s:
    s.sendall(b"ring\n")
    check(recv_exact(s, 5) == b"ring\n", "echo mismatch on uring")
svc.stop()
check("io_uring unavailable" not in svc.text() and " uring " in svc.text(),
      "auto without a filter must use io_uring:\n" + svc.text())
print("ok")
