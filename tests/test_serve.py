"""`jax-inpaint serve`: the page driven in a real browser (headless Chromium, the system's, through
selenium and chromedriver), the API's answers to bad input, and the queue (one job at a time, queue
positions, a closed page cancels its job, a cancelled run stops between chunks).

One server for the whole file, on a free port, with the shipped demo models and one config (the demo
preset with 8 steps in chunks of 4) and K = 3 everywhere, so the file compiles one search. The browser
tests skip when Chromium, chromedriver or selenium is missing, unless JAX_INPAINT_REQUIRE_BROWSER=1
(.ci/run sets it), where they fail instead.
"""
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from jax_inpaint.demo import faces
from jax_inpaint.demo.run import DEMO_OPTIONS
from jax_inpaint.serve import engine as E
from jax_inpaint.serve.jobs import CANCELLED, DONE, FINAL
from jax_inpaint.serve.server import App, bind

K = 3
STEPS, CHUNK = 8, 4
WAIT = 240  # seconds: generous (the first job compiles the search); every wait ends as soon as its event happens
FACE_DATA_SEED = 13  # held-out renders (as tests/test_demo.py)


def _face(index: int = 0) -> np.ndarray:
    return faces.render(faces.sample_spec(faces.face_rng(FACE_DATA_SEED, index)), 32)


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _data_url(img: np.ndarray) -> str:
    return E.data_url(img)


def _hole(y0=21, y1=25, x0=11, x1=21) -> np.ndarray:
    hole = np.zeros((32, 32), bool)
    hole[y0:y1, x0:x1] = True
    return hole


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    config = tmp_path_factory.mktemp("serve") / "serve-test.yaml"
    config.write_text(yaml.safe_dump(dict(DEMO_OPTIONS, steps=STEPS, chunk=CHUNK)))
    engine = E.Engine("demo-faces", classifier="demo-faces", config=str(config), max_seeds=4)
    app = App(engine, bind("127.0.0.1", 0), heartbeat=0.2).start()
    yield app
    app.close()


@pytest.fixture
def runs(app, monkeypatch):
    """Every Engine.run of the server, recorded: (job seeds, start, end, previews seen by the job)."""
    record = []
    original = app.engine.run

    def run(spec, *, should_stop, progress, preview):
        entry = {"seeds": spec.seeds, "start": time.monotonic(), "previews": []}
        record.append(entry)

        def seen(first, pictures):
            preview(first, pictures)
            with app.worker.changed:
                job = next(j for j in app.worker.jobs.values() if j.spec is spec)
                entry["previews"].append((job.state, [im is not None for im in job.images]))

        try:
            return original(spec, should_stop=should_stop, progress=progress, preview=seen)
        finally:
            entry["end"] = time.monotonic()

    monkeypatch.setattr(app.engine, "run", run)
    return record


def _request(app, method, path, body=None, raw: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=WAIT)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    return conn, conn.getresponse()


def _call(app, method, path, body=None, raw=None):
    conn, r = _request(app, method, path, body, raw)
    try:
        return r.status, r.read()
    finally:
        conn.close()


def _job_body(hole=None, **kw):
    hole = _hole() if hole is None else hole
    body = {"image": _data_url(_face()), "mask": _data_url(np.where(hole, 255, 0).astype(np.uint8)), "k": K, "seed": 0}
    body.update(kw)
    return body


class Stream:
    """A job's streamed response, read line by line."""

    def __init__(self, app, body):
        self.conn, self.r = _request(app, "POST", "/api/jobs", body)
        assert self.r.status == 200, self.r.read()
        self.seen: list[dict] = []

    def next(self) -> dict:
        while True:
            line = self.r.readline()
            assert line, "the stream ended before the job did"
            if line.strip():
                self.seen.append(json.loads(line))
                return self.seen[-1]

    def until_final(self) -> list[dict]:
        """Every update read, up to the final one."""
        while not self.seen or self.seen[-1]["state"] not in FINAL:
            self.next()
        return self.seen

    def close(self):
        self.r.close()
        self.conn.close()


def _wait_for(app, condition, what: str):
    """Wait (on the worker's change notifications, not by sleeping) until condition() holds."""
    deadline = time.monotonic() + WAIT
    with app.worker.changed:
        while not condition():
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}"
            app.worker.changed.wait(min(left, 1.0))


# ---------------------------------------------------------------------------------------------
# Bad input: one line on the page, the server keeps serving.

