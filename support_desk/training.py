"""Retraining from the console (issue 18): one training at a time, in the background, and
a new model switched in only when its figures hold.

A job (a row of ``trainings``) goes ``running`` (the trainer subprocess: the Makefile's
``python -m rasa_server train``, its epochs parsed for the page) → ``evaluating`` (the
held-out script and the test stories, on the candidate and, once, on the running model)
→ ``switched`` (every configured Rasa got ``PUT /model``) or ``refused`` (a figure is
worse: both shown side by side) or ``failed`` (the error says why; the running model is
untouched). A switched job can be ``rolled_back``: its previous model goes back on all.

One active job: the partial unique index ``uq_trainings_active`` refuses a second
``running``/``evaluating`` row, also from another desk process (→ :class:`Conflict`, 409).
A desk that starts finds the jobs it (its host's dead processes) left running and marks them
failed; a job whose desk on another host stopped writing its progress for
``stale_seconds`` is marked failed when the next Train is pressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from support_desk.config import DeskSettings, TrainingSettings
from support_desk.audit import audit
from support_desk.schema import TRAINING_ACTIVE, trainings
from support_desk.store import Conflict, DeskStore, NotFound, aware, iso, utcnow

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
FINETUNE_REFUSED = " (this was a fine-tune: a full training of the same data may hold the figures; tick full training)"
DESK_STOPPED = "the desk stopped during the training"
LANGUAGES = ("zh", "en")
OUTPUT_TAIL = 40  # lines of a failed command's output kept in the error

_EPOCHS = re.compile(r"Epochs:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)")
_COMPONENT = re.compile(r"Starting to train component '([^']+)'")

Figures = Dict[str, Any]


class TrainingFailed(Exception):
    """A step of the job did not work; the message is shown to the operator."""


# --- progress ---------------------------------------------------------------------


class Progress:
    """What the trainer's output says so far: the component in training and its epochs."""

    def __init__(self) -> None:
        self.component: Optional[str] = None
        self.epoch = 0
        self.of = 0
        self.tail: List[str] = []

    def feed(self, line: str) -> bool:
        """Read one line (tqdm's carriage-return updates are lines too); True if it moved."""
        line = line.strip()
        if not line:
            return False
        self.tail = (self.tail + [line])[-OUTPUT_TAIL:] if not _EPOCHS.search(line) else self.tail
        found = _COMPONENT.search(line)
        if found:
            self.component, self.epoch, self.of = found.group(1), 0, 0
            return True
        epochs = _EPOCHS.search(line)
        if epochs:
            epoch, of = int(epochs.group(1)), int(epochs.group(2))
            if (epoch, of) != (self.epoch, self.of):
                self.epoch, self.of = epoch, of
                return True
        return False

    def as_dict(self) -> Dict[str, Any]:
        return {"component": self.component, "epoch": self.epoch, "of": self.of}


def parse_progress(text: str) -> Dict[str, Any]:
    """The progress a whole output reaches (for tests and tools)."""
    progress = Progress()
    for line in re.split(r"[\r\n]+", text):
        progress.feed(line)
    return progress.as_dict()


# --- commands ---------------------------------------------------------------------


def argv(template: Sequence[str], **values: str) -> List[str]:
    """A command of the settings with its ``{placeholders}`` filled; "python" is this interpreter."""
    words = []
    for word in template:
        if word == "python":
            word = sys.executable
        for key, value in values.items():
            word = word.replace("{" + key + "}", value)
        words.append(word)
    return words


