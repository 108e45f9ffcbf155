"""veloq-echo starts on two shards, echoes, and stops cleanly on SIGTERM."""
from vqtest import Service, check, recv_exact

svc = Service("echo", overrides={"shards.cpus": "0-1"})
for i in range(20):
    with svc.connect() as s:
        msg = b"hello %d\n" % i
        s.sendall(msg)
        check(recv_exact(s, len(msg)) == msg, "echo mismatch")
svc.stop()
print("ok")