BAD_JOBS = [
    ("no hole", dict(hole=np.zeros((32, 32), bool)), E.NO_HOLE),
    ("all hole", dict(hole=np.ones((32, 32), bool)), E.ALL_HOLE),
    ("unknown attribute", dict(attributes={"Wearing_Cape": 1}),
     "unknown attribute 'Wearing_Cape': the classifier knows Bald,"),
    ("attribute above 1", dict(attributes={"Smiling": 2}), "attribute Smiling must be in [0, 1] (got 2)"),
    ("K text", dict(k="abc"), "K (completions) must be a whole number (got 'abc')"),
    ("K zero", dict(k=0), "K (completions) must be in [1, 4] (got 0)"),
    ("K over the limit", dict(k=5), "K (completions) must be in [1, 4] (got 5)"),
    ("K empty", dict(k=""), "K (completions): empty"),
    ("steps fraction", dict(steps="2.5"), "steps must be a whole number (got 2.5)"),
    ("steps negative", dict(steps=-3), "steps must be in [1, 1,000,000] (got -3)"),
    ("steps nan", dict(steps="nan"), "steps must be a finite number"),
    ("latent space", dict(space="z"), "latent space must be one of w, w+ (got 'z')"),
    ("noise", dict(noise="loud"), "noise must be one of const, random, optimize (got 'loud')"),
    ("preset", dict(preset="../../etc/passwd"), "unknown preset '../../etc/passwd'; presets: serve-test.yaml,"),
    ("prompt without CLIP", dict(prompts="a smile"), "prompts need a CLIP model: start the server with --clip"),
    ("seed", dict(seed=-1), "first seed must be in [0, "),
    ("image not a data URL", dict(image="hello"), "the image: not an image (expected a base64 data: URL)"),
    ("image damaged", dict(image="data:image/png;base64,AAA*"), "the image: the data URL is damaged"),
    ("image not an image", dict(image="data:image/png;base64," + "aGVsbG8="), "the image: not a readable image"),
    ("mask of another size", dict(mask=_data_url(np.full((16, 16), 255, np.uint8))),
     "the mask is 16x16 pixels, the image 32x32: paint the hole on this image again"),
]


@pytest.mark.parametrize("case", BAD_JOBS, ids=[c[0] for c in BAD_JOBS])
def test_bad_jobs_are_one_line_messages(app, case):
    _, kw, message = case
    status, data = _call(app, "POST", "/api/jobs", _job_body(**kw))
    answer = json.loads(data)
    assert status == 400 and answer["error"].startswith(message), answer
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]
    assert not app.worker.waiting  # nothing was queued


def test_bad_requests_and_uploads(app):
    status, data = _call(app, "POST", "/api/image?name=notes.png", raw=b"not an image at all")
    assert status == 400 and json.loads(data)["error"].startswith("notes.png: not a readable image (")
    status, data = _call(app, "POST", "/api/image?name=empty.png", raw=b"")
    assert (status, json.loads(data)["error"]) == (400, "empty.png: the file is empty")
    status, data = _call(app, "POST", "/api/jobs", raw=b"{not json")
    assert (status, json.loads(data)["error"]) == (400, "the request is not valid JSON")
    status, data = _call(app, "GET", "/api/mask?name=ears")
    assert status == 400 and json.loads(data)["error"].startswith("unknown preset mask 'ears'; presets: center,")
    status, data = _call(app, "POST", "/api/sample", {"source": "renderer", "seed": "x"})
    assert (status, json.loads(data)["error"]) == (400, "seed must be a whole number (got 'x')")
    assert _call(app, "GET", "/api/jobs/1-nosuchjob")[0] == 404
    assert _call(app, "GET", "/no/such/page")[0] == 404
    assert _call(app, "POST", "/api/info")[0] == 405
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=30)  # DNS rebinding: a foreign Host
    conn.request("GET", "/api/info", headers={"Host": f"evil.example:{app.port}"})
    assert conn.getresponse().status == 403
    conn.close()
    # ... and the server still serves
    status, data = _call(app, "GET", "/api/info")
    assert status == 200 and json.loads(data)["labels"] == list(faces.ATTRIBUTES)


