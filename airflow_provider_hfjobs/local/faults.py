"""Fault injection for the local Jobs server: the failures a client must survive, on demand.

A fault applies to the next ``times`` requests whose method and path match (``times=-1``: until cleared):

- ``status``: answer that HTTP status instead (``{"error": "injected fault"}``), with ``Retry-After`` if
  given; ``forward=true`` first lets the request through (a create that happened, whose answer was lost);
- ``cut``: close a log stream abruptly (no end of body) after ``after_events`` events;
- ``delay``: answer ``seconds`` late.

Set them with ``hfjobs-local serve --fault SPEC`` (repeatable), ``POST /_local/faults`` (JSON, the
server's token required), or ``LocalJobsServer.add_fault``. SPEC is ``kind,key=value,...``, e.g.
``status,status=429,retry_after=1,times=3`` or ``cut,path=/logs,after_events=5``.
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

KINDS = ("status", "cut", "delay")


@dataclass
class Fault:
    kind: str
    path: str = ".*"
    method: str | None = None
    times: int = 1
    status: int = 503
    retry_after: float | None = None
    forward: bool = False
    after_events: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind {self.kind!r} is not one of {', '.join(KINDS)}")
        re.compile(self.path)
        if self.method:
            self.method = self.method.upper()

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """``kind,key=value,...`` (the CLI form)."""
        kind, *pairs = [part.strip() for part in spec.split(",") if part.strip()]
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep or key not in types or key == "kind":
                raise ValueError(f"fault option {pair!r}: use key=value with keys {', '.join(types)}")
            values[key] = _convert(types[key], raw)
        return cls(kind=kind, **values)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times != 0
            and (self.method is None or self.method == method)
            and re.search(self.path, path) is not None
        )


def _convert(kind: Any, raw: str) -> Any:
    text = str(kind)
    if "bool" in text:
        return raw.lower() in ("1", "true", "yes")
    if "float" in text:
        return float(raw)
    if "int" in text:
        return int(raw)
    return raw


class FaultInjector:
    """The faults in force; safe to use from any thread."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[Fault]:
        """The faults still armed (their ``times`` not used up), for the API's list."""
        with self._lock:
            return [fault for fault in self._faults if fault.times != 0]

    def take(self, method: str, path: str) -> Fault | None:
        """The first matching fault, with one of its uses consumed."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None
