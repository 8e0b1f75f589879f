"""The fault-injection hook under every durable file operation.

Every write that Gravix relies on goes through this module so that tests can
inject faults at any I/O operation: a hook is called before each operation with
its name and path, and may raise ``OSError`` (EIO, ENOSPC) or end the process.

Operation names: ``open``, ``write``, ``fsync`` (file data), ``fsync_dir``,
``replace``, ``unlink``, ``mkdir``, ``rmdir``, ``create`` (a conditional create), and
``upload`` (before each object an ingest node writes to a store; the path is its name).

A plan can also be given as JSON in ``GRAVIX_FAULT_PLAN`` (read by settings and
installed with :func:`install_fault_plan`), so a server in a subprocess can be
faulted. A plan is a list of rules, each::

    {"op": "fsync" | "*", "path": "substring", "skip": 0, "times": 1,
     "action": "eio" | "enospc" | "kill" | "delay", "seconds": 0.0,
     "while_exists": "/path/to/flag"}

``skip`` matching operations pass first, then the next ``times`` fail (-1 = forever).
``delay`` makes the operation wait ``seconds`` and then go ahead (a slow disk: a test
can act while a job is in the middle of it). With ``while_exists`` the rule applies only
while that file exists (tests create and delete it to make the disk "full" and "free" again).

The plans installed in a process are kept as text (:func:`installed_plans`), so that a job
which hands work to other processes (rollup's executor) can install them there too.
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from gravix.errors import ConfigError

Hook = Callable[[str, str], None]
_hook: Hook | None = None
_plans: list[str] = []


def set_hook(hook: Hook | None) -> Hook | None:
    """Install ``hook(op, path)`` to run before every operation; returns the previous one."""
    global _hook
    previous, _hook = _hook, hook
    if hook is None:
        _plans.clear()
    return previous


def check(op: str, path: str | os.PathLike[str]) -> None:
    if _hook is not None:
        _hook(op, os.fspath(path))


@dataclass
class _Rule:
    op: str
    action: str
    path: str = ""
    skip: int = 0
    times: int = 1
    while_exists: str = ""
    seconds: float = 0.0
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        # A misspelt action would otherwise quietly behave as "eio".
        if self.action not in ("eio", "enospc", "kill", "delay"):
            raise TypeError(f"unknown action {self.action!r} (eio, enospc, kill or delay)")

    def apply(self, op: str, path: str) -> None:
        if self.op not in ("*", op) or self.path not in path:
            return
        if self.while_exists and not os.path.exists(self.while_exists):
            return
        self.seen += 1
        if self.seen <= self.skip or (0 <= self.times <= self.fired):
            return
        self.fired += 1
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.action == "delay":
            time.sleep(self.seconds)
            return
        code = errno_mod.ENOSPC if self.action == "enospc" else errno_mod.EIO
        raise OSError(code, f"injected {os.strerror(code)} on {op}", path)


def install_fault_plan(plan: str | None) -> None:
    """Install a JSON fault plan (see module docstring); None or empty removes nothing."""
    if not plan:
        return
    try:
        rules = [_Rule(**r) for r in json.loads(plan)]
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"GRAVIX_FAULT_PLAN is not a valid plan: {exc}") from None
    _plans.append(plan)
    previous = _hook

    def hook(op: str, path: str) -> None:
        if previous is not None:
            previous(op, path)
        for rule in rules:
            rule.apply(op, path)

    set_hook(hook)


def installed_plans() -> tuple[str, ...]:
    """The plans installed in this process, in order (JSON text each)."""
    return tuple(_plans)
