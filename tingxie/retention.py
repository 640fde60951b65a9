"""Retention: delete stored audio after N days and, if configured, the text with it.
Runs in the API process once an hour (any number of API nodes may run it: the store's
updates are idempotent and a missing file is fine)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)


def purge_once(store, audio_days: int, keep_text: bool, now: datetime | None = None) -> int:
    """Apply the retention policy once; returns how many audio files were deleted."""
    if audio_days <= 0:
        return 0
    before = (now or datetime.now(UTC)) - timedelta(days=audio_days)
    paths = store.purge_audio(before)
    for p in paths:
        Path(p).unlink(missing_ok=True)
    if not keep_text:
        store.purge_text(before)
    if paths:
        log.info("retention: deleted the audio of %d job(s)", len(paths))
    return len(paths)


def start(store, audio_days: int, keep_text: bool, every_s: float = 3600) -> threading.Event:
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                purge_once(store, audio_days, keep_text)
            except Exception:  # keep serving; try again next hour
                log.exception("retention pass failed")
            if stop.wait(every_s):
                return

    if audio_days > 0:
        threading.Thread(target=loop, name="tingxie-retention", daemon=True).start()
    return stop
