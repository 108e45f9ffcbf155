"""Start-up checks fail early with the fix in the message, for real: veloq-echo
run without CAP_IPC_LOCK under a lowered RLIMIT_MEMLOCK, without
CAP_SYS_RESOURCE under a low RLIMIT_NOFILE, and with huge pages required but
not reserved."""
import os
import shutil
import subprocess

from vqtest import BUILD, SOURCE, check, free_port, skip

ECHO = os.path.join(BUILD, "apps", "veloq-echo")
CONFIG = os.path.join(SOURCE, "configs", "echo.ini")
for tool in ("prlimit", "setpriv"):
    if not shutil.which(tool):
        skip("%s (util-linux) is not installed" % tool)


def run(prefix, *overrides):
    cmd = list(prefix) + [ECHO, "--config", CONFIG, "-o", "shards.cpus=0",
                          "-o", "listen.port=%d" % free_port()]
    for o in overrides:
        cmd += ["-o", o]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr


# Drop CAP_IPC_LOCK (and CAP_SYS_RESOURCE, which could raise limits) from the
# bounding set, so that even as root the limits are what the kernel enforces.
NOCAPS = ["setpriv", "--inh-caps=-all", "--bounding-set=-ipc_lock,-sys_resource"]

# 1024 x 16K = 16 MiB of registered buffers against a 1 MiB memlock limit.
# io.driver = uring: with auto, a low limit falls back to epoll instead (test_driver_fallback).
rc, err = run(["prlimit", "--memlock=1048576:1048576"] + NOCAPS, "io.driver=uring")
check(rc == 1, "memlock: exit %d:\n%s" % (rc, err))
# 256 SQEs, 2048 CQEs, 512 provided entries: 120 KiB of ring on top of the buffers.
for want in ("RLIMIT_MEMLOCK is 1024 KiB", "16384 KiB of registered buffers", "120 KiB of ring",
             "need 16504 KiB", "LimitMEMLOCK=17528K", "ulimit -l 17528", "buffers.count"):
    check(want in err, "memlock: '%s' missing from:\n%s" % (want, err))
check("listening" not in err, "memlock: started anyway:\n" + err)
# A small pool that may use huge pages is still a 2 MiB region: the check must know.
rc, err = run(["prlimit", "--memlock=1048576:1048576"] + NOCAPS, "buffers.count=32",
              "buffers.provided=16", "buffers.hugepages=try", "io.driver=uring")
check(rc == 1 and "2048 KiB of registered buffers" in err and "did not start" not in err,
      "2 MiB region under 1 MiB memlock should fail the check: %d\n%s" % (rc, err))
# The same limit is fine for a pool that fits: the check is not a blanket refusal.
# (timeout(1) stops it with SIGTERM after 2 s and reports 124.)
rc, err = run(["prlimit", "--memlock=1048576:1048576"] + NOCAPS + ["timeout", "-s", "TERM", "2"],
              "buffers.count=32", "buffers.provided=16", "buffers.hugepages=off")
check(rc in (0, 124) and "stopped cleanly" in err, "small pool under 1 MiB memlock: %d\n%s" % (rc, err))
print("ok  RLIMIT_MEMLOCK")

rc, err = run(["prlimit", "--nofile=256:256"] + NOCAPS, "limits.max_connections=4096",
              "buffers.count=64", "buffers.provided=32", "buffers.hugepages=off")
check(rc == 1, "nofile: exit %d:\n%s" % (rc, err))
for want in ("RLIMIT_NOFILE is 256", "needs 4160 fds", "LimitNOFILE=4160", "ulimit -n 4160",
             "limits.max_connections"):
    check(want in err, "nofile: '%s' missing from:\n%s" % (want, err))
print("ok  RLIMIT_NOFILE")

# 64 x 1M = 32 huge pages per shard: more than this machine has free (checked).
with open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") as f:
    free = int(f.read())
if free >= 32:
    print("skip hugepages: %d free 2 MiB pages, the check would pass" % free)
else:
    rc, err = run([], "buffers.hugepages=on", "buffers.count=64", "buffers.size=1M",
                  "buffers.provided=32")
    check(rc == 1, "hugepages: exit %d:\n%s" % (rc, err))
    for want in ("buffers.hugepages = on", "free 2 MiB huge pages", "need 32",
                 "nr_hugepages", "buffers.hugepages = try"):
        check(want in err, "hugepages: '%s' missing from:\n%s" % (want, err))
    print("ok  hugepages")
