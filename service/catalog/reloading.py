"""Live model reload: new, changed and removed checkpoint folders are noticed and swapped in while serving.

What starts a reload: polling every `reload_interval_s`, SIGHUP, or POST /admin/reload. Each worker process
reloads by itself (each polls; SIGHUP to the server reaches every worker: service/runtime/process.py's Supervisor), so
a multi-worker server converges within one polling interval even when a trigger reached only one worker.

How: a folder is looked at again only when its files' (inode, size, mtime) changed since it was last loaded
(or refused), which costs a few `stat` calls per folder. A new or changed checkpoint is loaded and verified
first, off the event loop and outside the reload lock, each folder by itself within `CheckpointBounds` (so a huge
or hostile one is refused from its card and its files' sizes, and never stalls another reload); a folder that fails
in any way is refused (a warning, `digitae_model_changes_total{change="refused"}`
and a note in /readyz's `refused`) and the version already loaded keeps serving. Then the whole name -> model
mapping is replaced in one assignment on the event loop: a request that already holds its model finishes on
it. A folder must be missing at two looks (SETTLE_S apart) to be removed, since writing a checkpoint renames
the old folder away an instant before the new one takes its place; and a reload that would leave nothing to
serve is refused as a whole.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.checkpoint import CheckpointError, read_card
from models.checkpoint_bounds import DEFAULT_BOUNDS, CheckpointBounds
from service.catalog.registry import (
    Registry,
    ServedJudge,
    ServedModel,
    checkpoint_folders,
    load_folder,
    model_version,
)

log = logging.getLogger("digitae.reload")

SETTLE_S = 0.5  # a folder missing now is looked for again this much later before it counts as removed

# (file name, inode, size, mtime in ns) of every file in a folder: any rewrite, copy or rename changes it
Fingerprint = tuple[tuple[str, int, int, int], ...]
# observe(model, change) with change in added | updated | removed | refused, e.g. to count them in metrics
ChangeObserver = Callable[[str, str], None]


ALL = "*"  # the name under which a reload refused as a whole is noted


@dataclass
class _State:
    """What a reload replaces in the registry."""

    models: dict[str, ServedModel]
    judges: list[str]
    skipped: dict[str, str]
    refused: dict[str, str]


@dataclass
class ReloadReport:
    """What one reload did in this process."""

    trigger: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # folder -> problem, found in this reload
    versions: dict[str, str] = field(default_factory=dict)  # what is served after it: name -> version
    pid: int = field(default_factory=os.getpid)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def as_dict(self) -> dict[str, object]:
        return {
            "trigger": self.trigger,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "refused": self.refused,
            "versions": self.versions,
            "pid": self.pid,
        }


def fingerprint(folder: Path) -> Fingerprint | None:
    """The folder's files as `stat` sees them; None when it is gone."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        return tuple((e.name, (s := e.stat()).st_ino, s.st_size, s.st_mtime_ns) for e in entries if e.is_file())
    except OSError:
        return None


def scan(models_dir: Path) -> dict[str, Fingerprint]:
    """Every checkpoint folder under `models_dir` and its fingerprint; raises OSError when the folder is gone."""
    found = {}
    for folder in checkpoint_folders(models_dir):
        if (found_print := fingerprint(folder)) is not None:
            found[folder.name] = found_print
    return found


