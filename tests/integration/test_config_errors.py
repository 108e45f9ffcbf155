"""Bad configuration stops veloq-echo before it listens, with exit status 1 and
one message that names the file, the line and the key (or the -o option): an
unknown key, an unknown section, a bad value, a syntax error, a missing file,
and the same mistakes made with -o."""
import os
import shutil
import subprocess
import tempfile

from vqtest import BUILD, check, free_port

ECHO = os.path.join(BUILD, "apps", "veloq-echo")
tmp = tempfile.mkdtemp(prefix="veloq-config.")
PORT = free_port()
GOOD = "[shards]\ncpus = 0\n\n[listen]\naddress = 127.0.0.1\nport = %d\n" % PORT


def run(text=None, args=(), path=None):
    if text is not None:
        path = os.path.join(tmp, "svc.ini")
        with open(path, "w") as f:
            f.write(text)
    p = subprocess.run([ECHO, "--config", path] + list(args), capture_output=True,
                       text=True, timeout=20)
    return p.returncode, p.stderr.strip(), path


def expect_error(what, needles, **kw):
    rc, err, path = run(**kw)
    needles = [n.replace("FILE", path) for n in needles]
    check(rc == 1, "%s: exit status %s, expected 1; stderr:\n%s" % (what, rc, err))
    check("listening" not in err, "%s: the service started:\n%s" % (what, err))
    for n in needles:
        check(n in err, "%s: %r not in the message:\n%s" % (what, n, err))
    check(len(err.splitlines()) == 1, "%s: expected one line:\n%s" % (what, err))
    print("ok: %-22s %s" % (what, err))


# The control: the good file is accepted (--check-config exits 0 without listening).
rc, out, _ = run(GOOD, ["--check-config"])
check(rc == 0, "the good config was rejected:\n" + out)

expect_error("unknown key", ["FILE:7:", "listen.bogus", "unknown key", "port"],
             text=GOOD + "bogus = 1\n")
expect_error("unknown section", ["FILE:9:", "nosuch.x", "no section [nosuch]"],
             text=GOOD + "\n[nosuch]\nx = 1\n")
expect_error("bad number", ["FILE:6:", "listen.port", "'abc'", "1 to 65535"],
             text=GOOD.replace("port = %d" % PORT, "port = abc"))
expect_error("number out of range", ["FILE:6:", "listen.port", "'70000'"],
             text=GOOD.replace("port = %d" % PORT, "port = 70000"))
expect_error("bad size", ["FILE:8:", "limits.max_output", "'lots'"],
             text=GOOD + "[limits]\nmax_output = lots\n")
expect_error("bad choice", ["FILE:8:", "log.level", "'loud'", "debug"],
             text=GOOD + "[log]\nlevel = loud\n")
expect_error("syntax error", ["FILE:7:", "syntax error"], text=GOOD + "port 7000\n")
expect_error("missing file", [os.path.join(tmp, "missing.ini"), "No such file"],
             path=os.path.join(tmp, "missing.ini"))
expect_error("-o unknown key", ["-o", "listen.bogus", "unknown key"], text=GOOD,
             args=["-o", "listen.bogus=1"])
expect_error("-o bad value", ["-o", "limits.max_connections", "'many'"], text=GOOD,
             args=["-o", "limits.max_connections=many"])
expect_error("-o not key=value", ["-o", "section.key=value"], text=GOOD, args=["-o", "nodot"])
shutil.rmtree(tmp)
print("ok")
