"""Run a command with io_uring blocked, as Docker's default seccomp profile does:
`python3 seccomp_no_uring.py CMD ARGS...` installs a raw BPF seccomp filter that
makes io_uring_setup (and the other io_uring syscalls) fail with EPERM, then
execs CMD. No libseccomp: prctl(PR_SET_SECCOMP) with a hand-built program."""
import ctypes
import os
import platform
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
EPERM = 1
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06
# io_uring_setup, io_uring_enter, io_uring_register: the same numbers on every
# architecture that has them (they were added after the syscall tables merged).
IO_URING_SYSCALLS = (425, 426, 427)
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)


def install():
    arch = AUDIT_ARCH.get(platform.machine())
    if arch is None:
        sys.exit("seccomp_no_uring: unknown architecture " + platform.machine())
    prog = [insn(BPF_LD_W_ABS, 0, 0, 4),                  # seccomp_data.arch
            insn(BPF_JEQ_K, 1, 0, arch),
            insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),     # another ABI: leave it be
            insn(BPF_LD_W_ABS, 0, 0, 0)]                  # seccomp_data.nr
    n = len(IO_URING_SYSCALLS)
    for i, nr in enumerate(IO_URING_SYSCALLS):
        # match -> jump to the EPERM return after the remaining compares and ALLOW
        prog.append(insn(BPF_JEQ_K, n - i, 0, nr))
    prog.append(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM))
    code = b"".join(prog)
    buf = ctypes.create_string_buffer(code, len(code))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(len(prog), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit("prctl(NO_NEW_PRIVS): " + os.strerror(ctypes.get_errno()))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        sys.exit("prctl(SECCOMP): " + os.strerror(ctypes.get_errno()))


if __name__ == "__main__":
    install()
    os.execv(sys.argv[1], sys.argv[1:])