class Reloader:
    """Keeps `registry.models` in step with the checkpoint folders under `models_dir` (one per worker process)."""

    def __init__(
        self,
        registry: Registry,
        models_dir: Path,
        device: torch.device,
        on_swap: Callable[[dict[str, ServedModel]], None] = lambda models: None,
        observe: ChangeObserver | None = None,
        bounds: CheckpointBounds = DEFAULT_BOUNDS,
    ) -> None:
        self.registry = registry
        self.bounds = bounds
        self.models_dir = Path(models_dir)
        self.device = device
        self._on_swap = on_swap
        self._observe = observe
        self._lock = asyncio.Lock()
        self._seen: dict[str, Fingerprint] = {}  # folder -> fingerprint when last loaded or refused
        self._loading: dict[str, Fingerprint] = {}  # folder -> fingerprint a reload is loading now (outside the lock)
        self.last_report: ReloadReport | None = None
        self.tasks: set[asyncio.Task[None]] = set()  # reloads started by SIGHUP

    def adopt_startup_state(self) -> None:
        """Take the folders as loaded at startup, confirming each by its card's version: one that changed while
        starting (or failed to load) is simply looked at again by the first reload."""
        try:
            found = scan(self.models_dir)
        except OSError:
            return
        for name, print_ in found.items():
            model = self.registry.models.get(name)
            if model is not None:
                try:
                    if model_version(read_card(self.models_dir / name)) == model.version:
                        self._seen[name] = print_
                except CheckpointError:
                    pass
            elif name in self.registry.judges:
                self._seen[name] = print_

    async def reload(self, trigger: str) -> ReloadReport:
        """Look at the folders, load what is new or changed (in a thread, outside the lock: however long a folder
        takes to hash, other reloads go on), then, under the lock, merge the outcome and swap it in."""
        seen_before = dict(self._seen)
        found: dict[str, Fingerprint] | None = None
        scan_problem = ""
        try:
            found = await asyncio.to_thread(self._scan_settled)
        except OSError as exc:
            scan_problem = f"the models folder {self.models_dir} cannot be read ({exc.strerror}); nothing was changed"
        to_load = {
            name: print_
            for name, print_ in (found or {}).items()
            if seen_before.get(name) != print_ and self._loading.get(name) != print_  # another reload is at it
        }
        self._loading.update(to_load)
        try:
            outcomes = await asyncio.to_thread(self._load_folders, to_load) if to_load else {}
        finally:  # cancelled: what was not loaded is free for the next reload
            for name, print_ in to_load.items():
                if self._loading.get(name) == print_:
                    del self._loading[name]
        async with self._lock:
            if found is None:
                report, state = self._refuse_all(ReloadReport(trigger), self._unchanged(), scan_problem)
            else:
                report, state = self._merge(trigger, found, to_load, outcomes, seen_before)
            registry = self.registry
            # the swap, on the event loop: each attribute replaced whole, so a reader sees the old or the new
            registry.judges, registry.skipped, registry.refused = state.judges, state.skipped, state.refused
            if report.changed:
                registry.models = state.models
                self._on_swap(state.models)
            report.versions = {name: model.version for name, model in registry.models.items()}
            self.last_report = report
        if report.changed or report.refused:
            log.info(
                "reload (%s) in pid %d: added %s, updated %s, removed %s, refused %s; serving %s",
                trigger,
                report.pid,
                report.added or "-",
                report.updated or "-",
                report.removed or "-",
                list(report.refused) or "-",
                ", ".join(f"{name} {version}" for name, version in report.versions.items()),
            )
        return report

    def _scan_settled(self) -> dict[str, Fingerprint]:
        """In a thread: the folders now; a served one that is missing is looked for again SETTLE_S later."""
        found = scan(self.models_dir)
        if any(name not in found for name in (*self.registry.models, *self.registry.judges)):
            time.sleep(SETTLE_S)  # a checkpoint being replaced is missing for an instant
            found = scan(self.models_dir)
        return found

    def _load_folders(self, to_load: dict[str, Fingerprint]) -> dict[str, ServedModel | ServedJudge | str]:
        """In a thread: each folder loaded and verified by itself (within the bounds), or the problem that refused
        it; one folder's failure, of any kind, never stops the others. Once a folder is done another reload may load
        it again (e.g. POST /admin/reload, not waiting for this pass's slowest folder); while it loads, none does."""
        outcomes: dict[str, ServedModel | ServedJudge | str] = {}
        for name, print_ in to_load.items():
            try:
                outcomes[name] = load_folder(self.models_dir / name, self.device, self.bounds)
            except CheckpointError as exc:
                outcomes[name] = f"checkpoint {exc.path}: {exc.problem}"
            except Exception as exc:  # load_folder turns every failure into a CheckpointError; this is a backstop
                log.exception("loading %s failed", name)
                outcomes[name] = f"checkpoint {self.models_dir / name}: cannot be loaded ({type(exc).__name__})"
            finally:
                if self._loading.get(name) == print_:
                    del self._loading[name]
        return outcomes

    def _unchanged(self) -> _State:
        registry = self.registry
        return _State(registry.models, registry.judges, registry.skipped, {**registry.refused})

    def _merge(
        self,
        trigger: str,
        found: dict[str, Fingerprint],
        to_load: dict[str, Fingerprint],
        outcomes: dict[str, ServedModel | ServedJudge | str],
        seen_before: dict[str, Fingerprint],
    ) -> tuple[ReloadReport, _State]:
        """Under the lock, no I/O: the registry's next state (sharing every unchanged model) and what changed. A
        folder another reload took in meanwhile is left as that reload left it (never an older version over it)."""
        report = ReloadReport(trigger)
        registry, current = self.registry, self.registry.models
        state = _State({}, [], {k: v for k, v in registry.skipped.items() if k in found}, {})
        state.refused = {k: v for k, v in registry.refused.items() if k in found}
        seen = dict(self._seen)  # committed only if this reload is not refused as a whole
        for name, print_ in found.items():
            if name not in to_load or self._seen.get(name) != seen_before.get(name):
                if name in current:
                    state.models[name] = current[name]
                elif name in registry.judges:
                    state.judges.append(name)
                continue
            seen[name] = print_
            loaded = outcomes[name]
            if isinstance(loaded, str):
                problem = loaded
                if name in current:
                    state.models[name] = current[name]
                    problem += f" (still serving version {current[name].version})"
                report.refused[name] = state.refused[name] = problem
                log.warning("refused %s", problem)
                continue
            state.refused.pop(name, None)
            state.skipped.pop(name, None)
            if isinstance(loaded, ServedJudge):  # verified; the classifier serving /v1/classify stays as loaded
                state.judges.append(name)
            elif name not in current:
                state.models[name] = loaded
                report.added.append(name)
            elif loaded.version != current[name].version:
                state.models[name] = loaded
                report.updated.append(name)
            else:
                state.models[name] = current[name]  # the same content (e.g. copied over itself): keep the loaded one

        report.removed = [name for name in current if name not in found]
        if not state.models:
            # nothing is taken in: what this reload looked at is looked at again by the next one
            return self._refuse_all(
                report, self._unchanged(), "no auto-encoder checkpoint would be left; nothing was changed"
            )
        self._seen = {name: print_ for name, print_ in seen.items() if name in found}
        for name in report.refused:
            self._count(name, "refused")
        for change in ("added", "updated", "removed"):
            for name in getattr(report, change):
                self._count(name, change)
        return report, state

    def _refuse_all(self, report: ReloadReport, unchanged: _State, problem: str) -> tuple[ReloadReport, _State]:
        report.added, report.updated, report.removed, report.refused = [], [], [], {}
        report.refused[ALL] = unchanged.refused[ALL] = problem
        log.warning("reload refused: %s", problem)
        self._count(ALL, "refused")
        return report, unchanged

    def _count(self, name: str, change: str) -> None:
        if self._observe is not None:
            self._observe(name, change)

    def on_sighup(self) -> None:
        """SIGHUP (on the event loop): reload now, in the background."""
        log.info("SIGHUP received in pid %d: looking for new, changed or removed checkpoints", os.getpid())
        task = asyncio.get_running_loop().create_task(self.reload_logged("SIGHUP"))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def reload_logged(self, trigger: str) -> None:
        try:
            await self.reload(trigger)
        except Exception:
            log.exception("reload (%s) failed; serving on unchanged", trigger)

    async def poll(self, interval_s: float) -> None:
        """Reload every `interval_s` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.reload_logged("poll")


def start_reloading(reloader: Reloader, interval_s: float) -> Callable[[], None]:
    """In the running event loop: poll every `interval_s` (0: never). SIGHUP reaches `Reloader.on_sighup` through
    service/runtime/process.py's `handle_sighup`. Returns the function that stops polling and any reload under way."""
    loop = asyncio.get_running_loop()
    poller = loop.create_task(reloader.poll(interval_s)) if interval_s > 0 else None

    def stop() -> None:
        if poller is not None:
            poller.cancel()
        for task in list(reloader.tasks):
            task.cancel()

    return stop


SUPERVISOR_PID_ENV = "DIGITAE_SUPERVISOR_PID"  # set by `python -m service` when it runs several workers


def signal_other_workers() -> None:
    """Under `python -m service` with several workers: SIGHUP to the supervisor, which passes it to every worker
    (this one included: nothing changed since, so that costs it a few `stat` calls)."""
    supervisor = os.environ.get(SUPERVISOR_PID_ENV, "")
    if supervisor.isdigit() and int(supervisor) == os.getppid():
        os.kill(int(supervisor), signal.SIGHUP)