async def run_command(
    words: Sequence[str],
    timeout: float,
    on_line: Optional[Any] = None,
    processes: Optional[Dict[int, asyncio.subprocess.Process]] = None,
) -> Progress:
    """Run a command in the project folder; each output line goes to ``on_line`` (an async
    callable). A non-zero exit, a signal or the timeout is :class:`TrainingFailed` with the
    end of the output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        process = await asyncio.create_subprocess_exec(
            *words, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except OSError as error:
        raise TrainingFailed(f"could not start {Path(words[0]).name}: {error}") from error
    if processes is not None:
        processes[process.pid] = process
    progress = Progress()

    async def read() -> None:
        assert process.stdout is not None
        pending = b""
        while True:
            chunk = await process.stdout.read(4096)
            if not chunk:
                break
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            moved = False
            for raw in lines:
                moved |= progress.feed(raw.decode("utf-8", "replace"))
            # tqdm leaves its newest bar unterminated until the next update: read it once whole.
            if pending.endswith(b"]") and _EPOCHS.search(pending.decode("utf-8", "replace")):
                moved |= progress.feed(pending.decode("utf-8", "replace"))
            if moved and on_line is not None:
                await on_line(progress)
        if pending:
            progress.feed(pending.decode("utf-8", "replace"))

    try:
        await asyncio.wait_for(asyncio.gather(read(), process.wait()), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise TrainingFailed(f"{describe(words)} took longer than {timeout:.0f} s and was stopped") from None
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        raise
    finally:
        if processes is not None:
            processes.pop(process.pid, None)
    code = process.returncode
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        raise TrainingFailed(f"{describe(words)} was killed ({name}); last output: {' | '.join(progress.tail[-5:])}")
    if code:
        raise TrainingFailed(f"{describe(words)} failed (exit status {code}): {' | '.join(progress.tail[-8:])}")
    return progress


def with_reviewed(words: List[str], data: Path, reviewed: Path) -> List[str]:
    """The training command with the inbox's reviewed file among its ``--data`` paths when
    the file is not under the data folder already (``NLU_REVIEWED_FILE`` elsewhere): the
    model learns what the operators labelled, and a file Rasa reads twice would count its
    examples twice."""
    if reviewed.resolve().is_relative_to(data.resolve()) or not reviewed.is_file() or "--data" not in words:
        return list(words)
    at = words.index("--data") + 1
    while at < len(words) and not words[at].startswith("-"):
        at += 1
    return [*words[:at], str(reviewed), *words[at:]]


def describe(words: Sequence[str]) -> str:
    """A command named for the operator: "rasa_server train", "nlu_heldout.py"."""
    rest = [w for w in words[1:] if not w.startswith("-")]
    if len(words) > 2 and words[1] == "-m":
        return " ".join(words[2:4])
    return Path(rest[0]).name if rest else Path(words[0]).name


def input_fingerprint(settings: TrainingSettings, root: Path = ROOT) -> str:
    """sha256 of config.yml and every file under domain/: a model trained on the same ones
    can be fine-tuned (Rasa's --finetune needs the same pipeline and domain)."""
    digest = hashlib.sha256()
    config = root / settings.config
    files = [config] + sorted(p for p in (root / settings.domain).rglob("*") if p.is_file())
    for path in files:
        if path.is_file():
            name = path.relative_to(root) if path.is_relative_to(root) else path
            digest.update(str(name).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# --- scoring ----------------------------------------------------------------------


def sets_fingerprint(settings: TrainingSettings, root: Path = ROOT) -> str:
    """sha256 of the files the scorer reads (``scored_sets``: the held-out sets and the test
    stories): figures kept from an earlier job count only against the same ones."""
    digest = hashlib.sha256()
    for folder in settings.scored_sets:
        base = Path(folder) if Path(folder).is_absolute() else root / folder
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class Scorer:
    """A model's figures: the held-out sets (intent and faq macro-F1 per language) and the
    test stories (correct / total), in a subprocess (``score_command``, else the held-out
    script and ``rasa test core`` side by side). Tests replace this object (the seam)."""

    def __init__(self, settings: TrainingSettings) -> None:
        self.settings = settings

    async def score(self, model: str, out: Path) -> Figures:
        heldout, stories = out / "nlu", out / "stories"
        timeout = self.settings.timeout_seconds
        if self.settings.score_command:
            # One process: the model loaded once for both (scripts/score_model.py).
            await run_command(argv(self.settings.score_command, model=model, out=str(out)), timeout)
            return read_figures(heldout / "summary.json", stories / "story_report.json")
        # Side by side: most of each is a Python start and a model load, on one core.
        await together(
            run_command(argv(self.settings.heldout_command, model=model, out=str(heldout)), timeout),
            run_command(argv(self.settings.stories_command, model=model, out=str(stories)), timeout),
        )
        return read_figures(heldout / "summary.json", stories / "story_report.json")


async def together(*steps: Any) -> List[Any]:
    """Run steps at the same time; when one fails the others are stopped (their
    subprocesses killed) and its error is raised."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def read_figures(summary: Path, story_report: Path) -> Figures:
    """The figures from the held-out summary and Rasa's story report."""
    try:
        nlu = json.loads(summary.read_text(encoding="utf-8"))
        report = json.loads(story_report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TrainingFailed(f"the scores could not be read: {error}") from error
    figures: Figures = {
        lang: {"intent_macro_f1": float(v["intent_macro_f1"]), "faq_macro_f1": float(v["faq_macro_f1"])} for lang, v in nlu.items()
    }
    accuracy = report.get("conversation_accuracy") or {}
    figures["stories"] = {"correct": int(accuracy.get("correct", 0)), "total": int(accuracy.get("total", 0))}
    return figures


def worse(candidate: Figures, running: Figures, tolerance: float = 0.0, reference: Optional[Figures] = None) -> List[str]:
    """What the candidate does worse than the running model (empty: it may be switched in).
    Every language of the running model must be there, each macro-F1 not lower than the
    running model's by more than ``tolerance``, nor than the ``reference`` model's (the one
    engineers shipped), so that switches in a row cannot drift down a tolerance at a time;
    and no fewer stories correct."""
    problems = []
    for lang, figures in running.items():
        if lang == "stories":
            continue
        for key in ("intent_macro_f1", "faq_macro_f1"):
            new = (candidate.get(lang) or {}).get(key)
            bars = [("", figures[key])]
            if reference and (reference.get(lang) or {}).get(key) is not None:
                bars.append((" (the shipped model's)", reference[lang][key]))
            for whose, old in bars:
                if new is None or new + tolerance + 1e-9 < old:
                    margin = f" - {tolerance:.3f}" if tolerance else ""
                    problems.append(f"{lang} {key} {_f(new)} < {_f(old)}{margin}{whose}")
                    break
    old_stories = (running.get("stories") or {}).get("correct", 0)
    new_stories = (candidate.get("stories") or {}).get("correct")
    if new_stories is None or new_stories < old_stories:
        problems.append(f"stories correct {new_stories} < {old_stories}")
    return problems


def _f(value: Optional[float]) -> str:
    return "missing" if value is None else f"{value:.3f}"


# --- switching --------------------------------------------------------------------


class RasaModels:
    """``PUT /model`` on Rasa's HTTP API (Rasa 3.6 ``rasa/server.py`` ``load_model``): body
    ``{"model_file": "<path>"}``, the token as ``?token=``; 204 once the model is loaded
    (Rasa loads it inside the request), 400 when it cannot be loaded, 500 on a file that is
    not a model, 401/403 without the token."""

    def __init__(self, token: Optional[str], timeout: float) -> None:
        self._params = {"token": token} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def load(self, base_url: str, model_file: str) -> None:
        try:
            async with aiohttp.ClientSession(timeout=self._timeout) as session:
                async with session.put(f"{base_url}/model", params=self._params, json={"model_file": model_file}) as response:
                    if response.status >= 300:
                        text = await response.text()
                        with contextlib.suppress(ValueError):
                            text = json.loads(text).get("message") or text
                        raise TrainingFailed(f"{base_url} did not load the model ({response.status}): {str(text)[:300]}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise TrainingFailed(f"{base_url} not reachable: {error.__class__.__name__} {error}") from error

    async def load_all(self, urls: Sequence[str], model_file: str, previous: Optional[str]) -> None:
        """The model on every URL, or on none: those that took it get ``previous`` back
        when one fails."""
        results = await asyncio.gather(*(self.load(url, model_file) for url in urls), return_exceptions=True)
        failures = [(url, r) for url, r in zip(urls, results) if isinstance(r, BaseException)]
        if not failures:
            return
        switched = [url for url, r in zip(urls, results) if not isinstance(r, BaseException)]
        restore_errors = []
        if previous:
            # Every URL, the failed ones too: a Rasa whose answer timed out may still be
            # loading the candidate (PUT /model of the same file again is harmless).
            for url in urls:
                try:
                    await self.load(url, previous)
                except TrainingFailed as error:
                    restore_errors.append(str(error))
        message = "; ".join(str(error) for _, error in failures)
        if previous:
            message += f"; the previous model was put back on {', '.join(urls)}" + (
                f" ({', '.join(switched)} had taken the new one)" if switched else ""
            )
        if restore_errors:
            message += f" (not on: {'; '.join(restore_errors)})"
        raise TrainingFailed(message)


# --- jobs -------------------------------------------------------------------------


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(owner: str) -> bool:
    """Whether the desk process ``host:pid`` is still there (another host's: assumed so)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    if pid == str(os.getpid()):
        return True
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def job_dict(row: Any) -> Dict[str, Any]:
    """A job as the API and the page show it."""
    return {
        "id": row["id"],
        "started_by": row["started_by"],
        "started_at": iso(row["started_at"]),
        "state": row["state"],
        "mode": row["mode"],
        "progress": row["progress"],
        "candidate_model": row["candidate_model"],
        "served_model": row["served_model"],
        "previous_model": row["previous_model"],
        "candidate_figures": row["candidate_figures"],
        "running_figures": row["running_figures"],
        "error": row["error"],
        "finished_at": iso(row["finished_at"]),
        "rolled_back_by": row["rolled_back_by"],
        "rolled_back_at": iso(row["rolled_back_at"]),
    }


class TrainingJobs:
    """Starts, follows, gates, switches and rolls back the trainings of one desk process."""

    def __init__(self, store: DeskStore, settings: DeskSettings, root: Path = ROOT) -> None:
        self.store = store
        self.settings = settings
        self.training = settings.training
        self.root = root
        self.scorer: Any = Scorer(settings.training)
        self.models = RasaModels(settings.rasa_token, settings.training.switch_timeout_seconds)
        self.owner = _owner()
        self.tasks: Dict[int, asyncio.Task] = {}
        self.processes: Dict[int, asyncio.subprocess.Process] = {}
        self.closing = False

    def path(self, name: str) -> Path:
        """A settings path, absolute (relative ones are in the project folder)."""
        path = Path(name)
        return path if path.is_absolute() else self.root / path

    # --- reading

    async def get(self, job_id: int) -> Dict[str, Any]:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(sa.select(trainings).where(trainings.c.id == job_id))).mappings().first()
        if row is None:
            raise NotFound(job_id)
        return job_dict(row)

    async def history(self, limit: int = 20) -> List[Dict[str, Any]]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(trainings).order_by(trainings.c.id.desc()).limit(limit))).mappings()
            return [job_dict(r) for r in rows]

    async def active(self) -> Optional[Dict[str, Any]]:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(sa.select(trainings).where(trainings.c.state.in_(TRAINING_ACTIVE)))).mappings().first()
        return job_dict(row) if row else None

    async def running_model(self) -> str:
        """The model the Rasa processes serve now: the last switch (or rollback) says, else
        the Procfile's model."""
        async with self.store.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(trainings)
                        .where(trainings.c.state.in_(("switched", "rolled_back")))
                        .order_by(sa.func.coalesce(trainings.c.rolled_back_at, trainings.c.finished_at).desc(), trainings.c.id.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return str(self.path(self.training.served_model))
        return str(row["served_model"] if row["state"] == "switched" else row["previous_model"])

    async def rollback_target(self) -> Optional[Dict[str, Any]]:
        """The switched job whose previous model a rollback puts back (the newest switch)."""
        async with self.store.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(trainings)
                        .where(trainings.c.state.in_(("switched", "rolled_back")))
                        .order_by(trainings.c.id.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
        return job_dict(row) if row is not None and row["state"] == "switched" else None

    # --- starting

    async def recover(self) -> int:
        """On start: jobs left running by a desk process of this host that is gone are
        failed ("the desk stopped during the training"). The count."""
        async with self.store.engine.begin() as conn:
            rows = (await conn.execute(sa.select(trainings.c.id, trainings.c.owner).where(trainings.c.state.in_(TRAINING_ACTIVE)))).all()
            dead = [r.id for r in rows if r.owner != self.owner and not _alive(r.owner)]
            for job_id in dead:
                await self._fail(conn, job_id, DESK_STOPPED)
        return len(dead)

    async def _fail_stale(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self.training.stale_seconds)
        async with self.store.engine.begin() as conn:
            rows = (
                await conn.execute(
                    sa.select(trainings.c.id, trainings.c.owner, trainings.c.heartbeat_at).where(trainings.c.state.in_(TRAINING_ACTIVE))
                )
            ).all()
            for row in rows:
                if row.owner == self.owner:
                    continue  # this process's own job is alive: its task writes when it ends
                gone = not _alive(row.owner)
                quiet = row.heartbeat_at is not None and aware(row.heartbeat_at) < cutoff
                if gone or quiet:
                    await self._fail(conn, row.id, DESK_STOPPED)

    async def start(self, actor: str, full: bool = False) -> Dict[str, Any]:
        """Start a training in the background (the job as it starts); :class:`Conflict`
        while another runs."""
        await self._fail_stale()
        fingerprint = input_fingerprint(self.training, self.root)
        base = await self.running_model()
        finetune = not full and bool(self.training.finetune_args) and await self._can_finetune(base, fingerprint)
        now = utcnow()
        try:
            async with self.store.engine.begin() as conn:
                job_id = (
                    await conn.execute(
                        trainings.insert().values(
                            started_by=actor,
                            started_at=now,
                            state="running",
                            mode="finetune" if finetune else "full",
                            fingerprint=fingerprint,
                            owner=self.owner,
                            heartbeat_at=now,
                            previous_model=base,
                            progress={"component": None, "epoch": 0, "of": 0},
                        )
                    )
                ).inserted_primary_key[0]
                await self._audit(conn, actor, "training_started", job_id, {"mode": "finetune" if finetune else "full", "base": base})
        except sa.exc.IntegrityError:
            raise Conflict("a training is running already: wait for it to finish") from None
        self.tasks[job_id] = asyncio.create_task(self._run(job_id, base, finetune))
        return await self.get(job_id)

    async def _can_finetune(self, base: str, fingerprint: str) -> bool:
        """Fine-tune when the running model was trained on this config and domain: its job
        row says so, or (the Procfile's model, trained by make) it is newer than them."""
        if not Path(base).exists():
            return False
        async with self.store.engine.connect() as conn:
            known = (await conn.execute(sa.select(trainings.c.fingerprint).where(trainings.c.served_model == base).limit(1))).scalar()
        if known is not None:
            return known == fingerprint
        inputs = [self.path(self.training.config)] + [p for p in self.path(self.training.domain).rglob("*") if p.is_file()]
        return all(p.stat().st_mtime <= Path(base).stat().st_mtime for p in inputs)

    # --- the job

    async def _run(self, job_id: int, base: str, finetune: bool) -> None:
        out = self.path(self.training.candidates)
        name = f"job-{job_id}"
        try:
            out.mkdir(parents=True, exist_ok=True)
            words = argv(
                self.training.command,
                domain=self.training.domain,
                data=self.training.data,
                config=self.training.config,
                out=str(out),
                name=name,
            )
            words = with_reviewed(words, self.path(self.training.data), self.settings.nlu_reviewed_file)
            if finetune:
                words += argv(self.training.finetune_args, base=base)

            async def moved(progress: Progress) -> None:
                await self._update(job_id, progress=progress.as_dict(), heartbeat_at=utcnow())

            await run_command(words, self.training.timeout_seconds, moved, self.processes)
            candidate = out / f"{name}.tar.gz"
            if not candidate.is_file():
                raise TrainingFailed(f"the training wrote no model ({candidate.name} is missing)")
            await self._update(job_id, state="evaluating", candidate_model=str(candidate), heartbeat_at=utcnow())
            # The running model is scored the same way once (at the same time as the
            # candidate); later jobs reuse the figures kept in its rows.
            scored_on = sets_fingerprint(self.training, self.root)
            running_figures = await self.figures_of(base, scored_on)
            with tempfile.TemporaryDirectory(prefix=f"training-{job_id}-") as scratch:
                scoring = [self.scorer.score(str(candidate), Path(scratch) / "candidate")]
                if running_figures is None:
                    scoring.append(self.scorer.score(base, Path(scratch) / "running"))
                scored = await together(*scoring)
            candidate_figures, running_figures = scored[0], running_figures or scored[1]
            await self._update(
                job_id, candidate_figures=candidate_figures, running_figures=running_figures, scored_on=scored_on, heartbeat_at=utcnow()
            )
            problems = worse(
                candidate_figures, running_figures, self.training.tolerance, await self.reference_figures(scored_on) or running_figures
            )
            if problems:
                error = "worse than the running model: " + "; ".join(problems)
                if finetune:
                    # Measured: a fine-tune of a fifth of the epochs moves the figures more than
                    # a full training on the same batch (docs/retraining.md).
                    error += FINETUNE_REFUSED
                await self._finish(job_id, "refused", error, "training_refused")
                return
            if not await self._still_evaluating(job_id):
                raise TrainingFailed("the job was ended meanwhile (marked failed by another desk): nothing was switched")
            served = await self._switch(job_id, candidate, base)
            await self._finish(job_id, "switched", None, "training_switched", served_model=served)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._finish(job_id, "failed", DESK_STOPPED, "training_failed")
            raise
        except TrainingFailed as error:
            await self._finish(job_id, "failed", DESK_STOPPED if self.closing else str(error), "training_failed")
        except Exception as error:  # noqa: BLE001 - the job ends with the error shown, never stays running
            logger.exception("training %s failed", job_id)
            await self._finish(job_id, "failed", f"{error.__class__.__name__}: {error}", "training_failed")
        finally:
            self.tasks.pop(job_id, None)
            # A refused or failed candidate (or half of one) is not kept: 40 MB a job.
            with contextlib.suppress(OSError):
                (out / f"{name}.tar.gz").unlink(missing_ok=True)

    async def _still_evaluating(self, job_id: int) -> bool:
        """The job is still this desk's to finish (not failed meanwhile by another desk)."""
        async with self.store.engine.begin() as conn:
            result = await conn.execute(
                trainings.update().where(trainings.c.id == job_id, trainings.c.state == "evaluating").values(heartbeat_at=utcnow())
            )
        return result.rowcount == 1

    async def figures_of(self, model: str, scored_on: str) -> Optional[Figures]:
        """The figures kept for a model on the same held-out sets and stories: the job that
        switched it in (its candidate's), or a job that ran while it served (its running
        model's). Changed sets: none (the model is scored again)."""
        async with self.store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(trainings)
                    .where(
                        sa.or_(trainings.c.served_model == model, trainings.c.previous_model == model), trainings.c.scored_on == scored_on
                    )
                    .order_by(trainings.c.id.desc())
                )
            ).mappings()
            for row in rows:
                if row["served_model"] == model and row["candidate_figures"]:
                    return dict(row["candidate_figures"])
                if row["previous_model"] == model and row["running_figures"]:
                    return dict(row["running_figures"])
        return None

    async def reference_figures(self, scored_on: str) -> Optional[Figures]:
        """The running figures of the newest job that started from the Procfile's model (the
        one ``make train`` built and engineers shipped), on the same sets: the gate's floor."""
        served = self.path(self.training.served_model)
        kept = str(served.parent / served.name.removesuffix(".tar.gz")) + "-before-job"
        async with self.store.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(trainings.c.running_figures)
                        .where(
                            sa.or_(trainings.c.previous_model == str(served), trainings.c.previous_model.startswith(kept, autoescape=True)),
                            trainings.c.running_figures.is_not(None),
                            trainings.c.scored_on == scored_on,
                        )
                        .order_by(trainings.c.id.desc())
                        .limit(1)
                    )
                )
                .scalars()
                .first()
            )
        return dict(row) if row else None

    async def _switch(self, job_id: int, candidate: Path, previous: str) -> str:
        """The candidate copied to a versioned file under models/, loaded by every Rasa
        (or by none), then copied over the Procfile's model (a restarted Rasa serves it).
        The previous model stays where it was, or is kept as a versioned file first when it
        is the Procfile's model (which the copy replaces)."""
        served_path = self.path(self.training.served_model)
        models = served_path.parent
        stem = served_path.name.removesuffix(".tar.gz")
        versioned = models / f"{stem}-job{job_id}.tar.gz"
        _copy(candidate, versioned)
        candidate.unlink(missing_ok=True)
        if Path(previous) == served_path and served_path.exists():
            kept = models / f"{stem}-before-job{job_id}.tar.gz"
            _copy(served_path, kept)
            previous = str(kept)
            await self._update(job_id, previous_model=previous)
        try:
            await self.models.load_all(self.settings.model_urls, str(versioned), previous)
        except TrainingFailed:
            versioned.unlink(missing_ok=True)
            raise
        _copy(versioned, served_path)
        prune(models, stem, keep={versioned, Path(previous)})
        return str(versioned)

    async def rollback(self, actor: str) -> Dict[str, Any]:
        """The newest switched job's previous model back on every Rasa (all or none)."""
        if await self.active():
            raise Conflict("a training is running: roll back after it has finished")
        job = await self.rollback_target()
        if job is None:
            raise Conflict("nothing to roll back: no model was switched in since the last rollback")
        previous, current = job["previous_model"], job["served_model"]
        if not previous or not Path(previous).is_file():
            raise Conflict(f"the previous model is not there any more: {previous}")
        try:
            await self.models.load_all(self.settings.model_urls, previous, current)
        except TrainingFailed as error:
            async with self.store.engine.begin() as conn:
                await self._audit(conn, actor, "training_rollback_failed", job["id"], {"error": str(error)})
            raise Conflict(f"rollback failed, the model stays: {error}") from None
        _copy(Path(previous), self.path(self.training.served_model))
        now = utcnow()
        async with self.store.engine.begin() as conn:
            await conn.execute(
                trainings.update().where(trainings.c.id == job["id"]).values(state="rolled_back", rolled_back_by=actor, rolled_back_at=now)
            )
            await self._audit(conn, actor, "training_rolled_back", job["id"], {"model": previous, "replaced": current})
        return await self.get(job["id"])

    # --- writes

    async def _update(self, job_id: int, **values: Any) -> None:
        # Only while the job is active: a job another desk marked failed stays failed.
        async with self.store.engine.begin() as conn:
            await conn.execute(trainings.update().where(trainings.c.id == job_id, trainings.c.state.in_(TRAINING_ACTIVE)).values(**values))

    async def _finish(self, job_id: int, state: str, error: Optional[str], action: str, **values: Any) -> None:
        async with self.store.engine.begin() as conn:
            done = await conn.execute(
                trainings.update()
                .where(trainings.c.id == job_id, trainings.c.state.in_(TRAINING_ACTIVE))
                .values(state=state, error=error, finished_at=utcnow(), **values)
            )
            if done.rowcount:
                row = (await conn.execute(sa.select(trainings).where(trainings.c.id == job_id))).mappings().one()
                detail = {"error": error, "candidate": row["candidate_figures"], "running": row["running_figures"]}
                await self._audit(conn, "desk", action, job_id, detail)
        logger.info("training %s: %s%s", job_id, state, f" ({error})" if error else "")

    async def _fail(self, conn: Any, job_id: int, error: str) -> None:
        await conn.execute(
            trainings.update()
            .where(trainings.c.id == job_id, trainings.c.state.in_(TRAINING_ACTIVE))
            .values(state="failed", error=error, finished_at=utcnow())
        )
        await self._audit(conn, "desk", "training_failed", job_id, {"error": error})

    async def _audit(self, conn: Any, actor: str, action: str, job_id: int, detail: Optional[Dict[str, Any]]) -> None:
        await audit(conn, actor, action, f"training:{job_id}", detail)

    async def close(self) -> None:
        """The desk stops: its trainings are stopped (the subprocess killed) and marked
        failed ("the desk stopped during the training")."""
        self.closing = True
        processes = list(self.processes.values())
        for task in list(self.tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 10)


def _stories(figures: Figures) -> Optional[str]:
    stories = figures.get("stories")
    return f"{stories['correct']}/{stories['total']}" if stories else None


def prune(models: Path, stem: str, keep: Set[Path]) -> List[Path]:
    """Remove the versioned models of earlier switches (``<stem>-job<N>`` and
    ``<stem>-before-job<N>``, ~40 MB each) but the ones in ``keep``: the model serving now and
    the one a rollback puts back (rollback is one level deep). What was removed."""
    kept = {path.resolve() for path in keep}
    removed = []
    for path in sorted(models.glob(f"{stem}-*job*.tar.gz")):
        if re.fullmatch(rf"{re.escape(stem)}-(before-)?job\d+\.tar\.gz", path.name) and path.resolve() not in kept:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _copy(source: Path, target: Path) -> None:
    """Copy through a temporary file in the target's folder, then rename: a reader never
    sees half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        # The model's own time, not the copy's: fine-tuning a kept model (a rollback's) is
        # decided by its mtime against config.yml and domain/ when no job row knows it.
        shutil.copystat(source, temporary)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would keep a Rasa of another user out
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def figure_rows(job: Dict[str, Any]) -> List[Tuple[str, Optional[float], Optional[float]]]:
    """(label, candidate, running) rows of a job's figures, side by side."""
    cand, run = job.get("candidate_figures") or {}, job.get("running_figures") or {}
    rows: List[Tuple[str, Any, Any]] = []
    for lang in LANGUAGES:
        for key in ("intent_macro_f1", "faq_macro_f1"):
            rows.append((f"{lang} {key.split('_')[0]}", (cand.get(lang) or {}).get(key), (run.get(lang) or {}).get(key)))
    rows.append(("stories", _stories(cand), _stories(run)))
    return rows


TRAINING = web.AppKey("training", TrainingJobs)
