"""The kernel's process events (the proc connector, `linux/cn_proc.h`): fork, exec and exit of
every process on the machine, each with the kernel's CLOCK_MONOTONIC timestamp. Needs root.

The benchmark times what it measures from these timestamps, not from its own polling: the time a
supervisor takes to start a replacement is the gap between the old process's exit and the new
one's exec, both stamped by the kernel."""

import os
import select
import socket
import struct
import time

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3
SO_RCVBUFFORCE = 33

FORK = 0x00000001
EXEC = 0x00000002
EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT = struct.Struct("=IIQ")


class Event:
    """One process event: `what` (FORK, EXEC or EXIT), `ts` (ns, CLOCK_MONOTONIC), `pid` (for
    FORK the child's), `parent` (FORK only)."""

    __slots__ = ("what", "ts", "pid", "parent")

    def __init__(self, what, ts, pid, parent=None):
        self.what, self.ts, self.pid, self.parent = what, ts, pid, parent

    def __repr__(self):
        return f"Event({self.what:#x}, {self.ts}, {self.pid}, {self.parent})"


class ProcEvents:
    """A listening proc-connector socket. `events(timeout)` yields what arrived."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 * 1024 * 1024)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.sock.bind((os.getpid(), CN_IDX_PROC))
        self._control(PROC_CN_MCAST_LISTEN)
        self.lost = 0

    def _control(self, op):
        data = struct.pack("=I", op)
        cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(data), 0) + data
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, os.getpid())
        self.sock.send(header + cn)

    def close(self):
        try:
            self._control(PROC_CN_MCAST_IGNORE)
        except OSError:
            pass
        self.sock.close()

    def drain(self):
        """Drops what is queued."""
        while True:
            try:
                self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                self.lost += 1

    def events(self, timeout):
        """Every event that arrives within `timeout` seconds (less if the caller stops)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return
            try:
                data = self.sock.recv(1 << 16)
            except OSError:  # ENOBUFS: the buffer overflowed, events were lost
                self.lost += 1
                continue
            yield from _parse(data)


def _parse(data):
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, _kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        body = offset + _NLMSGHDR.size + _CN_MSG.size
        if body + _EVENT.size <= offset + length:
            what, _cpu, ts = _EVENT.unpack_from(data, body)
            rest = body + _EVENT.size
            if what == FORK:
                _ppid, ptgid, _cpid, ctgid = struct.unpack_from("=IIII", data, rest)
                if ctgid != ptgid:  # a new process, not a new thread of the same one
                    yield Event(FORK, ts, ctgid, ptgid)
            elif what == EXEC:
                _pid, tgid = struct.unpack_from("=II", data, rest)
                yield Event(EXEC, ts, tgid)
            elif what == EXIT:
                pid, tgid = struct.unpack_from("=II", data, rest)
                if pid == tgid:  # the process, not one of its threads
                    yield Event(EXIT, ts, tgid)
        offset += (length + 3) & ~3


def cmdline(pid):
    """The command line of `pid` as a tuple, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
