"""The HTTP side of `jax-inpaint serve`: a small threaded server (the standard library's http.server, no
dependency) with one page (static/index.html, app.js, style.css) and a JSON API.

    GET  /                               the page
    GET  /static/<file>                  its script and style sheet
    GET  /api/info                       the models, labels, presets and limits the page builds its form from
    GET  /api/mask?name=N&seed=S         a preset hole, as a PNG data URL (white = hole)
    POST /api/image?name=FILE            an image file (the body) -> at the generator's size, as a data URL
    POST /api/sample                     {"source": "generator" | "renderer", "seed": S} -> a face, as a data URL
    POST /api/jobs                       a job (JSON, see Engine.parse_job) -> its updates, streamed
    GET  /api/jobs/<id>                  the job's state (JSON)
    GET  /api/jobs/<id>/images/<i>.png   completion i (the newest picture: intermediate, then final)
    GET  /api/jobs/<id>/zip              every file of the result as one zip
    POST /api/jobs/<id>/cancel

A job's updates are the response to the POST that asked for it (newline-delimited JSON: one line per
change of the job, an empty line as a heartbeat), not a stream of their own, so the job lives exactly as
long as that request: a page that is closed, reloaded or cancels (it aborts the request) closes the
connection, the server notices within a heartbeat (the socket reads end-of-file, or a write fails) and
cancels the job; the device is never left busy for nobody (jax_inpaint.serve.jobs).

Bad input is a 400 with {"error": the InputError's one line}; any other failure is logged here with its
traceback, and the page gets one line. Bound to a loopback address (the default), the server answers only
requests whose Host is a loopback name (a web page elsewhere cannot reach it by DNS rebinding).
"""
from __future__ import annotations

import json
import logging
import mimetypes
import pathlib
import re
import select
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jax_inpaint.errors import InputError
from jax_inpaint.serve.engine import MAX_UPLOAD_BYTES, Engine, data_url, read_upload, shown_name, to_json
from jax_inpaint.serve.jobs import FINAL, INTERNAL_ERROR, Worker

log = logging.getLogger("jax_inpaint.serve")

STATIC = pathlib.Path(__file__).resolve().parent / "static"
PAGES = {"index.html", "app.js", "style.css"}
HEARTBEAT = 1.0  # seconds between heartbeats of a job's stream (how soon a closed page is noticed)
MAX_JSON_BYTES = 3 * MAX_UPLOAD_BYTES  # a job: the image and the mask as base64 data URLs
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
DISCONNECTED = "the page closed its request (closed, reloaded or cancelled)"


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    app: "App"


class _Server6(_Server):
    address_family = socket.AF_INET6


def bind(host: str = "127.0.0.1", port: int = 7860) -> _Server:
    """The listening server (no app yet): a port in use is an InputError before any model loads."""
    import errno

    cls = _Server6 if ":" in host else _Server
    try:
        return cls((host, port), _Handler)
    except socket.gaierror as e:
        raise InputError(f"--host {host}: not a name or address to listen on ({e.strerror or e})") from None
    except OSError as e:
        if e.errno == errno.EADDRNOTAVAIL:
            raise InputError(f"--host {host}: not an address of this machine") from None
        what = ("is in use (another server?)" if e.errno == errno.EADDRINUSE else
                "needs special permission" if e.errno == errno.EACCES else f"cannot be used ({e.strerror or e})")
        raise InputError(f"--port {port}: {host}:{port} {what}: choose another --port (0: any free port)") from None


def _is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