def test_uploads_samples_and_preset_masks(app):
    big = np.repeat(np.repeat(_face(), 3, 0), 2, 1)  # 96 x 64: centre-cropped and resized to 32 x 32
    status, data = _call(app, "POST", "/api/image?name=face.png", raw=_png(big))
    answer = json.loads(data)
    assert status == 200 and answer["notices"] == [
        "the image is 64x96: centre-cropped to 64x64 and resized to the generator's 32x32"]
    assert _decode(E.decode_data_url(answer["image"], "x")).shape == (32, 32, 3)
    for source in ("generator", "renderer"):
        status, data = _call(app, "POST", "/api/sample", {"source": source, "seed": 5})
        img = _decode(E.decode_data_url(json.loads(data)["image"], "x"))
        assert status == 200 and img.shape == (32, 32, 3) and img.std() > 10
    answer = json.loads(_call(app, "POST", "/api/sample", {"source": "renderer", "seed": 5})[1])
    rendered = _decode(E.decode_data_url(answer["image"], "x"))
    assert np.array_equal(rendered, faces.render(faces.sample_spec(faces.face_rng(7, 5)), 32))  # held-out demo faces
    for name in app.info["mask_presets"]:
        answer = json.loads(_call(app, "GET", f"/api/mask?name={name}&seed=3")[1])
        hole = _decode(E.decode_data_url(answer["mask"], "x"))[..., 0] >= 128
        assert 0 < hole.mean() < 1 and abs(hole.mean() - answer["ratio"]) < 1e-9, name


# ---------------------------------------------------------------------------------------------
# The queue.

def test_one_job_at_a_time_in_order_with_queue_positions_and_previews(app, runs):
    app.worker.device.acquire()  # the device is busy: the first job waits for it, the others in the queue
    streams = []
    try:
        streams.append(Stream(app, _job_body()))
        first = streams[0].next()
        if first["state"] == "queued":  # not taken by the worker yet
            first = streams[0].next()
        assert first["state"] == "starting" and first["ahead"] == 0
        for ahead in (1, 2):
            streams.append(Stream(app, _job_body(seed=10 * ahead)))
            snap = streams[-1].next()
            assert (snap["state"], snap["ahead"]) == ("queued", ahead)
    finally:
        app.worker.device.release()
    history = [s.until_final() for s in streams]
    for s in streams:
        s.close()
    for snaps in history:
        assert snaps[-1]["state"] == DONE, snaps[-1]
        assert [s["done"] for s in snaps if s["state"] == "running"][-1] == STEPS
        assert all(url for url in snaps[-1]["images"]) and len(snaps[-1]["images"]) == K
    # the third job saw its place in the queue move up: 2 jobs before it, then 1, then it ran
    aheads = [s["ahead"] for s in history[2] if s["state"] == "queued"]
    assert aheads[0] == 2 and aheads[-1] == 1 and aheads == sorted(aheads, reverse=True)
    # one at a time, in order
    assert [r["seeds"][0] for r in runs] == [0, 10, 20]
    assert all(a["end"] <= b["start"] for a, b in zip(runs, runs[1:]))
    # completions were shown while the job was still running (after a chunk), before the final ones
    for r in runs:
        assert len(r["previews"]) == STEPS // CHUNK
        assert all(p == ("running", [True] * K) for p in r["previews"])


def test_a_closed_page_cancels_its_job_and_frees_the_device(app, runs):
    app.worker.device.acquire()
    try:
        running = Stream(app, _job_body())  # taken by the worker: waits for the device
        snap = running.next()
        if snap["state"] == "queued":  # not taken by the worker yet
            snap = running.next()
        assert snap["state"] == "starting"
        job_running = app.worker.get(snap["id"])
        waiting = Stream(app, _job_body(seed=10))
        snap = waiting.next()
        assert (snap["state"], snap["ahead"]) == ("queued", 1)
        job_waiting = app.worker.get(snap["id"])
        waiting.close()  # a waiting job's page goes away: the job leaves the queue
        _wait_for(app, lambda: job_waiting.state == CANCELLED, "the waiting job to be dropped")
        running.close()  # the page of the job next on the device goes away
        _wait_for(app, lambda: job_running.cancelled, "the closed page to be noticed")
    finally:
        app.worker.device.release()
    _wait_for(app, lambda: job_running.state == CANCELLED, "the job to end")
    assert "closed" in job_running.cancel_reason and "closed" in job_waiting.cancel_reason
    assert not runs  # neither job ran
    # the device is free: the next job runs
    s = Stream(app, _job_body(seed=20))
    assert s.until_final()[-1]["state"] == DONE
    s.close()


def test_a_cancelled_run_stops_between_chunks(app):
    spec = app.engine.parse_job(_job_body())
    asked, done = [], []

    def should_stop():
        asked.append(1)
        return len(asked) >= 2  # before the first chunk: go on; after it: stop

    with pytest.raises(E.Stopped):
        app.engine.run(spec, should_stop=should_stop, progress=lambda d, t: done.append((d, t)), preview=None)
    assert done == [(0, STEPS), (CHUNK, STEPS)]


