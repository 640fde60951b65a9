"""Nothing stuck: every queued or running job names a live process that holds it.

A job row's `worker` names its holder as `name#boot` (boot: a random id per process
life), and every process that holds jobs writes a heartbeat row (`workers`, one per
name) every few seconds: Celery workers (`tingxie worker`) and API nodes (`tingxie
serve`, whose synchronous requests and embedded queue hold jobs too). A job whose
holder has no fresh heartbeat is stranded, and the reaper of every API node takes it:

- queued again, for this node's own queue (embedded queue) or given back to the broker
  (Celery); a job that has been started `MAX_ATTEMPTS` times is failed with the reason
  instead, so a job that kills its process (or can never be saved) ends;
- a real-time session's row cannot be run again: it is failed with the reason.

Why heartbeats rather than start-up recovery alone: with several servers on one
database, "everything running at my start is mine to redo" takes live servers' jobs,
and a server killed while no other starts would strand its jobs until some restart.
An API node's name is `api-HOST:PORT`, so a server restarted on its port replaces its
previous life's heartbeat row at once and reaps what that life held at its start,
without waiting for the heartbeat to age.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # starts of one job before it is failed instead of queued again


def owner_tag(name: str, boot: str) -> str:
    return f"{name}#{boot}"


def _age_s(iso: str | None) -> float:
    if not iso:
        return float("inf")
    return (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()


def alive_owners(store, timeout_s: float) -> set[str]:
    """`name#boot` of every process whose heartbeat is fresh."""
    return {owner_tag(w["name"], (w.get("info") or {}).get("boot", "")) for w in store.live_workers(timeout_s)}


def storage_problem(e: BaseException) -> str | None:
    """What a failed database write says about the machine, in words for an operator or
    a caller (no paths): None when it is not a storage problem."""
    text = str(getattr(e, "orig", None) or e).lower()
    if "disk is full" in text or "no space left" in text or "disk full" in text:
        return "the server's disk is full"
    if "readonly" in text or "read-only" in text or "read only" in text:
        return "the database is read-only"
    if "unable to open database" in text or "disk i/o error" in text:
        return "the database cannot be written"
    return None


@dataclass
class Node:
    """This server process as a job holder: its owner tag and its heartbeat. `error`
    says why the last heartbeat could not be written (readiness reports it)."""

    store: object
    name: str
    period: float
    boot: str = field(default_factory=lambda: secrets.token_hex(4))
    error: str | None = None
    in_hand: set[str] = field(default_factory=set)  # jobs this process works on or has queued now
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def for_server(cls, store, port: int, timeout_s: float) -> Node:
        return cls(store, f"api-{socket.gethostname()}:{port}", max(0.5, min(5.0, timeout_s / 6)))

    @property
    def owner(self) -> str:
        return owner_tag(self.name, self.boot)

    def take(self, job_id: str) -> None:
        with self._lock:
            self.in_hand.add(job_id)

    def drop(self, job_id: str) -> None:
        with self._lock:
            self.in_hand.discard(job_id)

    def holding(self) -> set[str]:
        with self._lock:
            return set(self.in_hand)

    def beat(self) -> bool:
        try:
            if getattr(self.store, "needs_upgrade", False):
                self.store.upgrade()  # type: ignore[attr-defined]
            self.store.heartbeat(self.name, "api", 0, {"boot": self.boot, "role": "api"})  # type: ignore[attr-defined]
        except Exception as e:
            problem = storage_problem(e) or (
                "the database cannot be written" if isinstance(e, OSError) else "the database is unreachable"
            )
            try:  # a connection opened read-only stays so: the next try opens fresh ones
                self.store.engine.dispose()  # type: ignore[attr-defined]
            except Exception:  # noqa: S110 - nothing to release
                pass
            if problem != self.error:
                log.warning("heartbeat not written: %s (%s)", problem, type(e).__name__)
            self.error = problem
            return False
        if self.error:
            log.info("heartbeat written again: the database accepts writes")
        self.error = None
        return True

    def start(self) -> None:
        self.beat()
        threading.Thread(target=self._loop, name="tingxie-node-heartbeat", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.beat()


def reap(
    store,
    me: str | None,
    timeout_s: float,
    held_here: set[str] | None = None,
    take_unheld: bool = False,
    at_start: bool = False,
) -> list[str]:
    """One pass over the unfinished jobs; returns the ids now queued for `me` (None:
    queued unheld, for the caller to send to a broker).

    `held_here`: the jobs this process has in hand (its queue and its running jobs): a
    row held by `me` but not in hand (its save failed) is queued again too.
    `take_unheld`: queued jobs nobody holds are taken (the embedded queue: they were
    stranded between insert and submit; with Celery they wait in the broker), at once
    at start, else once they are `timeout_s` old."""
    lives = store.live_workers(timeout_s)
    alive = {owner_tag(w["name"], (w.get("info") or {}).get("boot", "")) for w in lives}
    alive_names = {w["name"] for w in lives}
    out: list[str] = []
    for j in store.unfinished_jobs():
        holder = j.get("worker") or None
        young = _age_s(j.get("updated_at")) < timeout_s
        if holder is not None and holder == me:
            if held_here is None or j["id"] in held_here or young:
                continue
        elif holder is not None and holder in alive:
            continue
        elif holder is None and j["state"] == "queued":
            if not take_unheld or (young and not at_start):
                continue
        elif holder is not None and holder.split("#")[0] in alive_names and "#" in holder:
            pass  # its name beats with another boot id: that life is over
        elif young:
            continue  # claimed just now, perhaps before the holder's first heartbeat
        if int(j.get("attempts") or 0) >= MAX_ATTEMPTS:
            reason = (
                f"stopped after {j['attempts']} attempts: the process running it ended "
                "or could not save its result each time"
            )
            if store.fail_job(j["id"], reason):
                log.warning("job %s: failed after %d attempts", j["id"], j["attempts"])
            continue
        if j["kind"] == "stream":
            if store.fail_job(j["id"], "the server ended before this real-time session was saved"):
                log.warning("job %s: real-time session lost with its server", j["id"])
            continue
        if store.adopt_job(j["id"], holder, me):
            log.info("job %s: holder gone (%s); queued again", j["id"], "none" if holder is None else "no heartbeat")
            out.append(j["id"])
    return out


__all__ = ["Node", "reap", "owner_tag", "alive_owners", "storage_problem", "MAX_ATTEMPTS"]
