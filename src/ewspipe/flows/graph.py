"""What to compute: a graph of plain task functions with named inputs and outputs.

In the spirit of kedro's ``Node``/``Pipeline`` (STYLE.md point 8): a :class:`Task` wraps a
plain function, names the outputs it consumes (one output name, or a tuple of names that
arrive as a dict) and its constant parameters, and produces one output named after the task.
A :class:`Graph` checks at build time that every input is produced by an earlier task and that
the function accepts exactly those arguments, so a mis-wired graph fails before data moves.

Keys: a task's key is a sha256 over its name, function, parameters, the run's base key
(the code fingerprint), the *settings sections the task declares it reads* (``reads``) and the
*digests of its input values* (without their ``trace``: facts about how an output was made,
such as whether a model was trained or reused, that must not change what comes after). So a
setting no task reads (``[api] port``) changes no key, and a model's hyperparameter changes
only the keys of that model's tasks and what consumes them. Outputs are small
JSON documents (paths are relative to the environment's state folder), so identical inputs
give an identical key in any process or on any worker. How tasks run is
:mod:`ewspipe.flows.runner`'s business; what they compute is :mod:`ewspipe.flows.tasks`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ewspipe.errors import InputError

__all__ = ["TRACE", "Graph", "Task", "digest", "settings_sections"]

InputRef = str | tuple[str, ...]

#: the key of a task output that is recorded but never part of a downstream key
TRACE = "trace"


def digest(value: Any) -> str:
    """sha256 of a JSON-ready value, independent of dict order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def settings_sections(settings: Any) -> dict[str, Any]:
    """Each settings section as JSON (what ``Task.reads`` names), for :func:`Task.key`."""
    dumped: dict[str, Any] = settings.model_dump(mode="json")
    return dumped


def _keyed(value: Any) -> Any:
    """An output without its ``trace`` (see the module docstring)."""
    if isinstance(value, dict) and TRACE in value:
        return {k: v for k, v in value.items() if k != TRACE}
    return value


@dataclass(frozen=True)
class Task:
    """One node: ``func(ctx, key=..., **inputs, **params) -> JSON-ready output``.

    Attributes:
        name: unique; also the name of its output.
        func: a module-level function (so Dask can ship it by reference).
        inputs: argument name -> an output name, or a tuple of output names (passed as a dict
            output name -> value).
        params: constant JSON-ready arguments; part of the key.
        cache: False for tasks that must look at the world each time (snapshot selection);
            their output still keys everything downstream.
        cost: expected relative run time; among ready tasks the costliest is submitted first
            (longest-processing-time-first keeps a cluster's workers busy to the end). Not
            part of the key.
        reads: the settings sections the task reads (``"partitions"``, ``"qa"``, ...); their
            values are part of the key, no other setting is.
        lane: for an in-process executor with lanes (``executors.LaneExecutor``): tasks of
            one lane run one at a time, lanes run side by side. Not part of the key.
        check: ``check(ctx, output)`` before a cached output is reused; raises when what it
            names can no longer be trusted (a fitted model's files no longer match their
            sha256), so the run fails as it would have when running the task; returns False
            when what it names is gone (a deleted artifact), so the task runs again.
    """

    name: str
    func: Callable[..., Any]
    inputs: Mapping[str, InputRef] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    cache: bool = True
    cost: float = 0.0
    reads: tuple[str, ...] = ()
    lane: str = ""
    check: Callable[[Any, Any], bool | None] | None = None

    @property
    def upstream(self) -> tuple[str, ...]:
        names: list[str] = []
        for ref in self.inputs.values():
            names += [ref] if isinstance(ref, str) else list(ref)
        return tuple(names)

    def key(self, base: str, values: Mapping[str, Any],
            sections: Mapping[str, Any] | None = None) -> str:
        """The task's key given the run's base key, the upstream outputs and the settings
        ``sections`` (:func:`settings_sections`; needed when the task ``reads`` any)."""
        if self.reads and sections is None:
            raise InputError(f"task {self.name!r} reads settings {list(self.reads)}, but the "
                             "run gave no settings to key it by")
        doc: dict[str, Any] = {
            "task": self.name,
            "func": f"{self.func.__module__}.{self.func.__qualname__}",
            "params": dict(self.params),
            "base": base,
            "inputs": {name: digest(_keyed(values[name])) for name in sorted(self.upstream)},
        }
        if self.reads:
            assert sections is not None
            doc["reads"] = {s: digest(sections.get(s)) for s in sorted(self.reads)}
        return digest(doc)

    def arguments(self, values: Mapping[str, Any]) -> dict[str, Any]:
        args: dict[str, Any] = dict(self.params)
        for arg, ref in self.inputs.items():
            args[arg] = values[ref] if isinstance(ref, str) else {r: values[r] for r in ref}
        return args


class Graph:
    """Tasks in a valid order; every input produced by an earlier task."""

    def __init__(self, tasks: list[Task]) -> None:
        seen: set[str] = set()
        for task in tasks:
            if task.name in seen:
                raise InputError(f"task graph: two tasks named {task.name!r}")
            missing = [u for u in task.upstream if u not in seen]
            if missing:
                raise InputError(
                    f"task graph: task {task.name!r} needs {', '.join(missing)}, which no "
                    "earlier task produces; add those tasks before it"
                )
            _check_signature(task)
            seen.add(task.name)
        self.tasks = list(tasks)
        self._by_name = {t.name: t for t in tasks}

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, name: str) -> Task:
        return self._by_name[name]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]


def _check_signature(task: Task) -> None:
    sig = inspect.signature(task.func)
    try:
        sig.bind(None, key="", **{a: None for a in [*task.inputs, *task.params]})
    except TypeError as exc:
        raise InputError(
            f"task graph: task {task.name!r} wires arguments "
            f"{sorted([*task.inputs, *task.params])} into {task.func.__qualname__}{sig}: {exc}"
        ) from None
