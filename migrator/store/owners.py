"""Who a worker is, and when another process can be known dead without waiting for its lease.

Every `migrator run` (and every other command that records a run) gets a unique id of its own:
its label (`--worker-name`, else `host:pid`) and a random suffix, `box:1#3f9c1e2a`. Host and
pid are labels only. In containers they say little: every container's process is PID 1, and
with host networking every container has the host's name. The id is what leases, events,
`workers` rows and `runs` rows name, so two processes never share one, whatever their labels.

Liveness is judged by heartbeats: a lease expires unless renewed, a `workers` or `runs` row
lapses unless beaten. One shortcut stays, because it saves a single host a whole lease after
a crash or `kill -9`: a process that sees another's pid *in its own PID namespace on the same
running kernel* may ask the kernel whether that process still exists. The namespace is told
by the kernel's boot id and the PID namespace's inode (`/proc/self/ns/pid`), not by a host
name, and the process by its pid and start time (a reused pid is another process). Processes
in other containers or on other hosts are never judged this way.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Identity:
    """This process as a worker: a unique id and what it is known by."""

    id: str  # unique across all processes of all hosts, for ever (a random suffix)
    host: str  # label: the host name as the process sees it
    pid: int  # label: the pid as the process sees it
    name: str | None  # label: --worker-name / MIGRATOR_WORKER_NAME, if given
    # "<boot id>/<PID namespace>/<pid>/<start ticks>": how the kernel knows this process, for
    # process_gone(); None where the system does not say (not Linux)
    process: str | None

    @property
    def label(self) -> str:
        return self.name or f"{self.host}:{self.pid}"


def identify(name: str | None = None) -> Identity:
    """A new identity for a worker of this process (each call a new unique id)."""
    host = socket.gethostname()
    pid = os.getpid()
    name = (name or "").strip() or None
    namespace = pid_namespace()
    started = process_start(pid)
    return Identity(
        id=f"{name or f'{host}:{pid}'}#{secrets.token_hex(4)}",
        host=host,
        pid=pid,
        name=name,
        process=f"{namespace}/{pid}/{started}" if namespace and started is not None else None,
    )


@cache
def pid_namespace() -> str | None:
    """`<boot id>/<PID namespace inode>`: equal for two processes only when each can see the
    other's pid (same kernel boot, same PID namespace). None where the system does not say
    (not Linux): then no process is ever judged dead by its pid."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        ns = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None
    return f"{boot}/{ns.removeprefix('pid:[').removesuffix(']')}" if boot and ns else None


def process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat),
    or None when there is no such process (a zombie, dead but not yet reaped, counts as none)
    or no /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or parentheses
    fields = stat.rpartition(")")[2].split()
    if fields[:1] == ["Z"]:
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_gone(process: str | None) -> bool:
    """True when `process` (Identity.process of some worker) ran in this process's own PID
    namespace and no longer exists there (or its pid now belongs to a newer process). False
    whenever that cannot be known for sure: another namespace or host, nothing recorded."""
    parts = (process or "").split("/")
    if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
        return False
    namespace, pid, started = f"{parts[0]}/{parts[1]}", int(parts[2]), int(parts[3])
    if namespace != pid_namespace() or pid < 1:
        return False
    now = process_start(pid)
    if now is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return _zombie(pid)
    return now != started


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[:1] == ["Z"]
    except OSError:
        return False
