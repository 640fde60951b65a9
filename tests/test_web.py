"""The web UI end to end: a real Chromium (Debian package, driven by Playwright) against a
real `tingxie serve`. Each page is used the way a person would use it, and a screenshot
of it goes to test-artifacts/ and docs/screenshots/ (1280×800)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_fixture import Server  # noqa: E402

CHROMIUM = os.environ.get("TINGXIE_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
RT_SENTENCE = "Please open the window before you leave the office."

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)


def _pad(wav: Path, seconds: float) -> Path:
    """Trailing silence, so the stream's VAD sees the utterance end before the fake
    microphone loops the file."""
    out = wav.with_name(wav.stem + "-padded.wav")
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(wav),
            "-af",
            f"apad=pad_dur={seconds}",
            "-ar",
            "48000",
            "-ac",
            "1",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory, synth_speech):
    d = tmp_path_factory.mktemp("audio")
    out = {
        "rt": _pad(synth_speech(RT_SENTENCE, d / "rt.wav"), 2.0),
        "history": synth_speech("Please remember the purple elephant meeting on Friday.", d / "elephant.wav"),
        "delete": synth_speech("This recording should be deleted.", d / "delete-me.wav"),
    }
    for i, text in enumerate(
        ["Good morning everyone.", "The bank opens at nine.", "Send the report to the office.", "Thank you very much."]
    ):
        out[f"batch{i}"] = synth_speech(text, d / f"batch-{i + 1}.wav")
    bad = d / "bad.wav"
    bad.write_bytes(os.urandom(4096))
    out["bad"] = bad
    return out


def _second_model(home: Path) -> str | None:
    """A tiny SenseVoice (tests/tiny_models.py, built in a second) beside the bundled
    Whisper, so the model selector has two models to offer; None without sherpa-onnx."""
    try:
        import onnx  # noqa: F401
        import sherpa_onnx  # noqa: F401
    except ImportError:
        return None
    import tiny_models as tm

    tm.sense_voice(home / "models" / "sensevoice")
    return "sensevoice"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    second = _second_model(home)
    srv = Server(home).start()
    srv.second_model = second  # type: ignore[attr-defined]
    yield srv
    srv.stop()


@pytest.fixture
def sensevoice(server) -> str:
    if not server.second_model:
        pytest.skip("sherpa-onnx / onnx not installed: the server has one model")
    return server.second_model


@pytest.fixture(scope="module")
def browser(files):
    from playwright.sync_api import sync_playwright

    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={files['rt']}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        except Exception as e:  # noqa: BLE001 - any launch failure means: no usable browser here
            pytest.skip(f"chromium at {CHROMIUM} did not start under Playwright: {e}")
        yield b
        b.close()


def offline_context(browser, **kw):
    """A browser context on an "offline network": every request that leaves the loopback
    interface is aborted and recorded (`ctx.outside`), so a page that needs a CDN breaks."""
    ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True, **kw)
    outside: list[str] = []

    def gate(route):
        u = urlsplit(route.request.url)
        if u.scheme in ("http", "https", "ws", "wss") and u.hostname not in ("127.0.0.1", "localhost", "::1"):
            outside.append(route.request.url)
            return route.abort("internetdisconnected")
        return route.continue_()

    ctx.route("**/*", gate)
    ctx.outside = outside  # type: ignore[attr-defined]
    return ctx


@pytest.fixture
def page(browser, server):
    ctx = offline_context(browser, locale="en-US")
    # these tests read the per-segment view (paragraphs, the default, are tests/test_web_day.py's)
    ctx.add_init_script("localStorage.setItem('tingxie.resultView', 'segments')")
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # the UI runs under its Content-Security-Policy: anything it refuses is a broken feature
    pg.on("console", lambda m: "Content Security Policy" in m.text and errors.append(m.text))
    pg.base = server.url  # type: ignore[attr-defined]
    yield pg
    ctx.close()
    assert not errors, f"uncaught errors in the page: {errors}"
    assert not ctx.outside, f"the page asked for something outside the server: {ctx.outside}"


def shot(pg, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    pg.screenshot(path=str(path))
    shutil.copyfile(path, SHOTS / f"{name}.png")


def submit_and_wait(server, path: Path) -> dict:
    with open(path, "rb") as f:
        r = httpx.post(
            server.url + "/api/jobs", files={"files": (path.name, f, "audio/wav")}, data={"language": "en"}, timeout=60
        )
    r.raise_for_status()
    job_id = r.json()["jobs"][0]["id"]
    deadline = time.time() + 120
    while time.time() < deadline:
        job = httpx.get(f"{server.url}/api/jobs/{job_id}", timeout=10).json()
        if job["state"] in ("done", "failed", "cancelled"):
            assert job["state"] == "done", job
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not done in time")


def test_root_redirects_to_ui_and_pages_switch(page):
    page.goto(page.base + "/")
    assert page.url.endswith("/ui/")
    pages = {"Real-time": "realtime", "Batch": "batch", "History": "history", "VAD": "vad", "System": "system"}
    pages["Recognise"] = "recognise"
    for tab, name in pages.items():
        page.get_by_role("link", name=tab, exact=True).click()
        # the page switches on the hashchange event, after the click returns
        page.locator(f"#page-{name}:not([hidden])").wait_for()
        shown = page.locator(".page:not([hidden])")
        assert shown.count() == 1 and shown.get_attribute("id") == f"page-{name}", (tab, shown.get_attribute("id"))
    # language switch is remembered
    page.click("#lang-switch")
    assert page.locator(".tabs a[data-page=recognise]").inner_text() == "识别"
    page.reload()
    assert page.locator(".tabs a[data-page=recognise]").inner_text() == "识别"
    assert page.locator("#rec-submit").inner_text() == "开始识别"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "recognise-zh.png"))
    page.click("#lang-switch")
    assert page.locator(".tabs a[data-page=recognise]").inner_text() == "Recognise"


@pytest.fixture(scope="module")
def recognise_wav(request, tmp_path_factory) -> Path:
    """A real recording from the eval corpus; espeak speech where the corpus is absent."""
    try:
        return request.getfixturevalue("corpus_dir") / "deepspeech_LDC93S1.wav"
    except pytest.skip.Exception:
        synth = request.getfixturevalue("synth_speech")
        return synth(
            "She had your dark suit in greasy wash water all year.", tmp_path_factory.mktemp("rec") / "dark-suit.wav"
        )


def test_recognise_file_shows_text_player_and_downloads(page, recognise_wav):
    wav = recognise_wav  # "She had your dark suit in greasy wash water all year."
    page.goto(page.base + "/ui/#recognise")
    page.set_input_files("#rec-file", str(wav))
    page.select_option("#rec-options select[name=language]", "en")
    page.click("#rec-submit")
    page.wait_for_selector(".result .segment", timeout=90_000)
    text = page.locator(".result .segments").inner_text().lower()
    assert "dark suit" in text and "greasy" in text, text
    assert page.locator(".result audio").get_attribute("src").endswith("/audio")
    # clicking a segment seeks the player and highlights it while it plays
    page.locator(".result .segment").first.click()
    page.wait_for_selector(".result .segment.playing", timeout=10_000)
    # the SRT download link is the server's rendering of this job
    href = page.locator(".result a", has_text="SRT").get_attribute("href")
    srt = httpx.get(page.base + href).text
    assert "-->" in srt and "suit" in srt.lower()
    page.evaluate("document.querySelector('.result audio').pause()")
    shot(page, "recognise-segments")


@pytest.mark.eval
def test_recognise_split_call_labels_each_channel(page, server, corpus_dir, tmp_path):
    """A stereo call with channels "Split by channel": each segment shows its channel's
    label, the Mandarin speaker on CH1 and the English one on CH2, in Recognise and in
    the history; the control is on Batch too, and speaks Chinese in the Chinese UI."""
    from helpers import write_call

    call = tmp_path / "hotline-call.wav"
    write_call(corpus_dir, call)
    page.goto(page.base + "/ui/#recognise")
    assert page.locator("#rec-channels option").all_inner_texts() == ["Mix", "Split by channel"]
    assert page.locator("#rec-channels").input_value() == "mix"
    page.set_input_files("#rec-file", str(call))
    page.select_option("#rec-channels", "split")
    page.click("#rec-submit")
    page.wait_for_selector(".result .segment", timeout=120_000)
    segments = page.locator(".result .segment .seg-text")
    labels = page.locator(".result .segment .ch").all_inner_texts()
    assert labels.count("CH2") >= 1 and labels[0] == "CH1" and labels[-1] == "CH1", labels
    assert len(labels) == segments.count()
    for label, text in zip(labels, segments.all_inner_texts(), strict=True):
        words = text.removeprefix(label)
        if label == "CH1":
            assert re.search(r"[\u4e00-\u9fff]", words) and not re.search(r"[A-Za-z]", words), text
        else:
            assert "dark suit" in words.lower() and not re.search(r"[\u4e00-\u9fff]", words), text
    meta = page.locator(".result .meta").inner_text()
    assert "CH1 Chinese (Mandarin) · CH2 English" in meta and "Split by channel (2)" in meta, meta
    page.evaluate("document.querySelector('.result details.fulltext').open = true")
    dialogue = page.locator(".result .fulltext .plain").inner_text().splitlines()
    assert [line[:4] for line in dialogue] == ["CH1:", "CH2:", "CH1:"], dialogue
    page.evaluate("document.querySelector('.result details.fulltext').open = false")
    shot(page, "recognise-split")

    job_id = page.locator(".result").get_attribute("data-job-id")
    page.goto(page.base + f"/ui/#history/{job_id}")
    page.wait_for_selector("#hist-detail .result .segment .ch")
    assert page.locator("#hist-detail .segment .ch").all_inner_texts() == labels
    page.goto(page.base + "/ui/#batch")
    assert page.locator("#batch-channels option").all_inner_texts() == ["Mix", "Split by channel"]
    page.click("#lang-switch")
    assert page.locator("#batch-channels option").all_inner_texts() == ["混合", "分声道"]
    page.goto(page.base + f"/ui/#history/{job_id}")
    page.wait_for_selector("#hist-detail .result .segment .ch")
    assert page.locator("#hist-detail .segment .ch").all_inner_texts() == labels  # the same labels in Chinese
    assert "分声道 (2)" in page.locator("#hist-detail .meta").inner_text()
    page.click("#lang-switch")


def test_batch_with_a_corrupt_file_then_export_zip(page, files):
    page.goto(page.base + "/ui/#batch")
    page.select_option("#batch-options select[name=language]", "en")
    paths = [str(files[f"batch{i}"]) for i in range(4)] + [str(files["bad"])]
    page.set_input_files("#batch-files", paths)
    # dropping the same files again uploads nothing twice
    page.set_input_files("#batch-files", paths[:2])
    page.wait_for_function(
        "() => document.querySelectorAll('#batch-table tbody tr[data-state=done]').length === 4"
        " && document.querySelectorAll('#batch-table tbody tr[data-state=failed]').length === 1",
        timeout=120_000,
    )
    rows = page.locator("#batch-table tbody tr")
    assert rows.count() == 5
    bad = page.locator("#batch-table tbody tr[data-state=failed]")
    assert "bad.wav" in bad.inner_text()
    reason = bad.locator(".err").inner_text()
    assert len(reason) > 10, reason  # the server's reason, e.g. "could not decode audio…"
    stats = page.locator("#batch-stats").inner_text()
    assert "4\ndone" in stats and "1\nfailed" in stats, stats
    audio = re.search(r"([\d.]+) s / [\d.]+ s\nAudio decoded", stats)
    assert audio and float(audio.group(1)) > 3, stats  # four ~1.5 s files
    page.wait_for_function("() => document.querySelector('#batch-bar').style.width === '100%'")
    page.wait_for_timeout(400)  # the bar's width transition
    shot(page, "batch")

    # the batch survives leaving and reopening the page
    page.goto(page.base + "/ui/#history")
    page.reload()
    page.goto(page.base + "/ui/#batch")
    page.wait_for_function("() => document.querySelectorAll('#batch-table tbody tr').length === 5")

    with page.expect_download() as dl:
        page.click("#batch-export")
    data = Path(dl.value.path()).read_bytes()
    names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    want = {f"batch-{i}.{ext}" for i in range(1, 5) for ext in ("txt", "srt", "json")} | {"summary.csv"}
    assert names == want, names
    summary = zipfile.ZipFile(io.BytesIO(data)).read("summary.csv").decode("utf-8-sig")
    assert "bad.wav" in summary and "failed" in summary


def test_history_search_open_and_delete(page, server, files):
    submit_and_wait(server, files["history"])
    submit_and_wait(server, files["delete"])
    page.goto(page.base + "/ui/#history")
    page.fill("#hist-q", "elephant")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#hist-table tbody tr')].length === 1"
        " && document.querySelector('#hist-table tbody').innerText.includes('elephant.wav')"
    )
    assert "elephant" in page.locator("#hist-table tbody").inner_text().lower()
    # the detail view reuses the result component
    page.click("#hist-table tbody a.fname")
    page.wait_for_selector("#hist-detail .result .segment")
    assert "elephant" in page.locator("#hist-detail .segments").inner_text().lower()
    page.click("#hist-back")

    page.fill("#hist-q", "")
    page.wait_for_selector("#hist-table tbody tr:has-text('delete-me.wav')")
    before = page.locator("#hist-table tbody tr").count()
    # export of the selected rows is a link to the server's zip
    page.locator("#hist-table tbody tr:has-text('elephant.wav') input[type=checkbox]").check()
    assert "ids=" in page.locator("#hist-export").get_attribute("href")
    shot(page, "history")
    dialogs: list[str] = []

    def accept(d):
        dialogs.append(d.message)
        d.accept()

    page.once("dialog", accept)
    page.locator("#hist-table tbody tr:has-text('delete-me.wav') button", has_text="Delete").click()
    page.wait_for_selector("#hist-table tbody tr:has-text('delete-me.wav')", state="detached")
    assert dialogs and "delete-me.wav" in dialogs[0]
    assert page.locator("#hist-table tbody tr").count() == before - 1
    listed = httpx.get(server.url + "/api/jobs", params={"q": "deleted"}).json()["jobs"]
    assert not [j for j in listed if j["filename"] == "delete-me.wav"]


def test_vad_page_draws_segments(page, files):
    page.goto(page.base + "/ui/#vad")
    page.set_input_files("#vad-file", str(files["rt"]))
    page.wait_for_selector("[data-stat=count] strong")
    count = int(page.locator("[data-stat=count] strong").inner_text())
    assert count > 0
    assert page.locator("#vad-list li").count() == count
    assert "%" in page.locator("[data-stat=ratio]").inner_text()
    # a stricter threshold is recomputed by the server
    page.locator("#vad-threshold").fill("0.9")
    page.wait_for_function("() => document.querySelector('#vad-canvas').dataset.threshold === '0.90'")
    assert int(page.locator("[data-stat=count] strong").inner_text()) > 0
    # the canvas really has drawing on it (segment bars are the accent blue)
    blue = page.evaluate("""() => { const c = document.querySelector('#vad-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] === 37 && d[i+1] === 99 && d[i+2] === 235) n++; return n; }""")
    assert blue > 100
    shot(page, "vad")


def test_script_slipped_into_the_ui_does_not_run(browser, server):
    ctx = offline_context(browser)
    pg = ctx.new_page()
    refused: list[str] = []
    pg.on("console", lambda m: "Content Security Policy" in m.text and refused.append(m.text))
    pg.goto(server.url + "/ui/")
    pg.wait_for_selector("nav")
    # what a file name or transcript carrying markup would become if a page ever put it in as HTML
    ran = pg.evaluate(
        """() => new Promise(done => {
        const s = document.createElement('script'); s.textContent = 'window.ran = 1'; document.body.append(s);
        const d = document.createElement('div'); d.innerHTML = '<img src=x onerror="window.ran = 2">';
        // the attribute's handler would run first: the image's error is the moment to look
        d.firstChild.addEventListener('error', () => done(window.ran ?? null));
        document.body.append(d);
    })"""
    )
    assert ran is None
    assert refused, "the browser should report the refused script"
    ctx.close()
    # and no site can frame the UI or make a browser read a transcript as a page
    r = httpx.get(server.url + "/ui/")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    api = httpx.get(server.url + "/api/jobs")
    assert api.headers["x-content-type-options"] == "nosniff" and api.headers["x-frame-options"] == "DENY"


def test_every_ui_module_is_served_as_javascript(server):
    """Browsers run an ES module only when it comes as JavaScript: the page modules in
    web/lib/ and web/pages/ too."""
    web = ROOT / "tingxie" / "web"
    modules = sorted(p.relative_to(web).as_posix() for p in web.rglob("*.js"))
    assert "pages/recognise.js" in modules and "lib/api.js" in modules, modules
    for m in modules:
        r = httpx.get(f"{server.url}/ui/{m}", timeout=10)
        assert r.status_code == 200, m
        assert r.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript"), (m, r.headers)


def test_docs_render_on_an_offline_network(browser, server):
    """/docs comes from the package: with everything outside the server
    unreachable, Swagger UI lists the operations and nothing was asked of a CDN."""
    ctx = offline_context(browser, locale="en-US")
    # these tests read the per-segment view (paragraphs, the default, are tests/test_web_day.py's)
    ctx.add_init_script("localStorage.setItem('tingxie.resultView', 'segments')")
    pg = ctx.new_page()
    pg.goto(server.url + "/docs")
    pg.wait_for_selector(".opblock", timeout=30_000)
    ops = pg.locator(".opblock-summary-path").all_inner_texts()
    assert "/v1/audio/transcriptions" in ops and "/api/jobs" in ops, ops
    pg.locator(".opblock-summary-path", has_text="/v1/audio/transcriptions").first.click()
    pg.wait_for_selector(".opblock.is-open .parameters-container, .opblock.is-open .opblock-section-request-body")
    pg.wait_for_timeout(300)
    shot(pg, "docs")
    ctx.close()
    assert not ctx.outside, f"/docs asked for something outside the server: {ctx.outside}"


def test_every_error_carries_a_code_the_ui_translates(server):
    """The UI translates errors by their stable `code`; none may come without one."""
    cases = [
        ("GET", "/api/jobs/nope", 404),
        ("GET", "/api/batches/nope", 404),
        ("GET", "/api/nowhere", 404),
        ("GET", "/api/jobs?state=bogus", 400),
        ("DELETE", "/healthz", 405),
        ("POST", "/api/jobs", 400),
    ]
    ui = (ROOT / "tingxie" / "web" / "i18n.js").read_text(encoding="utf-8")
    for method, path, status in cases:
        r = httpx.request(method, server.url + path, timeout=10)
        assert r.status_code == status, (path, r.text)
        code = r.json()["error"]["code"]
        assert code, (path, r.json())
        assert f'"err.{code}"' in ui, f"{path}: the UI has no message for code {code!r}"


def test_the_ui_knows_every_reason_a_file_is_refused():
    """A failed job carries the reason from tingxie/audio.py as text; the UI matches those
    phrases to say them in Chinese (and to offer no retry). A new or reworded reason must
    be added there too, or it would reach the Chinese UI in English."""
    from tingxie import audio

    ui = (ROOT / "tingxie" / "web" / "i18n.js").read_text(encoding="utf-8").lower()
    reasons = [audio.NOT_FOUND, audio.EMPTY, audio.NOT_AUDIO, audio.CORRUPT, audio.NO_STREAM, audio.NO_SAMPLES]
    missing = [r for r in reasons if not any(f'["{phrase}"' in ui for phrase in (r.lower(), r.lower().split(" (")[0]))]
    assert not missing, f"reasons the UI cannot translate: {missing}"


def _zh(page, hash_: str) -> None:
    page.goto(page.base + "/ui/")
    page.evaluate("localStorage.setItem('tingxie.lang', 'zh')")
    page.goto(page.base + "/ui/" + hash_)
    page.reload()


HAS_ENGLISH_WORD = re.compile(r"[A-Za-z]{3,}")


def test_chinese_ui_speaks_chinese(page, server, files):
    """Server errors, language names and system figures in the Chinese UI are Chinese;
    a corrupt file's batch row offers no retry (it cannot help)."""
    _zh(page, "#recognise")
    assert page.locator("#rec-options select[name=language] option[value=en]").inner_text() == "英语"
    # a corrupt file: the server's reason, in Chinese
    page.set_input_files("#rec-file", str(files["bad"]))
    page.click("#rec-submit")
    page.wait_for_selector("#rec-error:not(.hidden)", timeout=60_000)
    err = page.locator("#rec-error").inner_text()
    assert err.startswith("识别失败") and not HAS_ENGLISH_WORD.search(err), err
    shot(page, "recognise-zh-error")

    # batch: one good file and the corrupt one
    page.goto(page.base + "/ui/#batch")
    page.select_option("#batch-options select[name=language]", "en")
    page.set_input_files("#batch-files", [str(files["batch0"]), str(files["bad"])])
    page.wait_for_function(
        "() => document.querySelectorAll('#batch-table tbody tr[data-state=done]').length === 1"
        " && document.querySelectorAll('#batch-table tbody tr[data-state=failed]').length === 1",
        timeout=120_000,
    )
    bad = page.locator("#batch-table tbody tr[data-state=failed]")
    reason = bad.locator(".err").inner_text()
    assert reason and not HAS_ENGLISH_WORD.search(reason), reason
    assert bad.locator("button").count() == 0, bad.inner_text()  # no 重试 for a corrupt file
    assert page.locator("#batch-retry").is_disabled()
    assert page.locator("#batch-table tbody tr[data-state=done] a.fname").count() == 1  # opens it, as in History
    page.wait_for_timeout(400)
    shot(page, "batch-zh")

    # history: the language column names the language, on one line
    page.goto(page.base + "/ui/#history")
    row = page.locator("#hist-table tbody tr", has_text="batch-1.wav").first
    cell = row.locator("td").nth(4)
    assert cell.inner_text() == "英语"
    assert cell.evaluate("e => getComputedStyle(e).whiteSpace") == "nowrap"
    failed = page.locator("#hist-table tbody tr", has_text="bad.wav").first.locator(".err").inner_text()
    assert not HAS_ENGLISH_WORD.search(failed), failed
    shot(page, "history-zh")

    # system: no English words in the model table's queue column
    page.goto(page.base + "/ui/#system")
    page.wait_for_selector("#sys-models tbody tr")
    queue = page.locator("#sys-models tbody tr").first.locator("td").nth(2).inner_text()
    assert "忙碌" in queue and "busy" not in queue, queue


def test_vad_page_starts_at_server_defaults_and_carries_settings(page, server, files, recognise_wav):
    from tingxie.types import VadOptions

    page.goto(page.base + "/ui/#vad")
    page.wait_for_function("() => document.querySelector('#vad-canvas').dataset.defaults === 'loaded'")
    d = VadOptions()
    assert float(page.locator("#vad-threshold").input_value()) == d.threshold
    assert int(page.locator("#vad-silence").input_value()) == d.min_silence_ms
    assert int(page.locator("#vad-pad").input_value()) == d.speech_pad_ms
    assert float(page.locator("#vad-max").input_value()) == d.max_speech_s

    # a good file, then a corrupt one: nothing of the first stays on screen
    page.set_input_files("#vad-file", str(files["rt"]))
    page.wait_for_selector("#vad-list li")
    page.set_input_files("#vad-file", str(files["bad"]))
    page.wait_for_selector("#vad-error:not(.hidden)")
    assert page.locator("#vad-list li").count() == 0
    assert page.locator("[data-stat=count]").count() == 0

    # carry a shorter silence to Recognise: the job is run with it
    page.locator("#vad-silence").fill("500")
    page.click("#vad-use")
    page.goto(page.base + "/ui/#recognise")
    note = page.locator("#rec-options .vad-note")
    assert note.is_visible() and "500" in note.inner_text()
    page.set_input_files("#rec-file", str(recognise_wav))
    page.fill("#rec-options input[name=hotwords]", "greasy  wash")  # spaces separate words too
    page.wait_for_selector("#rec-options[data-models=loaded]")
    shot(page, "recognise-vad-carried")
    page.click("#rec-submit")
    page.wait_for_function("() => /^#recognise\\/[\\w-]+/.test(location.hash)")
    job_id = page.evaluate("location.hash.split('/')[1]")
    opts = httpx.get(f"{server.url}/api/jobs/{job_id}", timeout=10).json()["options"]
    assert opts["vad_min_silence_ms"] == 500 and opts["vad_speech_pad_ms"] == d.speech_pad_ms, opts
    assert opts["hotwords"] == ["greasy", "wash"], opts  # stored as the validated list
    page.wait_for_selector(".result .segment", timeout=90_000)
    # back to the server's defaults
    page.click("#rec-again")
    page.locator("#rec-options .vad-clear").click()
    assert not note.is_visible()


def test_system_page_figures_and_clear_cache(page):
    page.goto(page.base + "/ui/#system")
    page.wait_for_selector("[data-tile=version] strong")
    assert page.locator("[data-tile=device] strong").inner_text().strip()
    page.wait_for_selector("#sys-models tbody tr")  # the models table fills after the tiles
    assert "whisper" in page.locator("#sys-models").inner_text()
    # on a CPU server there is no GPU cache: the button is not offered, the API says why
    assert page.locator("#sys-empty-cache").is_hidden()
    assert httpx.post(page.base + "/api/system/empty-cache", timeout=10).json()["freed"] is False
    page.wait_for_timeout(4500)  # two throughput samples for the chart
    shot(page, "system")


def test_realtime_dictation_from_fake_microphone(page, server):
    if not (ROOT / "tingxie" / "server" / "stream_api.py").exists():
        pytest.skip("the real-time lane (tingxie/server/stream_api.py) is not part of this build")
    page.goto(page.base + "/ui/#realtime")
    page.select_option("#rt-language", "en")
    page.click("#rt-start")
    page.wait_for_selector("#rt-status.live", timeout=30_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#rt-transcript .final')].some(p => /window/i.test(p.innerText))",
        timeout=90_000,
    )
    shot(page, "realtime")  # while listening: status, level meter, text
    page.click("#rt-stop")
    page.wait_for_function("() => document.querySelector('#rt-start').disabled === false", timeout=30_000)
    text = page.locator("#rt-transcript").inner_text().lower()
    assert "window" in text and "office" in text, text
    assert not page.locator("#rt-error").is_visible(), page.locator("#rt-error").inner_text()


def _options(select) -> list[str]:
    return select.locator("option").evaluate_all("os => os.map(o => o.value)")


def test_model_selector_offers_only_what_the_chosen_model_can_do(page, server, sensevoice):
    served = [m["id"] for m in httpx.get(server.url + "/api/models", timeout=10).json()["models"]]
    assert set(served) == {"whisper-base", sensevoice}
    page.goto(page.base + "/ui/#recognise")
    form = page.locator("#rec-options")
    page.wait_for_selector("#rec-options[data-models=loaded]")
    model, langs = page.locator("#rec-model"), form.locator("select[name=language]")
    assert _options(model) == served and model.input_value() == "whisper-base"  # the server's default
    # Whisper: French but no Cantonese; hotwords and translation offered
    assert "fr" in _options(langs) and "yue" not in _options(langs)
    hotwords, translate = form.locator("input[name=hotwords]"), form.locator("input[name=translate]")
    assert hotwords.is_visible() and translate.is_visible()
    assert "translates" in form.locator(".model-info").inner_text()

    page.select_option("#rec-model", sensevoice)
    assert _options(langs) == ["auto", "zh", "en", "yue", "ja", "ko"]  # SenseVoice's languages
    assert not hotwords.is_visible() and not translate.is_visible()  # it has neither
    assert form.locator("input[name=word_timestamps]").is_visible()  # but word times
    assert form.locator(".model-info").inner_text().startswith("sensevoice")
    shot(page, "recognise-model")
    _zh(page, "#recognise")  # the choice is remembered; the page in Chinese
    page.wait_for_selector("#rec-options[data-models=loaded]")
    assert page.locator("#rec-model").input_value() == sensevoice
    assert form.locator("select[name=language] option[value=yue]").inner_text() == "粤语"
    assert "情感与事件标签" in form.locator(".model-info").inner_text()
    shot(page, "recognise-model-zh")
    page.evaluate("localStorage.setItem('tingxie.lang', 'en')")

    # Batch and Real-time have the selector too, each with its own remembered choice
    page.goto(page.base + "/ui/#batch")
    page.reload()  # the same document until reloaded: back in English
    page.wait_for_selector("#batch-options[data-models=loaded]")
    assert _options(page.locator("#batch-model")) == served
    assert page.locator("#batch-model").input_value() == "whisper-base"
    page.select_option("#batch-model", sensevoice)
    assert "fr" not in _options(page.locator("#batch-options select[name=language]"))
    assert not page.locator("#batch-options input[name=hotwords]").is_visible()
    page.goto(page.base + "/ui/#realtime")
    page.wait_for_selector(".rt-controls[data-models=loaded]")
    assert _options(page.locator("#rt-model")) == served
    assert "yue" not in _options(page.locator("#rt-language"))
    page.select_option("#rt-model", sensevoice)
    assert "yue" in _options(page.locator("#rt-language"))


def test_the_chosen_model_transcribes(page, server, sensevoice, recognise_wav, files):
    """SenseVoice (tiny) writes "hello world." for English whatever it hears, so its text
    tells it from Whisper's; the result and the stored job name the model."""
    page.goto(page.base + "/ui/#recognise")
    page.wait_for_selector("#rec-options[data-models=loaded]")
    page.select_option("#rec-model", sensevoice)
    page.select_option("#rec-options select[name=language]", "en")
    page.set_input_files("#rec-file", str(recognise_wav))
    page.click("#rec-submit")
    page.wait_for_selector(".result .segment", timeout=90_000)
    text = page.locator(".result .segments").inner_text().lower()
    assert "hello world" in text and "suit" not in text, text
    assert "Model\nsensevoice" in page.locator(".result .meta").inner_text()
    job_id = page.evaluate("location.hash.split('/')[1]")
    assert httpx.get(f"{server.url}/api/jobs/{job_id}", timeout=10).json()["model"] == sensevoice

    # Batch: the row's job ran on the chosen model
    page.goto(page.base + "/ui/#batch")
    page.wait_for_selector("#batch-options[data-models=loaded]")
    page.select_option("#batch-model", sensevoice)
    page.select_option("#batch-options select[name=language]", "en")
    page.set_input_files("#batch-files", [str(files["batch0"])])
    page.wait_for_selector("#batch-table tbody tr[data-state=done]", timeout=60_000)
    job_id = page.locator("#batch-table tbody tr[data-state=done] a").get_attribute("href").split("/")[1]
    job = httpx.get(f"{server.url}/api/jobs/{job_id}", timeout=10).json()
    assert job["model"] == sensevoice and "hello world" in job["result"]["text"].lower(), job


def test_realtime_uses_the_chosen_model(page, server, sensevoice):
    if not (ROOT / "tingxie" / "server" / "stream_api.py").exists():
        pytest.skip("the real-time lane (tingxie/server/stream_api.py) is not part of this build")
    sessions: list[str] = []

    def watch(ws):
        def frame(data):
            if isinstance(data, str) and '"ready"' in data:
                sessions.append(json.loads(data)["session_id"])

        ws.on("framereceived", frame)

    page.on("websocket", watch)
    page.goto(page.base + "/ui/#realtime")
    page.wait_for_selector(".rt-controls[data-models=loaded]")
    page.select_option("#rt-model", sensevoice)
    page.select_option("#rt-language", "en")
    page.click("#rt-start")
    page.wait_for_selector("#rt-status.live", timeout=30_000)
    assert page.locator("#rt-model").is_disabled()  # a session keeps its model
    page.wait_for_function(
        "() => [...document.querySelectorAll('#rt-transcript .final')].some(p => /hello world/i.test(p.innerText))",
        timeout=60_000,
    )
    page.click("#rt-stop")
    page.wait_for_function("() => document.querySelector('#rt-start').disabled === false", timeout=30_000)
    assert sessions, "no ready message on the WebSocket"
    job = httpx.get(f"{server.url}/api/jobs/{sessions[-1]}", timeout=10).json()
    assert job["model"] == sensevoice, job


def test_narrow_window_keeps_navigation_usable(page):
    page.set_viewport_size({"width": 420, "height": 800})
    page.goto(page.base + "/ui/#recognise")
    assert page.locator(".tabs a[data-page=system]").is_visible() or page.locator(".tabs").evaluate(
        "e => e.scrollWidth > e.clientWidth"
    )
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"page scrolls sideways by {overflow}px at 420px"
    # keyboard: Tab reaches the drop zone, Enter would open the picker
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "recognise-narrow.png"))


def test_api_key_prompt_then_retry(page, server):
    """Runs last: creating a key switches the server to keys-required."""
    out = subprocess.run(
        [sys.executable, "-m", "tingxie", "keys", "create", "ui-test", "--admin"],
        capture_output=True,
        text=True,
        env={**os.environ, "TINGXIE_HOME": str(server.home)},
        cwd=str(ROOT),
        check=True,
    ).stdout
    secret = re.search(r"(tx-\S+)", out).group(1)
    time.sleep(2.1)  # the server caches "keys exist?" for 2 s
    _zh(page, "#system")
    page.wait_for_selector("#key-dialog[open]")
    reason = page.locator("#key-reason").inner_text()
    assert reason and not HAS_ENGLISH_WORD.search(reason.replace("API", "")), reason  # not "missing API key: send …"
    page.fill("#key-input", secret)
    page.click("#key-dialog button[type=submit]")
    page.wait_for_selector("[data-tile=keys] strong")
    assert page.locator("[data-tile=keys] strong").inner_text() == "需要"
    assert page.evaluate("localStorage.getItem('tingxie.apiKey')") == secret
