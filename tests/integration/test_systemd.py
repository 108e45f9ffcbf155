"""veloq-echo deployed with scripts/install.sh as veloq@echo.service, run by a
real systemd: /lib/systemd/systemd as PID 1 of fresh pid/mount/net/uts/ipc
namespaces, with private /tmp, /var/tmp, /run and journal, driven through
`nsenter ... systemctl`. Clients reach the service on the namespace's own
loopback. Shows: readiness (READY=1, STATUS=), the MEMLOCK start-up check, the
journal's priorities, the hardened unit really running io_uring pinned and
NUMA-bound, reload (good, rejected, and a bad file behind SIGHUP), the
watchdog restarting a stalled shard's service, and stops that answer every
request in flight and exit 0, one of them outlasting TimeoutStopSec through
EXTEND_TIMEOUT_USEC."""
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import vqtest
from vqtest import BUILD, SOURCE, skip

BUILD, SOURCE = os.path.abspath(BUILD), os.path.abspath(SOURCE)  # nsenter -m starts in /

SYSTEMD = "/lib/systemd/systemd"
UNIT = "veloq@echo.service"
PREFIX = "/run/veloq"            # inside the namespace: a private tmpfs
CONF = PREFIX + "/etc/veloq/echo.ini"
DROPIN = "/run/systemd/system/%s.d" % UNIT
PORT = 7000
STOP_TIMEOUT = 4                 # TimeoutStopSec of the test's drop-in
pid1 = None                      # systemd, as seen from the host


