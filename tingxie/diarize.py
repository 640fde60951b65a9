"""Who spoke when: the diarizer's turns laid over a transcript's segments and words.

After a file is transcribed its 16 kHz audio goes through the diarizer
(engines/diarization), and each word (or, without word times, each segment) goes to the
speaker whose turns overlap it most; overlapping speech therefore goes to the speaker
with the most overlap. A segment whose words change speaker is split there, at the word
boundary. Speakers are numbered SPEAKER_1, SPEAKER_2… in order of first appearance in
the transcript (a turn with no text gives no speaker, so there are never gaps).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from .types import SAMPLE_RATE, DiarizeOptions, OptionsError, Segment, Speaker, Transcript, VoicePrint, Word

# Known speakers: a diarized speaker takes a known speaker's name when the cosine
# similarity of their voice prints reaches this (CAM++ zh-en): the middle of the
# error-free range 0.5–0.8 on the calibration half; on the validation half 0 % false
# accepts, 15 % false rejects (bench/results/speaker_match.md).
MATCH_THRESHOLD = 0.65
MAX_VOICE_S = 20.0  # of a speaker's own (not overlapped) turns, longest first, for a voice print

# Enrolling a voice (POST /api/speakers): the speech Silero finds in the clip makes the
# print; under MIN_ENROL_SPEECH_S the print is too unsteady to compare (the match
# threshold was measured with 5 s references, bench/speaker_match.py).
MIN_ENROL_SPEECH_S = 2.0
MAX_ENROL_S = 30.0  # of any clip of one person's voice: enrolled, or a request's reference

# Long recordings are diarized in pieces of about this length, and the pieces' speakers
# joined by voice print (turns_of), so the diarizer's memory stays that of one piece
# instead of growing with the file (sherpa-onnx clusters every window of a file at once).
CHUNK_S = 600.0

# A segment without word times is split at a turn change only when each side has at
# least this much of the segment (shorter overlaps are edges of the neighbours' turns).
MIN_SPLIT_S = 1.0


def speaker_id(n: int) -> str:
    return f"SPEAKER_{n}"


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _who(start: float, end: float, turns) -> int | None:
    """The speaker with most overlap with [start, end]; a point or a gap takes the
    nearest turn (words can fall in the pauses the diarizer leaves)."""
    if not turns:
        return None
    best: dict[int, float] = {}
    for t in turns:
        o = _overlap(start, end, t.start, t.end)
        if o > 0:
            best[t.speaker] = best.get(t.speaker, 0.0) + o
    if best:
        return max(best, key=lambda k: best[k])
    mid = (start + end) / 2
    return min(
        turns, key=lambda t: 0.0 if t.start <= mid <= t.end else min(abs(mid - t.start), abs(mid - t.end))
    ).speaker


def _split_by_words(seg: Segment, turns) -> list[Segment]:
    """Cut where consecutive words belong to different speakers. The text is cut at the
    same place in the finished text (after ITN and punctuation, which the words, as the
    model said them, do not carry): at the cut point nearest the same share of it."""
    assert seg.words
    owners = [_who(w.start, w.end, turns) for w in seg.words]
    pieces: list[tuple[int | None, list[Word]]] = []
    for who, w in zip(owners, seg.words, strict=True):
        if not pieces or pieces[-1][0] != who:
            pieces.append((who, []))
        pieces[-1][1].append(w)
    text = seg.text.strip()
    if len(pieces) == 1 or len(text) < 2:
        return [_tag(seg, _who(seg.start, seg.end, turns) if len(pieces) > 1 else pieces[0][0])]
    said = sum(len(w.word) for w in seg.words) or 1
    points = sorted(set(_cut_points(text, all_kinds=True)))
    cuts: list[int] = []
    before = 0
    for _, ws in pieces[:-1]:
        before += sum(len(w.word) for w in ws)
        want = len(text) * before / said
        after = [p for p in points if p > (cuts[-1] if cuts else 0)]
        cuts.append(min(after, key=lambda p: abs(p - want)) if after else len(text))
    bounds = [0, *cuts, len(text)]
    out = []
    for k, (who, ws) in enumerate(pieces):
        part = text[bounds[k] : bounds[k + 1]].strip()
        if not part:
            continue
        piece = replace(seg, start=ws[0].start, end=ws[-1].end, text=part, raw_text=part, words=ws)
        out.append(_tag(piece, who))
    return out or [_tag(seg, _who(seg.start, seg.end, turns))]


def _cut_points(text: str, all_kinds: bool = False) -> list[int]:
    """Where a text may be cut: after punctuation, else at spaces, else between any two
    characters (CJK); `all_kinds`: every one of them (a word boundary is known)."""
    punct = [i + 1 for i, c in enumerate(text[:-1]) if unicodedata.category(c).startswith("P")]
    if all_kinds:
        spaces = [i for i, c in enumerate(text) if c == " " and i > 0]
        cjk = [i for i in range(1, len(text)) if unicodedata.east_asian_width(text[i - 1]) in ("W", "F")]
        return punct + spaces + cjk
    if punct:
        return punct
    spaces = [i for i, c in enumerate(text) if c == " " and i > 0]
    return spaces or list(range(1, len(text)))


def _split_by_time(seg: Segment, turns) -> list[Segment]:
    """Without word times: one cut at the biggest turn change inside the segment, the
    text cut where the time falls (at a clause or word boundary near it)."""
    inside = sorted((t for t in turns if _overlap(seg.start, seg.end, t.start, t.end) > 0), key=lambda t: t.start)
    who = _who(seg.start, seg.end, turns)
    dur = seg.end - seg.start
    text = seg.text.strip()
    for a, b in zip(inside, inside[1:], strict=False):
        if a.speaker == b.speaker:
            continue
        at = max(seg.start, min(seg.end, (a.end + b.start) / 2 if b.start >= a.end else b.start))
        if at - seg.start < MIN_SPLIT_S or seg.end - at < MIN_SPLIT_S or len(text) < 2:
            continue
        points = _cut_points(text)
        want = len(text) * (at - seg.start) / dur
        cut = min(points, key=lambda p: abs(p - want))
        left, right = text[:cut].strip(), text[cut:].strip()
        if not left or not right:
            continue
        first = _tag(replace(seg, end=at, text=left, raw_text=left), _who(seg.start, at, turns))
        return [first, *_split_by_time(_tag(replace(seg, start=at, text=right, raw_text=right), None), turns)]
    return [_tag(seg, who)]


def _tag(seg: Segment, who: int | None) -> Segment:
    seg = replace(seg, flags=list(seg.flags), tags=dict(seg.tags))
    seg.speaker = None if who is None else str(who)  # the clusterer's index until numbered
    return seg


def assign(t: Transcript, turns, keep_words: bool = True, names: dict[int, str] | None = None) -> Transcript:
    """`t` with every segment given a speaker (split where the speaker changes) and the
    speakers numbered by first appearance; without turns (no speech found) it is
    returned with no speakers."""
    if not turns:
        return t
    segments: list[Segment] = []
    for seg in t.segments:
        if seg.words:
            segments.extend(_split_by_words(seg, turns))
        else:
            segments.extend(_split_by_time(seg, turns))
    order: dict[str, str] = {}
    for seg in segments:
        if seg.speaker is not None and seg.speaker not in order and seg.text.strip():
            order[seg.speaker] = speaker_id(len(order) + 1)
    for seg in segments:  # a no-text segment of a speaker heard nowhere else: nearest said
        if seg.speaker is not None and seg.speaker not in order:
            order[seg.speaker] = speaker_id(len(order) + 1)
    for i, seg in enumerate(segments):
        seg.id = i
        seg.speaker = order.get(seg.speaker) if seg.speaker is not None else None
        if not keep_words:
            seg.words = None
    t.segments = segments
    named = {order[str(k)]: v for k, v in (names or {}).items() if str(k) in order}
    t.speakers = [Speaker(sid, named.get(sid, sid)) for sid in order.values()]
    return t


def rename(t: Transcript, names: dict[str, str]) -> Transcript:
    """Give speakers names (a job's stored renames); unknown ids are ignored."""
    for sp in t.speakers:
        if names.get(sp.id, "").strip():
            sp.name = names[sp.id].strip()
    return t


def voice_of(audio: np.ndarray, turns, speaker: int) -> np.ndarray:
    """Up to MAX_VOICE_S of one speaker's turns where nobody else speaks."""
    own = []
    for t in turns:
        if t.speaker != speaker:
            continue
        others = [o for o in turns if o.speaker != speaker and _overlap(t.start, t.end, o.start, o.end) > 0]
        start, end = t.start, t.end
        for o in others:  # keep the longer side of each overlap
            if o.start <= start:
                start = max(start, o.end)
            elif o.end >= end:
                end = min(end, o.start)
        if end - start > 0.3:
            own.append((start, end))
    own.sort(key=lambda se: se[0] - se[1])
    parts, total = [], 0.0
    for start, end in own:
        if total >= MAX_VOICE_S:
            break
        end = min(end, start + MAX_VOICE_S - total)
        parts.append(audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)])
        total += end - start
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def match_known(embed, audio: np.ndarray, turns, known, threshold: float = MATCH_THRESHOLD) -> dict[int, str]:
    """Which diarized speakers are which known speakers: pairs by falling similarity,
    each speaker and each name used once, none below `threshold`."""
    refs = [(name, v.vector if isinstance(v, VoicePrint) else embed(v)) for name, v in known]
    prints = {}
    for k in sorted({t.speaker for t in turns}):
        v = voice_of(audio, turns, k)
        if len(v) >= SAMPLE_RATE // 2:
            prints[k] = embed(v)
    from .engines.diarization import cosine

    pairs = sorted(((cosine(e, r), k, name) for k, e in prints.items() for name, r in refs), reverse=True)
    out: dict[int, str] = {}
    for c, k, name in pairs:
        if c < threshold:
            break
        if k not in out and name not in out.values():
            out[k] = name
    return out


