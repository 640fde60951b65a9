"""Exports (GET /api/jobs/export) that unpack as they should on Windows and macOS too
(issue 29): one file per transcript even where the file system ignores case and Unicode
composition, names Windows accepts, and a summary.csv that no spreadsheet evaluates.

The zip is built by the server's own code from stored job rows (no transcription needed:
what is tested is naming)."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile

from tingxie.server.jobs_api import _export_zip
from tingxie.types import Segment, Transcript

# Windows: no <>:"/\|?* or control characters, no trailing dot or space, no device name
# before the first dot (CON, PRN, AUX, NUL, COM1-9, LPT1-9)
WINDOWS_BAD = re.compile(r'[<>:"/\\|?*\x00-\x1f]|[. ]$')
WINDOWS_DEVICE = re.compile(r"(?i)(con|prn|aux|nul|com[1-9¹²³]|lpt[1-9¹²³])")


def export(filenames: list[str]) -> zipfile.ZipFile:
    jobs = {}
    for i, name in enumerate(filenames):
        t = Transcript("en", 1.0, [Segment(0, 0.0, 1.0, f"text of file {i}", f"text of file {i}")])
        jobs[f"job{i}"] = {
            "id": f"job{i}",
            "filename": name,
            "state": "done",
            "result": t.to_dict(),
            "text": t.text,
            "language": "en",
            "duration": 1.0,
            "processing_time": 0.1,
            "error": None,
            "created_at": "2026-01-01T00:00:00+00:00",
        }
    data = _export_zip(jobs.get, list(jobs))
    return zipfile.ZipFile(io.BytesIO(data.read()))


def test_entries_are_distinct_where_case_and_composition_do_not_count():
    composed, decomposed = "\u00e9.wav", "e\u0301.wav"
    names = ["a.wav", "A.wav", composed, decomposed, "É.wav", "Straße.wav", "STRASSE.wav", "a-2.wav"]
    z = export(names)
    entries = z.namelist()
    folded = {unicodedata.normalize("NFC", e).casefold() for e in entries}
    assert len(folded) == len(entries) == 3 * len(names) + 1  # unpacked on macOS/Windows: none overwritten
    # each transcript is in its own file
    texts = {z.read(e).decode().strip() for e in entries if e.endswith(".txt")}
    assert texts == {f"text of file {i}" for i in range(len(names))}
    assert all(unicodedata.is_normalized("NFC", e) for e in entries)


def test_entry_names_are_valid_on_windows():
    names = ["a:b.txt", "what?.wav", 'say "hi".wav', "CON.wav", "con.backup.wav", "lpt1.mp3", "nul .wav",
             "trailing..wav", "pipe|star*.wav", "tab\there.wav", "COM¹.wav", "...", "<>.wav"]  # fmt: skip
    z = export(names)
    entries = [e for e in z.namelist() if e != "summary.csv"]
    assert len(entries) == 3 * len(names)
    for e in entries:
        assert not WINDOWS_BAD.search(e), e
        assert not WINDOWS_DEVICE.fullmatch(e.split(".")[0].rstrip(" ")), e
        assert not e.startswith("."), e
    stems = {e.rsplit(".", 1)[0] for e in entries}
    assert "a_b" in stems and "what_" in stems  # still recognisable


def test_summary_cells_are_text_even_in_full_width():
    names = ["＝1+1.wav", "＋cmd.wav", "－2.wav", "＠SUM(A1).wav", "=plain.wav", "normal.wav"]
    z = export(names)
    rows = list(csv.reader(io.StringIO(z.read("summary.csv").decode("utf-8-sig"))))[1:]
    shown = {row[0]: row[1] for row in rows}
    for i, name in enumerate(names[:-1]):
        assert shown[f"job{i}"] == "'" + name, shown[f"job{i}"]
    assert shown[f"job{len(names) - 1}"] == "normal.wav"
