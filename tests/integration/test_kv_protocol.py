"""veloq-kv over real sockets: every command, pipelining, values larger than a
pool buffer, bad data blocks, oversized lines, on one shard and on two (keys
forwarded between shards), each run ending in a leak-free shutdown."""
import socket
import threading
import time

from kvtest import Client, kv_service, shards_available
from vqtest import Service, check, fail


def close_while_sending(svc, request, reply):
    """The server closes (an error, quit) while the client is still sending
    and reads slowly: all of `reply` must arrive, then EOF. A plain close with
    input unread resets the connection and drops the part of the reply still
    in the server's send queue; the close must linger instead."""
    s = svc.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)

    def pump():
        try:
            s.sendall(request + b"y" * (4 << 20))
        except OSError:
            pass  # the server stopped reading: expected once it has closed
    t = threading.Thread(target=pump)
    t.start()
    time.sleep(0.3)  # the reply fills the socket buffers before the client reads
    got = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
            time.sleep(0.001)
    except OSError as e:
        fail("close while the client sends: %s after %d of %d reply bytes" %
             (e, len(got), len(reply)))
    s.close()
    t.join()
    check(got == reply, "close while the client sends: %d bytes, %d expected, ends %r" %
          (len(got), len(reply), got[-40:]))


def lingering_closes(svc):
    """A close while the client still sends delivers the whole reply first."""
    big = b"v" * (900 << 10)
    c = Client(svc)
    check(c.set(b"big", big) == b"STORED", "set big")
    c.close()
    value = b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (len(big), big)
    close_while_sending(svc, b"get big\r\n", value + b"CLIENT_ERROR line too long\r\n")
    close_while_sending(svc, b"get big\r\nquit\r\n", value)