def run(
    t: Transcript,
    audio: np.ndarray,
    opts: DiarizeOptions,
    progress: Callable[[float], None] | None = None,
    keep_words: bool = True,
) -> Transcript:
    """Diarize a file's 16 kHz mono audio and assign its transcript's segments."""
    from .engines.diarization import diarizer
    from .settings import get_settings

    d = diarizer(get_settings().models_dir, threads=1)
    turns = turns_of(d, audio, opts, progress)
    names = match_known(d.embed, audio, turns, opts.known) if opts.known else None
    t = assign(t, turns, keep_words, names)
    for name in opts.missing:
        t.warnings.append(f"the enrolled voice {name!r} was deleted before this ran: not looked for")
    return t


def enrol_print(audio: np.ndarray, models_dir) -> tuple[np.ndarray, float, str]:
    """(voice print, seconds of speech, embedding model name) of a clip of one person:
    the speech Silero finds in it, embedded; OptionsError (400) when there is too little."""
    from .engines.diarization import diarizer
    from .vad import detect_speech

    spans = detect_speech(np.ascontiguousarray(audio, dtype=np.float32))
    if not spans:
        raise OptionsError("no speech found in the audio: enrol a few seconds of the person speaking", "audio")
    speech = np.concatenate([audio[s.start : s.end] for s in spans])
    seconds = len(speech) / SAMPLE_RATE
    if seconds < MIN_ENROL_SPEECH_S:
        raise OptionsError(
            f"only {seconds:.1f} s of speech in the audio: enrol at least {MIN_ENROL_SPEECH_S:g} s", "audio"
        )
    d = diarizer(models_dir)
    return d.embed(speech), seconds, d.embedding.name


