"""Real start-ups of veloq-echo under taskset and with different shards.cpus/count:
the map --check-config prints, the one logged at start-up, and each shard
thread's actual affinity (/proc/PID/task/*/status) must all agree."""
import os
import re
import shutil
import subprocess
import tempfile

from vqtest import BUILD, SOURCE, Service, check, fail, skip

ECHO = os.path.join(BUILD, "apps", "veloq-echo")
CONFIG = os.path.join(SOURCE, "configs", "echo.ini")
NCPU = os.cpu_count()
if NCPU < 2:
    skip("needs 2 CPUs to tell shards apart")
if not shutil.which("taskset"):
    skip("taskset (util-linux) is not installed")


def check_config(overrides, prefix=(), config=CONFIG, expect_rc=0, extra=()):
    cmd = list(prefix) + [ECHO, "--config", config, "--check-config"] + list(extra)
    for k, v in overrides.items():
        cmd += ["-o", "%s=%s" % (k, v)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    check(p.returncode == expect_rc, "%s: exit %d, wanted %d:\n%s%s" %
          (" ".join(cmd), p.returncode, expect_rc, p.stdout, p.stderr))
    return p


def table(text):
    """[(shard, cpu, core, package, node)] from --check-config output or the log."""
    rows = []
    for line in text.splitlines():
        m = re.match(r"\s*(?:\S+: )*(?:core map: )?(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+ x",
                     line)
        if m:
            rows.append(tuple(int(x) for x in m.groups()))
    return rows


def shard_affinity(pid):
    """{shard id: Cpus_allowed_list} of the vq-shard-N threads."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            m = re.match(r"vq-shard-(\d+)", f.read())
        if not m:
            continue
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            allowed = re.search(r"Cpus_allowed_list:\s*(\S+)", f.read()).group(1)
        out[int(m.group(1))] = allowed
    return out


def run_case(name, overrides, want_cpus, prefix=(), want_allowed=None):
    """want_allowed: every shard thread's Cpus_allowed_list; default its own CPU."""
    rows = table(check_config(overrides, prefix).stdout)
    check([r[1] for r in rows] == want_cpus, "%s: --check-config map %s, wanted CPUs %s" %
          (name, rows, want_cpus))
    svc = Service("echo", overrides=overrides, prefix=prefix)
    try:
        logged = table(svc.text())
        check(logged == rows, "%s: start-up log map %s differs from --check-config %s" %
              (name, logged, rows))
        aff = shard_affinity(svc.proc.pid)
        check(aff == {i: want_allowed or str(c) for i, c in enumerate(want_cpus)},
              "%s: shard threads run on %s, wanted %s" % (name, aff, want_cpus))
        with svc.connect() as s:
            s.sendall(b"ping\n")
            check(s.recv(16) == b"ping\n", "%s: no echo" % name)
    finally:
        svc.stop()
    print("ok  %-28s cpus %s" % (name, want_cpus))


last = NCPU - 1
run_case("auto", {"shards.cpus": "auto"}, list(range(NCPU)))
run_case("taskset + auto", {"shards.cpus": "auto"}, [last], prefix=("taskset", "-c", str(last)))
run_case("list", {"shards.cpus": str(last)}, [last])
run_case("count bound", {"shards.cpus": "auto", "shards.count": "1"}, [0])
run_case("exclude cpu 0", {"shards.cpus": "auto", "shards.exclude": "0"}, list(range(1, NCPU)))
# shards.pin = node: same homes, but each thread may run on every core-map CPU of its node.
if len([n for n in os.listdir("/sys/devices/system/node") if re.match(r"node\d+$", n)]) == 1:
    run_case("pin node", {"shards.cpus": "auto", "shards.pin": "node"}, list(range(NCPU)),
             want_allowed="0-%d" % last)
    run_case("pin node, one CPU", {"shards.cpus": str(last), "shards.pin": "node"}, [last])

# A listed CPU outside taskset's set: fatal, names the CPU, the allowed set and the line.
with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as f:
    f.write("; a comment\n[shards]\ncpus = %d\n" % last)
try:
    p = check_config({}, prefix=("taskset", "-c", "0"), config=f.name, expect_rc=1)
    want = "%s:3: shards.cpus: CPU %d is not one this process may use (allowed: 0;" % (f.name, last)
    check(want in p.stderr, "wanted '%s' in:\n%s" % (want, p.stderr))
    # The same refusal at a real start-up, before any shard starts.
    p = subprocess.run(["taskset", "-c", "0", ECHO, "--config", f.name], capture_output=True,
                       text=True, timeout=30)
    check(p.returncode == 1 and want in p.stderr, "start-up: %d\n%s" % (p.returncode, p.stderr))
finally:
    os.unlink(f.name)

# Another machine's topology, for planning: two sockets, SMT on.
p = check_config({"shards.cpus": "auto", "shards.smt": "all", "shards.numa_nodes": "1"},
                 extra=("--topology", os.path.join(SOURCE, "tests/data/topo-2s2n8c2t.xml")))
rows = table(p.stdout)
check([r[1] for r in rows] == list(range(8, 16)) + list(range(24, 32)), "2-socket map %s" % rows)
check({r[4] for r in rows} == {1}, "2-socket map not all on node 1: %s" % rows)
print("ok  --topology 2 sockets")