def session(svc):
    c = Client(svc)
    check(c.set(b"a", b"abc", flags=5) == b"STORED", "set")
    check(c.get(b"a") == [(b"a", 5, b"abc", None)], "get")
    check(c.get(b"nope") == [], "get miss")
    check(c.store(b"add", b"a", b"x") == b"NOT_STORED", "add existing")
    check(c.store(b"replace", b"zz", b"x") == b"NOT_STORED", "replace missing")
    check(c.store(b"append", b"a", b"de") == b"STORED", "append")
    check(c.store(b"prepend", b"a", b"_") == b"STORED", "prepend")
    [(k, f, v, cas)] = c.get(b"a", verb=b"gets")
    check(v == b"_abcde" and f == 5 and cas, "gets %r" % v)
    check(c.store(b"cas", b"a", b"new", extra=b" %d" % (cas + 1)) == b"EXISTS", "cas stale")
    check(c.store(b"cas", b"a", b"new", extra=b" %d" % cas) == b"STORED", "cas")
    check(c.store(b"cas", b"gone", b"new", extra=b" 1") == b"NOT_FOUND", "cas missing")
    check(c.set(b"n", b"10") == b"STORED", "set n")
    check(c.cmd(b"incr n 5") == b"15", "incr")
    check(c.cmd(b"decr n 100") == b"0", "decr floors at 0")
    check(c.set(b"n", b"18446744073709551615") == b"STORED", "set max")
    check(c.cmd(b"incr n 1") == b"0", "incr wraps")
    check(c.cmd(b"incr a 1") == b"CLIENT_ERROR cannot increment or decrement non-numeric value",
          "incr non-numeric")
    check(c.cmd(b"incr n x") == b"CLIENT_ERROR invalid numeric delta argument", "bad delta")
    check(c.cmd(b"touch a 100") == b"TOUCHED", "touch")
    check(c.cmd(b"touch nope 100") == b"NOT_FOUND", "touch miss")
    check(c.get(b"1000", b"a", verb=b"gat")[0][2] == b"new", "gat")
    check(c.cmd(b"delete a") == b"DELETED", "delete")
    check(c.cmd(b"delete a") == b"NOT_FOUND", "delete miss")
    check(c.set(b"e", b"x", exp=-1) == b"STORED" and c.get(b"e") == [], "negative exptime")
    check(c.set(b"e", b"x", exp=int(time.time()) - 10) == b"STORED" and c.get(b"e") == [],
          "absolute exptime in the past")
    check(c.set(b"e", b"x", exp=int(time.time()) + 100) == b"STORED" and len(c.get(b"e")) == 1,
          "absolute exptime in the future")
    check(c.set(b"e", b"x", exp=1) == b"STORED", "short exptime")
    time.sleep(2.1)
    check(c.get(b"e") == [], "expired after 1 s")
    check(c.cmd(b"version").startswith(b"VERSION 1.6"), "version")
    check(c.cmd(b"verbosity 1") == b"OK", "verbosity")
    check(c.cmd(b"bogus") == b"ERROR", "unknown command")
    check(c.cmd(b"get " + b"k" * 251) == b"CLIENT_ERROR bad command line format", "long key")
    st = c.stats()
    check(int(st["curr_connections"]) >= 1 and "shard0:evictions" in st, "stats")

    # noreply everywhere: nothing comes back, the next reply is the version
    c.send(b"set q 0 0 1 noreply\r\n1\r\nadd q 0 0 1 noreply\r\n2\r\nappend q 0 0 1 noreply\r\n3"
           b"\r\nincr q 1 noreply\r\ntouch q 10 noreply\r\ndelete zz noreply\r\n"
           b"flush_all 100 noreply\r\nverbosity 0 noreply\r\n")
    check(c.cmd(b"version").startswith(b"VERSION"), "noreply produced output")
    check(c.get(b"q") == [(b"q", 0, b"14", None)], "noreply commands took effect")
    check(c.cmd(b"flush_all") == b"OK", "flush_all")
    check(c.get(b"q", b"n") == [], "flushed")

    # bad data blocks keep the stream in step
    c.send(b"set a 0 0 3\r\nabcdef\r\nget a\r\n")
    check(c.line() == b"CLIENT_ERROR bad data chunk", "long data block")
    # the block is the declared 3 bytes + 2: what follows ("f") is the next command
    check(c.line() == b"ERROR", "the rest read as a command")
    check(c.read_values() == [], "in step after a long block")
    c.send(b"set a 0 0 -1\r\n")
    check(c.line() == b"CLIENT_ERROR bad command line format", "negative length")
    c.send(b"set a 0 0 2000000\r\n" + b"x" * 2000000 + b"\r\n")
    check(c.line() == b"SERVER_ERROR object too large for cache", "too large")
    check(c.cmd(b"version").startswith(b"VERSION"), "in step after a skipped value")

    # a 1 MiB value, sent and read back in pieces far larger than a pool buffer
    big = bytes(range(256)) * 4096
    check(c.set(b"big", big) == b"STORED", "1 MiB set")
    check(c.get(b"big") == [(b"big", 0, big, None)], "1 MiB get")

    # pipelined: 500 requests in one write, answered in order
    keys = [b"p%d" % i for i in range(250)]
    req = b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(k), k) for k in keys)
    req += b"".join(b"get %s\r\n" % k for k in keys)
    c.send(req)
    for k in keys:
        check(c.line() == b"STORED", "pipelined set")
    for k in keys:
        check(c.read_values() == [(k, 0, k, None)], "pipelined get %r" % k)
    # one multi-get over keys on every shard comes back in key order
    check([v[0] for v in c.get(*keys)] == keys, "multi-get order")

    # byte-at-a-time input
    for b in b"set slow 0 0 2\r\nok\r\nget slow\r\n":
        c.send(bytes([b]))
    check(c.line() == b"STORED", "slow set")
    check(c.read_values() == [(b"slow", 0, b"ok", None)], "slow get")

    c.send(b"quit\r\n")
    check(c.eof(), "quit closes")
    c.close()

    # a line with no end closes the connection instead of growing
    c = Client(svc)
    c.send(b"set " + b"a" * 5000)
    check(c.line() == b"CLIENT_ERROR line too long", "line too long")
    check(c.eof(), "closed after a long line")
    c.close()

    lingering_closes(svc)

    # replies owed when the client half-closes are still delivered
    s = svc.connect()
    s.sendall(b"".join(b"get p%d\r\n" % i for i in range(50)))
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    check(data.count(b"END\r\n") == 50 and data.count(b"VALUE") == 50,
          "replies after EOF: %d" % data.count(b"END"))