def enrolled(
    store, owner: str, names, models_dir, at_run: bool = False
) -> tuple[tuple[tuple[str, VoicePrint], ...], tuple[str, ...]]:
    """(known, missing): the voice prints `owner` enrolled under `names`. A name not
    enrolled is a 400 naming it when a request asks; when a queued job runs (`at_run`) a
    voice deleted meanwhile is only missing. A print of another embedding model cannot be
    compared: enrol again."""
    from .engines.diarization.find import find_diarization

    if not names:
        return (), ()
    found = find_diarization(models_dir)
    model = found.embedding.name if found is not None else None
    rows = store.speaker_prints(owner, list(names))
    known, missing = [], []
    for name in names:
        if name not in rows:
            if not at_run:
                raise OptionsError(
                    f"no enrolled voice named {name!r} (GET /api/speakers lists them; POST /api/speakers enrols one)",
                    "known_speaker_names[]",
                )
            missing.append(name)
            continue
        vector, enrolled_with = rows[name]
        if model is not None and enrolled_with != model:
            raise OptionsError(
                f"the voice {name!r} was enrolled with another speaker-embedding model; enrol it again",
                "known_speaker_names[]",
            )
        known.append((name, VoicePrint(np.frombuffer(vector, dtype=np.float32).copy())))
    return tuple(known), tuple(missing)


