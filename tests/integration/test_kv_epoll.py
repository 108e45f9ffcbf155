"""veloq-kv on the epoll driver with two shards: requests for the other shard's
keys cross the message rings, whose doorbells are then eventfds."""
from kvtest import Client
from vqtest import Service, check

svc = Service("kv", overrides={"shards.cpus": "0-1", "io.driver": "epoll"})
check(any("epoll" in line and "eventfd doorbell" in line for line in svc.log),
      "not on the epoll driver:\n" + svc.text())
c = Client(svc)
c.sock.settimeout(10)
for i in range(200):
    value = b"value%d" % i
    c.send(b"set key%d 0 0 %d\r\n%s\r\n" % (i, len(value), value))
want, out = b"STORED\r\n" * 200, b""
while len(out) < len(want):
    out += c.sock.recv(65536)
check(out == want, "200 pipelined sets across both shards")
c.send(b"get " + b" ".join(b"key%d" % i for i in range(200)) + b"\r\n")
out = b""
while not out.endswith(b"END\r\n"):
    out += c.sock.recv(1 << 20)
expect = b"".join(b"VALUE key%d 0 %d\r\nvalue%d\r\n" % (i, len(b"value%d" % i), i)
                  for i in range(200)) + b"END\r\n"
check(out == expect, "a 200-key get spanning both shards, in key order")
c.close()
svc.stop()
print("ok")