class App:
    """The engine, its worker and the bound server: `serve_forever()` (the command) or `start()` (a thread,
    for tests), then `close()`."""

    def __init__(self, engine: Engine, server: _Server, *, heartbeat: float = HEARTBEAT):
        self.engine = engine
        self.worker = Worker(engine)
        self.server = server
        self.heartbeat = heartbeat
        self.info = engine.info()
        server.app = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def host(self) -> str:
        return self.server.server_address[0]

    @property
    def url(self) -> str:
        host = self.host
        host = "localhost" if host in ("", "0.0.0.0", "::") else f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.5)

    def start(self) -> "App":
        self._thread = threading.Thread(target=self.serve_forever, name="jax-inpaint-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
        self.worker.close()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    server_version = "jax-inpaint"
    server: _Server

    ROUTES = [
        ("GET", r"/", "page"),
        ("GET", r"/static/([\w.-]+)", "static"),
        ("GET", r"/api/info", "info"),
        ("GET", r"/api/mask", "mask"),
        ("POST", r"/api/image", "image"),
        ("POST", r"/api/sample", "sample"),
        ("POST", r"/api/jobs", "submit"),
        ("GET", r"/api/jobs/([\w-]+)", "job"),
        ("GET", r"/api/jobs/([\w-]+)/images/(\d{1,6})\.png", "job_image"),
        ("GET", r"/api/jobs/([\w-]+)/zip", "job_zip"),
        ("POST", r"/api/jobs/([\w-]+)/cancel", "job_cancel"),
    ]

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    @property
    def app(self) -> App:
        return self.server.app

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(url.query)
        try:
            if not self._host_allowed():
                raise HTTPError(403, "this server answers only requests to a loopback name (localhost)")
            for m, pattern, name in self.ROUTES:
                match = re.fullmatch(pattern, url.path)
                if match and m == method:
                    getattr(self, f"_{name}")(*match.groups())
                    return
            known = any(re.fullmatch(p, url.path) for _, p, _ in self.ROUTES)
            raise HTTPError(405 if known else 404, f"{method} {url.path}: {'not allowed' if known else 'no such page'}")
        except InputError as e:
            self._json({"error": str(e)}, 400)
        except HTTPError as e:
            self._json({"error": str(e)}, e.status)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # noqa: BLE001 (the server keeps serving)
            log.exception("%s %s failed", method, url.path)
            self._json({"error": INTERNAL_ERROR.format(type(e).__name__)}, 500)

    def _host_allowed(self) -> bool:
        if not _is_loopback(self.app.host):
            return True
        host = self.headers.get("Host", "")
        name = urllib.parse.urlsplit(f"//{host}").hostname or ""
        return _is_loopback(name)

    # Responses ------------------------------------------------------------------------------------
    def _send(self, data: bytes, content_type: str, status: int = 200, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, data, status: int = 200) -> None:
        try:
            self._send(to_json(data), "application/json; charset=utf-8", status)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _body(self, limit: int) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            raise HTTPError(411, "the request needs a Content-Length")
        n = int(length)
        if n > limit:
            raise HTTPError(413, f"the upload is larger than {limit >> 20} MB")
        return self.rfile.read(n)

    def _json_body(self):
        try:
            return json.loads(self._body(MAX_JSON_BYTES))
        except (ValueError, UnicodeDecodeError):
            raise InputError("the request is not valid JSON") from None

    def _arg(self, name: str, default=None):
        values = self.query.get(name)
        return values[0] if values else default

    # The page ------------------------------------------------------------------------------------
    def _page(self) -> None:
        self._static("index.html")

    def _static(self, name: str) -> None:
        if name not in PAGES:
            raise HTTPError(404, f"/static/{name}: no such file")
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._send((STATIC / name).read_bytes(), f"{kind}; charset=utf-8")

    def _info(self) -> None:
        self._json(self.app.info)

    def _mask(self) -> None:
        hole = self.app.engine.preset_mask(self._arg("name", ""), self._arg("seed", "0"))
        from jax_inpaint.images import mask_to_u8

        self._json({"mask": data_url(mask_to_u8(hole)), "ratio": float(hole.mean())})

    def _image(self) -> None:
        name = self._arg("name", "the upload")
        img = read_upload(self._body(MAX_UPLOAD_BYTES), name)
        img, notices = self.app.engine.fit_image(img, shown_name(name))
        self._json({"image": data_url(img), "notices": notices})

    def _sample(self) -> None:
        body = self._json_body()
        if not isinstance(body, dict):
            raise InputError("the request must be a JSON object")
        img = self.app.engine.sample(body.get("source", "generator"), body.get("seed", 0))
        self._json({"image": data_url(img)})

    # Jobs -----------------------------------------------------------------------------------------
    def _get_job(self, job_id: str):
        job = self.app.worker.get(job_id)
        if job is None:
            raise HTTPError(404, "no such job (the server keeps the last finished ones only)")
        return job

    def _job(self, job_id: str) -> None:
        job = self._get_job(job_id)
        with self.app.worker.changed:
            snap = job.snapshot()
        self._json(snap)

    def _job_image(self, job_id: str, index: str) -> None:
        data = self._get_job(job_id).png(int(index), self.app.worker.changed)
        if data is None:
            raise HTTPError(404, "no such picture (yet)")
        self._send(data, "image/png")

    def _job_zip(self, job_id: str) -> None:
        job = self._get_job(job_id)
        if job.outcome is None:
            raise HTTPError(404, "the job has not finished")
        self._send(job.outcome.zip, "application/zip",
                   headers={"Content-Disposition": f'attachment; filename="jax-inpaint-{job.id}.zip"'})

    def _job_cancel(self, job_id: str) -> None:
        job = self._get_job(job_id)
        self.app.worker.cancel(job, "cancelled on the page")
        self._json({"cancelled": True})

    def _submit(self) -> None:
        """Check and queue a job, then stream its updates until it ends or the page goes away."""
        spec = self.app.engine.parse_job(self._json_body())  # bad input: a 400 now, nothing queued
        worker = self.app.worker
        job = worker.submit(spec)
        log.info("job %s: %d completions, %d steps (%s)", job.id, len(spec.seeds), spec.cfg.steps, spec.preset)
        started, ended = time.monotonic(), False
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            seen = -1
            while True:
                snap = worker.wait(job, seen, self.app.heartbeat)
                if self._peer_closed():
                    return
                if snap is None:
                    self.wfile.write(b"\n")  # a heartbeat: fails once the page has gone
                    continue
                seen = snap["version"]
                self.wfile.write(to_json(snap) + b"\n")
                if snap["state"] in FINAL:
                    ended = True
                    log.info("job %s: %s after %.1f s", job.id, snap["state"], time.monotonic() - started)
                    return
        except OSError:  # the page went away while we wrote
            return
        finally:
            if not ended:
                worker.cancel(job, DISCONNECTED)

    def _peer_closed(self) -> bool:
        """Whether the page closed the connection (it sends nothing after its request: readable = gone)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


def serve(generator, *, classifier=None, clip=None, config=None, class_idx: int | None = None,
          host: str = "127.0.0.1", port: int = 7860, max_seeds: int | None = None, align: bool = False,
          face: int | None = None, echo=print) -> None:
    """`jax-inpaint serve`: bind the port, load the models once, serve the page until Ctrl-C."""
    from jax_inpaint.serve.engine import DEFAULT_MAX_SEEDS

    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    server = bind(host, port)
    app = None
    try:
        echo("loading the models ...")
        engine = Engine(generator, classifier=classifier, clip=clip, config=config, class_idx=class_idx,
                        max_seeds=DEFAULT_MAX_SEEDS if max_seeds is None else max_seeds, align=align, face=face)
        app = App(engine, server)
        echo(f"jax-inpaint serve: open {app.url} in a browser (Ctrl-C stops the server)")
        app.serve_forever()
    except KeyboardInterrupt:
        echo("stopped")
    finally:
        if app is not None:
            app.close()
        else:
            server.server_close()
