"""One job at a time on the device: the queue of inpainting jobs and the one worker thread that runs them.

A job is submitted already checked (engine.JobSpec) and waits in a first-in first-out queue; each waiting
job knows how many jobs will run before it. The worker takes one job at a time and holds `Worker.device`
while it runs. A job is cancelled when the page that asked for it goes away (its streamed response is
closed: jax_inpaint.serve.server) or asks to cancel: a waiting job is dropped, a running one stops
between two chunks of steps (Search.run's `should_stop`), so a closed browser never leaves the device busy.

Every change of a job bumps its `version` and wakes whoever waits on `Worker.changed`; `snapshot` is what
the page is sent (state, queue position, steps done, image URLs, the zip when done).
"""
from __future__ import annotations

import collections
import itertools
import logging
import secrets
import threading

import numpy as np

from jax_inpaint.errors import InputError
from jax_inpaint.serve.engine import Engine, JobSpec, Outcome, Stopped, png_bytes

log = logging.getLogger("jax_inpaint.serve")

QUEUED, STARTING, RUNNING, DONE, ERROR, CANCELLED = "queued", "starting", "running", "done", "error", "cancelled"
FINAL = (DONE, ERROR, CANCELLED)
KEEP_FINISHED = 16  # finished jobs kept (their completions and zip) for the pages that show them ...
KEEP_BYTES = 1 << 30  # ... while their zips take at most this much memory (the newest is always kept)
INTERNAL_ERROR = "the server failed on this request ({}); the server's log has the details"


class Job:
    """One request's run: its state, progress and (intermediate, then final) completions."""

    def __init__(self, spec: JobSpec, number: int):
        self.id = f"{number}-{secrets.token_hex(4)}"  # not guessable: another page cannot cancel it
        self.spec = spec
        self.state = QUEUED
        self.ahead = 0  # jobs that run before this one (while it waits)
        self.done_steps = 0
        self.total_steps = spec.cfg.steps
        self.version = 0  # bumped on every change
        self.image_version = 0  # bumped when the pictures change
        self.images: list[np.ndarray | None] = [None] * len(spec.seeds)
        self.labels = [f"seed {s}" for s in spec.seeds]
        self.error: str | None = None
        self.cancel_reason: str | None = None
        self.outcome: Outcome | None = None
        self._png: dict[int, tuple[int, bytes]] = {}  # index -> (image_version, PNG)

    @property
    def cancelled(self) -> bool:
        return self.cancel_reason is not None

    def snapshot(self) -> dict:
        """What the page is sent (call with Worker.changed held)."""
        base = f"/api/jobs/{self.id}"
        out = {"id": self.id, "state": self.state, "version": self.version, "ahead": self.ahead,
               "done": self.done_steps, "total": self.total_steps, "seeds": list(self.spec.seeds),
               "labels": list(self.labels), "final": self.state == DONE,
               "images": [None if im is None else f"{base}/images/{i}.png?v={self.image_version}"
                          for i, im in enumerate(self.images)],
               "notices": list(self.spec.inputs.notices)}
        if self.error is not None:
            out["error"] = self.error
        if self.state == CANCELLED:
            out["reason"] = self.cancel_reason
        if self.outcome is not None:
            out["zip"] = f"{base}/zip"
            out["summary"] = self.outcome.summary
        return out

    def png(self, index: int, lock: threading.Condition) -> bytes | None:
        """Completion `index` as PNG (the newest picture; encoded once per version)."""
        with lock:
            if not 0 <= index < len(self.images) or self.images[index] is None:
                return None
            img, version = self.images[index], self.image_version
            cached = self._png.get(index)
        if cached is not None and cached[0] == version:
            return cached[1]
        data = png_bytes(img)
        with lock:
            self._png[index] = (version, data)
        return data