def fail(msg):
    """Fail with what systemd saw: the unit's status and its whole journal."""
    if pid1:
        r = subprocess.run(NS + ["systemctl", "status", "--no-pager", "-n", "0", UNIT],
                           capture_output=True, text=True, timeout=30)
        msg += "\n--- systemctl status:\n" + r.stdout
        try:
            msg += "--- journal:\n" + text(journal())
        except Exception as e:  # the journal is only context here
            msg += "--- journal unavailable: %s" % e
    vqtest.fail(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sd_client.py")

for tool in ("unshare", "nsenter", "ip", "systemctl", "journalctl"):
    if not shutil.which(tool):
        skip("%s is not installed (util-linux, iproute2, systemd: scripts/deps.txt)" % tool)
if not os.access(SYSTEMD, os.X_OK):
    skip("%s is missing: install Debian's systemd package" % SYSTEMD)
if os.geteuid() != 0:
    skip("creating pid/mount/net namespaces for systemd needs root")
probe = subprocess.run(["unshare", "--fork", "--pid", "--mount", "--net", "--uts", "--ipc",
                        "--mount-proc", "true"], capture_output=True, text=True)
if probe.returncode:
    skip("unshare cannot create namespaces here: " + probe.stderr.strip())
binary = os.path.join(BUILD, "apps", "veloq-echo")
check(os.access(binary, os.X_OK), "no %s: build first" % binary)

cpus = sorted(os.sched_getaffinity(0))[:2]
CPUS = ",".join(str(c) for c in cpus)

# A checkout under /tmp or /var/tmp (a fresh CI clone, say) is hidden by the private
# tmpfs mounts below: bind it under the namespace's /run first and use it from there.
HIDDEN = ("/tmp/", "/var/tmp/")


def inner(path):
    return "/run/vqhost" + path if path.startswith(HIDDEN) else path


KEEP = " ".join(sorted({p for p in (SOURCE, BUILD) if p.startswith(HIDDEN)}))

# Inside the new namespaces, before systemd: nothing may reach the host.
INNER = textwrap.dedent("""\
    set -e
    mount --make-rprivate /
    mount -t tmpfs -o mode=0755 tmpfs /run
    for d in %s; do mkdir -p "/run/vqhost$d"; mount --bind "$d" "/run/vqhost$d"; done
    # Private /tmp is essential: systemd-tmpfiles would otherwise empty the host's.
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    mount -t tmpfs -o mode=1777 tmpfs /var/tmp
    if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
    ip link set lo up
    mkdir -p /run/systemd/system /run/systemd/journald.conf.d
    printf '[Journal]\\nStorage=volatile\\n' >/run/systemd/journald.conf.d/vqtest.conf
    # journald logs about itself to kmsg, which is the host's: keep it quiet.
    mkdir -p /run/systemd/system/systemd-journald.service.d
    printf '[Service]\\nEnvironment=SYSTEMD_LOG_TARGET=null\\n' \\
        >/run/systemd/system/systemd-journald.service.d/vqtest.conf
    cat >/run/systemd/system/vqtest.target <<'EOF'
    [Unit]
    Description=veloq systemd test
    Wants=systemd-journald.socket systemd-journald.service
    After=systemd-journald.socket
    EOF
    exec %s --system --unit=vqtest.target --log-target=journal --show-status=no
    """ % (KEEP, SYSTEMD))

started = time.time()
boot_log = open(os.path.join(BUILD, "test_systemd.pid1.log"), "w")


def die_with_parent():
    # If this script is killed outright (a ctest timeout), unshare dies with it, and
    # --kill-child takes systemd, and with it the whole namespace, along.
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


outer = subprocess.Popen(["unshare", "--fork", "--kill-child=SIGKILL", "--pid", "--mount",
                          "--net", "--uts", "--ipc", "--mount-proc", "bash", "-c", INNER],
                         stdin=subprocess.DEVNULL, stdout=boot_log, stderr=subprocess.STDOUT,
                         start_new_session=True, preexec_fn=die_with_parent)


def cleanup(*_):
    # PID 1 of the namespace: killing it ends every process in it.
    if pid1:
        try:
            os.kill(pid1, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if outer.poll() is None:
        outer.kill()
    outer.wait()


atexit.register(cleanup)
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, lambda *_: sys.exit(1))

deadline = time.time() + 10
while pid1 is None and time.time() < deadline:
    try:
        with open("/proc/%d/task/%d/children" % (outer.pid, outer.pid)) as f:
            kids = f.read().split()
        pid1 = int(kids[0]) if kids else None
    except OSError:
        pass
    if outer.poll() is not None:
        fail("unshare exited %s before systemd started" % outer.returncode)
    time.sleep(0.05)
check(pid1, "no systemd process under unshare")
NS = ["nsenter", "-t", str(pid1), "-m", "-p", "-n"]


def ns(*args, ok=True, timeout=30, input=None):
    r = subprocess.run(NS + list(args), capture_output=True, text=True, timeout=timeout,
                       input=input)
    if ok and r.returncode:
        fail("%s exited %d:\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def write(path, text):
    ns("sh", "-c", 'mkdir -p "$(dirname "$1")" && cat >"$1"', "-", path, input=text)


def show(*props):
    out = ns("systemctl", "show", UNIT, "-p", ",".join(props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def client(*args, timeout=30):
    """Run sd_client.py in the namespace's network; returns its stdout."""
    r = subprocess.run(["nsenter", "-t", str(pid1), "-n", sys.executable, CLIENT, args[0],
                        str(PORT)] + [str(a) for a in args[1:]],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        fail("client %s failed (%d): %s%s" % (args, r.returncode, r.stdout, r.stderr))
    return r.stdout


def client_bg(*args):
    return subprocess.Popen(["nsenter", "-t", str(pid1), "-n", sys.executable, CLIENT, args[0],
                             str(PORT)] + [str(a) for a in args[1:]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def journal(unit=UNIT):
    """Every journal entry of the service's processes and of systemd about it."""
    out = ns("journalctl", "-o", "json", "--no-pager", "-b", ok=False).stdout
    entries = []
    for line in out.splitlines():
        e = json.loads(line)
        if e.get("_SYSTEMD_UNIT") == unit or e.get("UNIT") == unit:
            if isinstance(e.get("MESSAGE"), list):  # non-UTF-8 comes as bytes
                e["MESSAGE"] = bytes(e["MESSAGE"]).decode(errors="replace")
            entries.append(e)
    return entries


def text(entries):
    return "\n".join("<%s> %s" % (e.get("PRIORITY"), e.get("MESSAGE")) for e in entries)


def wait_journal(pattern, after=0, timeout=15):
    rx = re.compile(pattern)
    end = time.time() + timeout
    while True:
        entries = journal()
        for e in entries[after:]:
            if rx.search(e.get("MESSAGE", "")):
                return e
        if time.time() > end:
            fail("no journal line /%s/ after entry %d:\n%s" % (pattern, after, text(entries)))
        time.sleep(0.2)


def wait_state(want, timeout=15, **extra):
    end = time.time() + timeout
    while True:
        st = show("ActiveState", "SubState", "MainPID", "NRestarts", "Result", "StatusText")
        if st["ActiveState"] == want and all(pred(st) for pred in extra.values()):
            return st
        if time.time() > end:
            fail("%s did not become %s: %s\n%s" % (UNIT, want, st, text(journal())))
        time.sleep(0.1)


def step(msg):
    print("[%5.1fs] %s" % (time.time() - started, msg), flush=True)


# --- boot ---------------------------------------------------------------------------------
end = time.time() + 30
while True:
    r = ns("systemctl", "is-system-running", ok=False)
    if r.stdout.strip() in ("running", "degraded"):
        break
    if time.time() > end:
        fail("systemd in the namespace did not finish booting: %s" % r.stdout)
    time.sleep(0.2)
step("systemd %s is PID 1 of the namespaces (host pid %d)" % (r.stdout.strip(), pid1))

# --- install: the shipped script, into the namespace's private /run ---------------------
r = ns("env", "PREFIX=" + PREFIX, "SYSCONFDIR=%s/etc" % PREFIX, "UNITDIR=/run/systemd/system",
       "sh", inner(os.path.join(SOURCE, "scripts", "install.sh")), inner(BUILD))
check("daemon-reload: done" in r.stdout, "install.sh did not reload systemd:\n" + r.stdout)
CONFIG = textwrap.dedent("""\
    [shards]
    cpus = %s
    [listen]
    address = 127.0.0.1
    port = %d
    [buffers]
    count = 128
    size = 16K
    provided = 64
    [io]
    driver = uring
    [shutdown]
    drain_timeout = 20s
    [log]
    level = %%s
    [debug]
    stall_on_signal = yes
    """ % (CPUS, PORT))
write(CONF, CONFIG % "info")
# Test timings only; every hardening setting stays as shipped. LeakSanitizer (in a
# VQ_SANITIZE build) stops the world with ptrace, which the syscall filter denies; the
# framework's own buffer and fd accounting still runs ("stopped cleanly").
write(DROPIN + "/test.conf", textwrap.dedent("""\
    [Unit]
    StartLimitIntervalSec=0
    [Service]
    Environment=ASAN_OPTIONS=detect_leaks=0
    WatchdogSec=2s
    RestartSec=500ms
    TimeoutStopSec=%ds
    LimitCORE=0
    """ % STOP_TIMEOUT))

# --- a start that cannot become ready: RLIMIT_MEMLOCK below the pools --------------------
write(DROPIN + "/memlock.conf", "[Service]\nLimitMEMLOCK=1M\nRestart=no\n")
ns("systemctl", "daemon-reload")
r = ns("systemctl", "start", UNIT, ok=False)
st = show("ActiveState", "Result", "ExecMainStatus")
check(r.returncode != 0 and st["ActiveState"] == "failed" and st["ExecMainStatus"] == "1",
      "a service that never sent READY=1 must not start: rc %d, %s" % (r.returncode, st))
wait_journal(r"RLIMIT_MEMLOCK is 1024 KiB .*LimitMEMLOCK=")
step("LimitMEMLOCK=1M: start fails with the fix in the journal; the unit never went active")
ns("rm", DROPIN + "/memlock.conf")
ns("systemctl", "daemon-reload")
ns("systemctl", "reset-failed", UNIT)

# --- start: active only once READY=1 says every shard listens ----------------------------
# A watcher inside the namespace polls the unit and the port together: whenever systemd
# says active, a connection must succeed.
WATCH = textwrap.dedent("""\
    import socket, subprocess, sys, time
    seen, end = [], time.time() + 20
    while time.time() < end:
        st = subprocess.run(["systemctl", "is-active", "%s"], capture_output=True,
                            text=True).stdout.strip()
        if not seen or seen[-1] != st:
            seen.append(st)
        if st == "active":
            try:
                socket.create_connection(("127.0.0.1", %d), timeout=2).close()
            except OSError as e:
                print("active but not listening: %%s; states %%s" %% (e, seen)); sys.exit(1)
            print(" -> ".join(seen)); sys.exit(0)
    print("never active: %%s" %% seen); sys.exit(1)
    """ % (UNIT, PORT))
ns("systemctl", "start", "--no-block", UNIT)
r = ns(sys.executable, "-c", WATCH, ok=False)
check(r.returncode == 0, "readiness: " + r.stdout + r.stderr)
st = wait_state("active")
check(st["SubState"] == "running", "substate %s" % st)
step("start: %s, MainPID %s" % (r.stdout.strip(), st["MainPID"]))
check(client("echo", 5).startswith("ok 5"), "echo through the service failed")

status = ns("systemctl", "status", "--no-pager", UNIT).stdout
m = re.search(r'Status: "(\d+) shards, (\d+) connections, driver (\w+) \((.*)\)"', status)
check(m, "systemctl status shows no STATUS= text:\n" + status)
check(m.group(1) == str(len(cpus)) and m.group(3) == "uring",
      "STATUS= says %s shards, driver %s" % (m.group(1), m.group(3)))
step('systemctl status: Status: "%s shards, %s connections, driver %s (%s)"' % m.groups())

holder = client_bg("hold", 3, 3)
check(holder.stdout.readline().startswith("open 3"), "could not open 3 connections")
wait_state("active", timeout=5, conns=lambda st: ", 3 connections," in st["StatusText"])
holder.wait(10)
step("STATUS= follows the load: '%s'" % show("StatusText")["StatusText"])

# --- the journal stream: <N> prefixes become priorities ---------------------------------
entries = journal()
listening = [e for e in entries if "shards listening on" in e.get("MESSAGE", "")]
driver = [e for e in entries
          if re.search(r"shard 0: cpu \d+ node \d+, uring ", e.get("MESSAGE", ""))]
check(listening and listening[-1]["PRIORITY"] == "5", "notice line not at priority 5:\n" +
      text(entries))
check(driver and driver[-1]["PRIORITY"] == "6", "info line not at priority 6:\n" + text(entries))
check(not any(e.get("MESSAGE", "").startswith("<") for e in entries if e.get("_SYSTEMD_UNIT")),
      "a <N> prefix leaked into a message:\n" + text(entries))
check(not any(re.match(r"(notice|info|err|warning|debug): ", e.get("MESSAGE", ""))
              for e in entries), "plain-text level names in the journal:\n" + text(entries))
step("journal: notice at priority 5, info at 6, no prefixes left in messages")

# --- the hardened unit really runs: uring under the filter, pinned, NUMA-bound -------------
pid = show("MainPID")["MainPID"]
proc_status = ns("cat", "/proc/%s/status" % pid).stdout
fields = dict(l.split(":", 1) for l in proc_status.splitlines() if ":" in l)
uid = int(fields["Uid"].split()[0])
check(uid != 0, "the service runs as root")
check(fields["NoNewPrivs"].strip() == "1", "NoNewPrivs is off")
check(fields["Seccomp"].strip() == "2", "no seccomp filter on the service")
check(fields["CapEff"].strip() == "0000000000000000", "the service keeps capabilities")
affinity = ns("sh", "-c", "cat /proc/%s/task/*/status | grep Cpus_allowed_list" % pid).stdout
masks = {l.split(":")[1].strip() for l in affinity.splitlines()}
pinned = sorted(m for m in masks if m.isdigit())  # one CPU; the main thread keeps them all
check(pinned == sorted(str(c) for c in cpus),
      "shard threads are not pinned one per CPU %s: %s" % (CPUS, affinity))
numa = ns("cat", "/proc/%s/numa_maps" % pid).stdout
check(re.search(r" bind:\d+ ", numa), "no NUMA-bound (mbind) region in numa_maps")
feat = driver[-1]["MESSAGE"]
check("single_issuer" in feat, "the ring lacks its setup flags: " + feat)
step("hardened: uid %d, NoNewPrivs, seccomp, no caps; threads pinned to %s; "
     "pool mbind()ed; '%s'" % (uid, ",".join(pinned), feat.split(": ", 1)[1]))

# --- reload ----------------------------------------------------------------------------
mark = len(journal())
holder = client_bg("hold", 1, 1.5)
check(holder.stdout.readline().startswith("open"), "hold failed")
holder.wait(10)
time.sleep(1.2)  # a supervisor tick saw the connection come and go
check(not any("status:" in e.get("MESSAGE", "") for e in journal()[mark:]),
      "debug lines at log.level = info")
write(CONF, CONFIG % "debug")
ns("systemctl", "reload", UNIT)
wait_journal(r"reloaded .*applied: .*log\.level", after=mark)
holder = client_bg("hold", 1, 1.5)
check(holder.stdout.readline().startswith("open"), "hold failed")
e = wait_journal(r"status: \d+ shards, 1 connections", after=mark)
check(e["PRIORITY"] == "7", "debug line at priority %s" % e["PRIORITY"])
holder.wait(10)
check(show("MainPID")["MainPID"] == pid, "reload restarted the service")
step("reload: log.level info -> debug took effect without a restart (debug lines appear)")

mark = len(journal())
write(CONF, CONFIG.replace("port = %d" % PORT, "port = banana") % "info")
r = ns("systemctl", "reload", UNIT, ok=False)
check(r.returncode != 0, "a reload of a broken file succeeded")
wait_journal(r"listen\.port: bad value 'banana'", after=mark)
st = wait_state("active")
check(st["MainPID"] == pid, "a rejected reload restarted the service")
check(client("echo", 3).startswith("ok"), "not serving after a rejected reload")
# The same broken file behind a bare SIGHUP: the service keeps its running settings.
ns("systemctl", "kill", "-s", "HUP", "--kill-who=main", UNIT)
wait_journal(r"reload failed, keeping the running configuration: .*banana", after=mark)
check(client("echo", 3).startswith("ok"), "not serving after a failed SIGHUP reload")
check(wait_state("active")["MainPID"] == pid, "a failed SIGHUP reload restarted the service")
write(CONF, CONFIG % "info")
ns("systemctl", "reload", UNIT)
step("reload: a broken file is refused by --check-config (reload fails), and behind a bare "
     "SIGHUP the service keeps its settings; serving throughout")

# --- the watchdog: one stalled shard, and systemd restarts the service -------------------
mark = len(journal())
restarts = int(show("NRestarts")["NRestarts"])
# ~10 s with WatchdogSec=2s, mostly idle: idle shards still beat, so no restart so far.
check(restarts == 0 and show("MainPID")["MainPID"] == pid,
      "the watchdog fired on a healthy service: NRestarts %d" % restarts)
ns("systemctl", "kill", "-s", "USR2", "--kill-who=main", UNIT)
wait_journal(r"stalling on purpose", after=mark)
wait_journal(r"has not turned its loop .*withholding", after=mark)
wait_journal(r"[Ww]atchdog timeout", after=mark, timeout=10)
st = wait_state("active", timeout=20, restarted=lambda st: int(st["NRestarts"]) > restarts
                and st["MainPID"] not in ("0", pid))
check(client("echo", 3).startswith("ok"), "not serving after the watchdog restart")
step("watchdog: shard %d stalled -> pings stop -> systemd restarted it (NRestarts %d -> %s, "
     "MainPID %s -> %s)" % (len(cpus) - 1, restarts, st["NRestarts"], pid, st["MainPID"]))


# --- stop with requests in flight ---------------------------------------------------------
def stop_in_flight(read_delay, total=8 << 20):
    mark = len(journal())
    bulk = client_bg("bulk", total, read_delay)
    check(bulk.stdout.readline().startswith("sending"), "bulk client did not start")
    time.sleep(0.5)  # the service now holds queued output it cannot send yet
    t0 = time.time()
    ns("systemctl", "stop", "--no-block", UNIT)
    out, err = bulk.communicate(timeout=read_delay + 30)
    check(bulk.returncode == 0 and out.strip().endswith("answered %d eof=True" % total),
          "the request in flight lost its answer: %s %s" % (out, err))
    st = wait_state("inactive", timeout=read_delay + 20)
    took = time.time() - t0
    res = show("Result", "ExecMainStatus", "ExecMainCode")
    check(res["Result"] == "success" and res["ExecMainStatus"] == "0",
          "stop did not exit 0: %s\n%s" % (res, text(journal()[mark:])))
    wait_journal(r"stopped cleanly", after=mark)
    return took


took = stop_in_flight(1.0)
check(took < STOP_TIMEOUT, "stop took %.1fs, over TimeoutStopSec=%ds" % (took, STOP_TIMEOUT))
step("stop: an 8 MiB request in flight got its whole answer; exit 0 in %.1fs "
     "(TimeoutStopSec=%ds)" % (took, STOP_TIMEOUT))

ns("systemctl", "start", UNIT)
took = stop_in_flight(STOP_TIMEOUT + 2.0)
check(took > STOP_TIMEOUT, "the long drain ended early (%.1fs)" % took)
check(not any("timed out" in e.get("MESSAGE", "") for e in journal()),
      "systemd timed the stop out:\n" + text(journal()))
step("stop: a drain longer than TimeoutStopSec=%ds ran to the end (%.1fs) via "
     "EXTEND_TIMEOUT_USEC; exit 0" % (STOP_TIMEOUT, took))
print("ok (%.1fs)" % (time.time() - started))
