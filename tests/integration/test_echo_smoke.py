"""veloq-echo starts on two shards, echoes, and stops cleanly on SIGTERM."""
from vqtest import Service, check, recv_exact

svc = Service("echo", overrides={"shards.cpus": "0-1"})
for i in range(20):
    with svc.connect() as s:
        msg = b"hello %d\n" % i
        s.sendall(msg)
        check(recv_exact(s, len(msg)) == msg, "echo mismatch")
svc.stop()
print("ok: echo")

# A second copy on a port that is taken refuses to start (SO_REUSEPORT would
# otherwise let it share the port and take part of the traffic silently).
first = Service("echo", overrides={"shards.cpus": "0"})
second = Service("echo", overrides={"shards.cpus": "0"}, port=first.port, wait=False)
rc = second.proc.wait(15)
second._reader.join(5)
check(rc == 1, "second instance on a taken port exited %s:\n%s" % (rc, second.text()))
check("another process holds the port" in second.text(), "no clear error:\n" + second.text())
first.stop()
print("ok: taken port refused")