class Worker:
    """The queue and the one thread that runs its jobs, one at a time, with `engine`."""

    def __init__(self, engine: Engine, *, keep: int = KEEP_FINISHED):
        self.engine = engine
        self.keep = keep
        self.changed = threading.Condition()  # guards every job's state; notified on every change
        self.device = threading.Lock()  # held while a job runs on the device
        self.waiting: collections.deque[Job] = collections.deque()
        self.current: Job | None = None
        self.jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._numbers = itertools.count(1)
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="jax-inpaint-worker", daemon=True)
        self._thread.start()

    # The page's side -------------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> Job:
        with self.changed:
            if self._closing:
                raise InputError("the server is shutting down")
            job = Job(spec, next(self._numbers))
            self.jobs[job.id] = job
            self.waiting.append(job)
            self._renumber()
            self.changed.notify_all()
            return job

    def get(self, job_id: str) -> Job | None:
        with self.changed:
            return self.jobs.get(job_id)

    def cancel(self, job: Job, reason: str) -> None:
        """Cancel a job: dropped from the queue if it waits; stopped between two chunks if it runs."""
        with self.changed:
            if job.state in FINAL or job.cancelled:
                return
            job.cancel_reason = reason
            if job in self.waiting:
                self.waiting.remove(job)
                self._renumber()
                self._finish(job, CANCELLED)
            self._bump(job)

    def wait(self, job: Job, seen: int, timeout: float) -> dict | None:
        """The job's snapshot as soon as its version differs from `seen`; None after `timeout` seconds
        without a change."""
        with self.changed:
            if not self.changed.wait_for(lambda: job.version != seen, timeout):
                return None
            return job.snapshot()

    def close(self, timeout: float | None = 30.0) -> None:
        """Cancel every job and stop the worker (the running job stops at its next chunk)."""
        with self.changed:
            self._closing = True
            for job in list(self.waiting) + ([self.current] if self.current else []):
                job.cancel_reason = job.cancel_reason or "the server stopped"
            while self.waiting:
                self._finish(self.waiting.popleft(), CANCELLED)
            self.changed.notify_all()
        self._thread.join(timeout)

    # The worker's side ----------------------------------------------------------------------------
    def _bump(self, job: Job, images: bool = False) -> None:
        job.version += 1
        if images:
            job.image_version += 1
        self.changed.notify_all()

    def _renumber(self) -> None:
        running = 1 if self.current is not None else 0
        for i, job in enumerate(self.waiting):
            if job.ahead != i + running:
                job.ahead = i + running
                self._bump(job)

    def _finish(self, job: Job, state: str) -> None:
        job.state = state
        job.ahead = 0
        self._bump(job)
        finished = [j for j in self.jobs.values() if j.state in FINAL]  # oldest first
        kept = sum(len(j.outcome.zip) for j in finished if j.outcome is not None)
        for old in finished[:-1]:
            if len(finished) <= self.keep and kept <= KEEP_BYTES:
                break
            del self.jobs[old.id]
            finished.remove(old)
            kept -= len(old.outcome.zip) if old.outcome is not None else 0

    def _loop(self) -> None:
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.waiting or self._closing)
                if self._closing:
                    return
                job = self.current = self.waiting.popleft()
                job.state = STARTING
                self._renumber()
                self._bump(job)
            try:
                with self.device:
                    self._run(job)
            except BaseException:  # noqa: BLE001 (the worker must outlive any job)
                log.exception("job %s: the worker failed", job.id)
                self._fail(job, INTERNAL_ERROR.format("worker"))
            finally:
                with self.changed:
                    self.current = None
                    self._renumber()

    def _run(self, job: Job) -> None:
        with self.changed:
            if job.cancelled:  # cancelled while it waited for the device
                self._finish(job, CANCELLED)
                return

        def progress(done: int, total: int) -> None:
            with self.changed:
                job.state, job.done_steps, job.total_steps = RUNNING, done, total
                self._bump(job)

        def preview(first: int, pictures: np.ndarray) -> None:
            with self.changed:
                for i, img in enumerate(pictures):
                    job.images[first + i] = img
                self._bump(job, images=True)

        try:
            outcome = self.engine.run(job.spec, should_stop=lambda: job.cancelled, progress=progress,
                                      preview=preview)
        except Stopped:
            with self.changed:
                self._finish(job, CANCELLED)
            log.info("job %s cancelled: %s", job.id, job.cancel_reason)
            return
        except InputError as e:
            self._fail(job, str(e))
            return
        except Exception as e:  # noqa: BLE001 (the server keeps serving; the page gets one line)
            log.exception("job %s failed", job.id)
            self._fail(job, INTERNAL_ERROR.format(type(e).__name__))
            return
        with self.changed:
            job.outcome = outcome
            job.images = list(outcome.images)
            job.labels = list(outcome.labels)
            job.done_steps = job.total_steps
            job.image_version += 1
            self._finish(job, DONE)

    def _fail(self, job: Job, message: str) -> None:
        with self.changed:
            job.error = message
            self._finish(job, ERROR)