def turns_of(d, audio: np.ndarray, opts: DiarizeOptions, progress=None, chunk_s: float = CHUNK_S) -> list:
    """The diarizer's turns of a whole recording. Up to 1.5 × `chunk_s` in one pass;
    longer ones in equal pieces of about `chunk_s`, each diarized alone, then every
    piece's speakers joined across pieces by the voice print of their own turns
    (`join_speakers`), so the peak memory is one piece's, not the file's. Progress runs
    over all pieces."""
    from .engines.diarization import Turn

    n = len(audio)
    if n <= 1.5 * chunk_s * SAMPLE_RATE:
        return d.process(audio, opts, progress)
    pieces = max(2, round(n / (chunk_s * SAMPLE_RATE)))
    bounds = [n * i // pieces for i in range(pieces + 1)]
    # a piece may hold fewer speakers than the file: only the upper bound applies to it
    local = DiarizeOptions(max_speakers=opts.num_speakers or opts.max_speakers, threshold=opts.threshold)
    found: list[tuple[int, list]] = []  # (piece, its turns)
    prints: list[np.ndarray | None] = []  # per (piece, local speaker), in `keys` order
    keys: list[tuple[int, int]] = []
    reached = [0.0]  # a piece's own progress may restart (one phase after another): never show a step back
    for i in range(pieces):
        part = audio[bounds[i] : bounds[i + 1]]

        def step(f: float, i: int = i) -> None:
            value = (i + min(max(f, 0.0), 1.0)) / pieces
            if progress is not None and value > reached[0]:
                reached[0] = value
                progress(value)

        turns = d.process(part, local, step)
        found.append((i, turns))
        for k in sorted({t.speaker for t in turns}):
            v = voice_of(part, turns, k)
            if len(v) < SAMPLE_RATE // 2:  # no half second alone: all of its turns, overlaps and all
                v = np.concatenate(
                    [part[int(t.start * SAMPLE_RATE) : int(t.end * SAMPLE_RATE)] for t in turns if t.speaker == k]
                )
            keys.append((i, k))
            prints.append(d.embed(v) if len(v) >= SAMPLE_RATE // 4 else None)
    label = join_speakers(prints, opts)
    speaker = dict(zip(keys, label, strict=True))
    out: list[Turn] = []
    for i, turns in found:
        at = bounds[i] / SAMPLE_RATE
        out.extend(Turn(t.start + at, t.end + at, speaker[(i, t.speaker)]) for t in turns)
    if progress is not None:
        progress(1.0)
    return sorted(out, key=lambda t: (t.start, t.end))


def join_speakers(prints: list, opts: DiarizeOptions) -> list[int]:
    """Cluster labels of the pieces' speakers: average-linkage agglomerative clustering
    on cosine distance, merging while the closest pair is nearer than the threshold and
    within the requested count (`num_speakers`, else `min_speakers`/`max_speakers`). A
    speaker with no print (under a quarter second of speech) stays on its own."""
    from .engines.diarization import cosine

    groups: list[list[int]] = [[i] for i in range(len(prints))]
    with_print = [g for g in groups if prints[g[0]] is not None]
    alone = len(groups) - len(with_print)  # count as speakers of their own
    floor = max(1, (opts.num_speakers or opts.min_speakers or 1) - alone)
    ceil = max(1, (opts.num_speakers or opts.max_speakers or len(prints)) - alone)
    dist = {
        (i, j): 1.0 - cosine(prints[i], prints[j])
        for i in range(len(prints))
        for j in range(i + 1, len(prints))
        if prints[i] is not None and prints[j] is not None
    }

    def linkage(a: list[int], b: list[int]) -> float:
        return float(np.mean([dist[(min(x, y), max(x, y))] for x in a for y in b]))

    while len(with_print) > 1:
        pairs = [
            (linkage(a, b), ai, bi) for ai, a in enumerate(with_print) for bi, b in enumerate(with_print) if ai < bi
        ]
        best, ai, bi = min(pairs)
        if len(with_print) <= floor or (best >= opts.threshold and len(with_print) <= ceil):
            break
        with_print[ai] = with_print[ai] + with_print[bi]
        del with_print[bi]
    label = [0] * len(prints)
    clusters = with_print + [g for g in groups if prints[g[0]] is None]
    for c, members in enumerate(clusters):
        for m in members:
            label[m] = c
    return label
