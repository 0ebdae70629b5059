"""Leases that follow their holder: renewed while it lives, freed when it is gone.

A lease is short (``ORCHESTRATOR_LEASE_TTL``) and a :class:`LeaseKeeper` thread
renews every lease of its worker at a third of that, so a long create or
download never loses its lease, and a worker that dies holds nothing for long.
A worker id is ``host:pid:random``; a restarted ``run`` or daemon on the same
host frees at once the leases of a holder whose process is gone (or whose pid
it now has itself), instead of waiting out the TTL. Other hosts can't see a
process table, so they wait for expiry. Fencing is unchanged: a holder that
was freed writes nothing under its old lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from datetime import datetime

from orchestrator.errors import StoreError
from orchestrator.store.queries import Store

log = logging.getLogger("orchestrator")

#: Renewals per lease lifetime: a lease survives two missed heartbeats.
HEARTBEATS_PER_TTL = 3


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


#: Joins a worker id and the name of one of its threads that holds leases of its own.
THREAD_OWNER_SEPARATOR = "+"


def thread_owner(owner: str, thread: str) -> str:
    """The lease owner id of a thread of worker ``owner`` that holds leases apart from
    it (the background submitter): freed with the worker, never as a dead peer."""
    return f"{owner}{THREAD_OWNER_SEPARATOR}{thread}"


def same_worker(holder: str, me: str) -> bool:
    """Whether ``holder`` is ``me`` or one of its threads (``thread_owner``)."""
    return holder == me or holder.startswith(me + THREAD_OWNER_SEPARATOR)


def dead_local_holders(
    holders: Iterable[str],
    me: str,
    *,
    host: str | None = None,
    pid: int | None = None,
    alive: Callable[[int], bool] = pid_alive,
) -> list[str]:
    """The holders among ``holders`` that ran on this host and whose process is gone."""
    host = host or socket.gethostname()
    pid = os.getpid() if pid is None else pid
    dead = []
    for holder in holders:
        parts = holder.rsplit(":", 2)
        if same_worker(holder, me) or len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        holder_pid = int(parts[1])
        # Our own pid under another id: the holder was an earlier process (a container
        # restart reuses pids), so it is gone.
        if holder_pid == pid or not alive(holder_pid):
            dead.append(holder)
    return dead


def free_dead_local_leases(store: Store, me: str, now: datetime) -> int:
    """Free the leases of this host's dead workers; returns how many rows were freed."""
    freed = 0
    for holder in dead_local_holders(store.lease_holders(now), me):
        count = store.release_holder(holder)
        if count:
            log.info("freed %s lease(s) of %s, which is no longer running", count, holder)
        freed += count
    return freed


class LeaseKeeper:
    """A daemon thread renewing every lease of ``owner`` while the worker runs."""

    def __init__(self, store: Store, owner: str, ttl_s: float, clock: Callable[[], datetime]):
        self._store = store
        self._owner = owner
        self._ttl_s = ttl_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._ttl_s)

    def _run(self) -> None:
        while not self._stop.wait(self._ttl_s / HEARTBEATS_PER_TTL):
            try:
                self._store.renew_leases(self._owner, self._clock(), self._ttl_s)
            except StoreError as exc:  # the next beat tries again; expiry is the backstop
                log.warning("could not renew leases: %s", exc)