# ---------------------------------------------------------------------------------------------
# The command.

def test_serve_command(tmp_path):
    import socket

    with socket.socket() as s:  # a port in use is one line, before any model loads
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        from jax_inpaint.cli import main

        res = CliRunner().invoke(main, ["serve", "-g", "demo-faces", "--port", str(port)])
    assert res.exit_code == 2 and res.output.startswith(f"Error: --port {port}: 127.0.0.1:{port} is in use"), res.output
    res = CliRunner().invoke(main, ["serve", "-g", "demo-faces", "--port", "0", "--config", str(tmp_path / "no.yaml")])
    assert res.exit_code == 2 and "no such config file or preset" in res.output, res.output
    # --help imports neither jax nor the page's modules
    code = ("import sys\nfrom jax_inpaint.cli import main\ntry:\n    main(['serve', '--help'])\n"
            "except SystemExit:\n    pass\nheavy = ('jax', 'flax', 'jax_inpaint.serve.server')\n"
            "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stderr.strip().splitlines()[-1] == "[]", p.stderr
    assert "--generator" in p.stdout


# ---------------------------------------------------------------------------------------------
# The page, in headless Chromium.

def _browser_or_skip():
    required = os.environ.get("JAX_INPAINT_REQUIRE_BROWSER") == "1"

    def missing(what):
        if required:
            pytest.fail(f"{what} (JAX_INPAINT_REQUIRE_BROWSER=1)")
        pytest.skip(what)

    try:
        from selenium import webdriver
    except ImportError:
        missing("selenium is not installed (pip install -e '.[test]')")
    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        missing("Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    return webdriver, binary, driver


def start_browser(width=1400, height=1000):
    """Headless Chromium (the system's: nothing is downloaded; Selenium Manager is skipped)."""
    webdriver, binary, driver = _browser_or_skip()
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--force-device-scale-factor=1", "--no-first-run",
                "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


@pytest.fixture(scope="module")
def browser():
    driver = start_browser()
    yield driver
    driver.quit()


def _until(driver, condition, what: str, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message=what)


def open_page(driver, app):
    driver.get(app.url)
    _until(driver, lambda d: d.execute_script("return document.body.dataset.ready === '1'"), "the page to load")


def load_image(driver, path):
    driver.find_element("id", "file").send_keys(str(path))
    _until(driver, lambda d: d.execute_script(
        "const p = document.getElementById('photo');"
        " return !document.getElementById('stage').classList.contains('empty') && p.complete && p.naturalWidth > 0"),
        "the image to load")


def paint_stroke(driver, points):
    """A stroke with the real mouse: press at points[0], move through the others, release (offsets in
    CSS pixels from the canvas's centre)."""
    from selenium.webdriver import ActionChains

    canvas = driver.find_element("id", "mask")
    chain = ActionChains(driver, duration=20).move_to_element_with_offset(canvas, *points[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        chain = chain.move_by_offset(x1 - x0, y1 - y0)
    chain.release().perform()
    _until(driver, lambda d: d.find_element("id", "hole-info").text.startswith("hole:"), "the hole to be painted")


def run_inpaint(driver, k):
    driver.find_element("id", "inpaint").click()

    def finished(d):
        state = d.find_element("id", "status").get_attribute("data-state")
        if state in ("error", "cancelled"):
            raise AssertionError(f"the job ended {state}: {d.find_element('id', 'error').text}")
        return state == "done" and len(d.find_elements("css selector", "#results img.completion[data-final='1']")) == k

    _until(driver, finished, f"{k} completions")


def _set(driver, element_id, value):
    el = driver.find_element("id", element_id)
    el.clear()
    el.send_keys(str(value))


def test_page_inpaints_a_painted_hole(app, browser, tmp_path):
    face = _face(1)
    path = tmp_path / "face.png"
    path.write_bytes(_png(face))
    open_page(browser, app)
    assert browser.find_element("id", "preset").get_attribute("value") == "serve-test.yaml"
    assert browser.find_element("id", "steps").get_attribute("value") == str(STEPS)
    load_image(browser, path)
    _set(browser, "k", K)
    # the stage shows 32 pixels over 352 CSS pixels (11 a pixel): a stroke across the mouth
    paint_stroke(browser, [(-55, 80), (-20, 84), (20, 84), (55, 80)])
    run_inpaint(browser, K)

    srcs = [img.get_attribute("src") for img in browser.find_elements("css selector", "#results img.completion")]
    got = np.stack([_decode(urllib.request.urlopen(src, timeout=60).read()) for src in srcs])
    href = browser.find_element("id", "download").get_attribute("href")
    assert browser.find_element("id", "download").is_displayed()
    bundle = zipfile.ZipFile(io.BytesIO(urllib.request.urlopen(href, timeout=60).read()))
    names = set(bundle.namelist())
    assert {"grid.png", "latents.npz", "loss.png", "metrics.json", "input.png", "mask.png", "request.json"} <= names
    assert {f"completion_{s}.png" for s in range(K)} <= names and {f"raw_{s}.png" for s in range(K)} <= names
    hole = _decode(bundle.read("mask.png"))[..., 0] >= 128  # the mask as the page sent it
    assert np.array_equal(_decode(bundle.read("input.png")), face)
    assert np.array_equal(got, np.stack([_decode(bundle.read(f"completion_{s}.png")) for s in range(K)]))

    # the stroke: about 3 rows across the mouth, where it was painted
    rows, cols = np.nonzero(hole)
    assert 20 <= rows.min() and rows.max() <= 26 and cols.min() <= 12 and cols.max() >= 19 and 20 <= hole.sum() <= 80
    # the known pixels are kept (beyond the 1-pixel feathered seam: exactly) ...
    from scipy.ndimage import distance_transform_edt

    far = distance_transform_edt(~hole) >= 2
    assert np.array_equal(got[:, far], np.broadcast_to(face[far], got[:, far].shape))
    # ... and the hole is filled K different ways, none of them the input
    inside = got[:, hole].astype(int)
    for i in range(K):
        assert np.abs(inside[i] - face[hole]).mean() > 0
        for j in range(i):
            assert np.abs(inside[i] - inside[j]).max() > 0, (i, j)

    # click a completion: the viewer shows it large beside the input
    browser.find_elements("css selector", "#results .tile")[1].click()
    viewer = browser.find_element("id", "viewer")
    _until(browser, lambda d: viewer.is_displayed(), "the viewer")
    assert browser.find_element("id", "viewer-output").get_attribute("src") == srcs[1]
    assert browser.find_element("id", "viewer-caption").text.startswith("seed 1")


def test_page_reports_bad_input(app, browser, tmp_path):
    open_page(browser, app)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    browser.find_element("id", "file").send_keys(str(bad))
    error = browser.find_element("id", "error")
    _until(browser, lambda d: error.is_displayed(), "the upload's error")
    assert error.text.startswith("notes.png: not a readable image")
    browser.find_element("id", "sample-renderer").click()  # a face, but no hole painted
    _until(browser, lambda d: not error.is_displayed() and d.execute_script(
        "return document.getElementById('photo').naturalWidth === 32"), "the sampled face")
    browser.find_element("id", "inpaint").click()
    _until(browser, lambda d: error.is_displayed(), "the empty mask's error")
    assert error.text == E.NO_HOLE
    assert browser.find_element("id", "inpaint").is_enabled()  # the page (and the server) go on
    assert _call(app, "GET", "/api/info")[0] == 200


def test_page_cancel_stops_its_job(app, browser, runs):
    open_page(browser, app)
    browser.find_element("id", "sample-renderer").click()
    _until(browser, lambda d: d.execute_script("return document.getElementById('photo').naturalWidth === 32"),
           "the sampled face")
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "mask-preset")).select_by_value("center")  # a preset hole
    _until(browser, lambda d: d.find_element("id", "hole-info").text.startswith("hole: 256 pixels"), "the preset hole")
    app.worker.device.acquire()  # the device is busy: the job waits for it
    try:
        browser.find_element("id", "inpaint").click()
        status = browser.find_element("id", "status")
        _until(browser, lambda d: status.get_attribute("data-state") in ("queued", "starting"), "the job to wait")
        job = _newest_job(app)
        browser.find_element("id", "cancel").click()
        _until(browser, lambda d: status.get_attribute("data-state") == "cancelled", "the page to cancel")
        _wait_for(app, lambda: job.cancelled, "the server to cancel the job")
    finally:
        app.worker.device.release()
    _wait_for(app, lambda: job.state == CANCELLED, "the job to end")
    assert not runs and browser.find_element("id", "inpaint").is_enabled()


def _newest_job(app):
    with app.worker.changed:
        return next(reversed(app.worker.jobs.values()))
