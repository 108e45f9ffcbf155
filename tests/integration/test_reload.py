"""SIGHUP reload on a running veloq-echo: the log level changes on every shard
(a per-shard debug line appears, then disappears), limits apply on every shard,
a changed non-reloadable key is reported as ignored, and a broken file keeps
the old configuration while the service goes on serving."""
import os
import signal
import tempfile
import time

from vqtest import Service, check, skip

if os.cpu_count() < 2:
    skip("needs 2 CPUs for two shards")

BASE = """[shards]
cpus = 0-1
[log]
level = %s
[limits]
max_connections = %d
"""

fd, path = tempfile.mkstemp(suffix=".ini")
os.close(fd)


def write(text):
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)


def alive_connections(svc, n):
    """Open n connections at once; count the ones that echo (the rest are refused)."""
    socks = [svc.connect() for _ in range(n)]
    time.sleep(0.2)
    alive = 0
    for s in socks:
        try:
            s.sendall(b"x")
            s.settimeout(2)
            alive += s.recv(1) == b"x"
        except OSError:
            pass
    for s in socks:
        s.close()
    time.sleep(0.2)  # let the shards reap the closes before the next round
    return alive


def reload(svc, gen):
    mark = len(svc.log)
    svc.signal(signal.SIGHUP)
    return svc.wait_log(r"reload", start=mark), mark


write(BASE % ("info", 4096))
svc = Service("echo", config=path)
try:
    check(alive_connections(svc, 16) == 16, "all 16 connections should be served")
    check("generation" not in svc.text(), "no debug lines at level info")

    # Debug on: each shard logs, at debug, that it adopted generation 2.
    write(BASE % ("debug", 4096))
    line, mark = reload(svc, 2)
    check("generation 2" in line and "log.level" in line, "reload line: " + line)
    svc.wait_log(r"shard 0: configuration generation 2 applied", start=mark)
    svc.wait_log(r"shard 1: configuration generation 2 applied", start=mark)
    print("ok  log.level=debug reached both shards")

    # Back to info and a connection limit of 1 per shard: the debug line is gone,
    # and the limit holds on each shard (16 connections, 2 shards, 2 survive).
    write(BASE % ("info", 1))
    line, mark = reload(svc, 3)
    check("generation 3" in line and "limits.max_connections" in line, "reload line: " + line)
    alive = alive_connections(svc, 16)
    check(alive == 2, "with max_connections = 1 on 2 shards, %d of 16 connections served" % alive)
    check("generation 3 applied" not in svc.text(), "debug line printed at level info:\n" +
          svc.text())
    print("ok  log.level=info and limits.max_connections=1 applied on both shards")

    # A key that cannot change while running.
    write(BASE.replace("cpus = 0-1", "cpus = 1") % ("info", 1))
    line, mark = reload(svc, 4)
    svc.wait_log(r"shards\.cpus changed .* ignored until restart", start=mark)
    print("ok  shards.cpus reported as ignored until restart")

    # A broken file: the old configuration stays, the service serves.
    write("[limits\nmax_connections = 4096\n")
    line, mark = reload(svc, 5)
    check("reload failed, keeping the running configuration: %s:1: syntax error" % path in line,
          "broken reload: " + line)
    alive = alive_connections(svc, 16)
    check(alive == 2, "after a failed reload the old limit should hold, %d served" % alive)
    write("[limits]\nmax_connections = lots\n")
    line, mark = reload(svc, 5)
    check("%s:2: limits.max_connections: bad value 'lots'" % path in line, "bad value: " + line)
    check(alive_connections(svc, 16) == 2, "still serving with the old limit")
    print("ok  broken files keep the running configuration")
finally:
    svc.stop()
    os.unlink(path)