svc = kv_service(overrides={"shards.cpus": "0"})
session(svc)
svc.stop()

# limits.max_connections in stats: the limit, and the connections it refused.
svc = kv_service(overrides={"shards.cpus": "0", "limits.max_connections": "2"})
first = Client(svc)
extra = [svc.connect() for _ in range(3)]  # the second fits; the others are closed at once
time.sleep(0.3)
st = first.stats()
check(st["max_connections"] == "2" and int(st["rejected_connections"]) == 2,
      "max_connections %s, rejected_connections %s" %
      (st["max_connections"], st["rejected_connections"]))
for s in extra:
    s.close()
first.close()
svc.stop()

# The lingering close on the epoll driver.
svc = kv_service(overrides={"shards.cpus": "0", "io.driver": "epoll"})
lingering_closes(svc)
svc.stop()

def linger_ends(overrides, what):
    """A client that gets a close it never reads (a reply, then a bad line) and
    does not close either: the linger still ends, by the limit `what`."""
    svc = kv_service(overrides=dict({"shards.cpus": "0"}, **overrides))
    c = Client(svc)
    check(c.set(b"big", b"v" * (900 << 10)) == b"STORED", "set big")
    c.close()
    stuck = svc.connect()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
    stuck.settimeout(5)
    stuck.sendall(b"get big\r\n" + b"x" * (256 << 10))
    want = {"curr_connections": "1", "shard0:stall_closed": "1", "shard0:lingering_closes": "1"}
    deadline = time.time() + 5
    while True:
        st = Client(svc).stats()  # a fresh client each time: an idle timeout closes idle ones
        got = {k: st[k] for k in want}
        if got == want or time.time() > deadline:
            break
        time.sleep(0.2)
    check(got == want, "lingering client that reads nothing, %s: after 5 s %s" % (what, got))
    stuck.close()
    svc.stop()


linger_ends({"limits.stall_timeout": "1s"}, "limits.stall_timeout")
linger_ends({"limits.stall_timeout": "0", "limits.idle_timeout": "1s"},
            "stall_timeout 0: limits.idle_timeout")

if shards_available():
    svc = kv_service(overrides={"shards.cpus": "0-1"})
    session(svc)
    st = Client(svc).stats()
    # connections may all land on one shard (SO_REUSEPORT), but keys live on both
    fwd = int(st["shard0:forwarded"]) + int(st["shard1:forwarded"])
    served = int(st["shard0:served_remote"]) + int(st["shard1:served_remote"])
    check(fwd > 100 and served == fwd, "forwarded %d, served %d" % (fwd, served))
    check(int(st["shard0:curr_items"]) > 50 and int(st["shard1:curr_items"]) > 50,
          "items on both shards: %s %s" % (st["shard0:curr_items"], st["shard1:curr_items"]))
    svc.stop()

    # kv.max_pending bounds forwarded work per connection; a deep pipeline still completes
    svc = kv_service(overrides={"shards.cpus": "0-1", "kv.max_pending": "2"})
    c = Client(svc)
    keys = [b"s%d" % i for i in range(2000)]
    c.send(b"".join(b"set %s 0 0 1 noreply\r\nx\r\n" % k for k in keys) +
           b"".join(b"get %s\r\n" % k for k in keys))
    for k in keys:
        check(c.read_values() == [(k, 0, b"x", None)], "saturated pipeline: get %r" % k)
    c.close()
    svc.stop()
else:
    print("two-shard run skipped: message rings not merged yet")
print("ok")
