"""The stored program: a check's program stored with its baseline, loaded back, verified, replayed beside
the current program, and the explanation of a change chosen from what was replayed.

``core.export`` and ``core.replay`` know how to serialize a program and how to time two programs against
each other; this room knows what a baseline's program is for: what to store while recording, when a
stored program decides a check (and when it is only "not comparable by replay"), and how to explain a
change from both programs, or from the figures alone where no program was replayed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .core.export import (
    FORMAT,
    ProgramCorrupt,
    ProgramIncompatible,
    ProgramNotExported,
    ProgramUnreadable,
    StoredProgram,
    compiled_alone,
    deserialize_program,
    export_program,
)
from .core.replay import Replay, ReplayFailed, ReplayUnavailable, SideBySide, replay, side_by_side
from .errors import CaseFailed
from .explain import explain_compiled, explain_recorded, explain_replayed
from .records import ProgramRecord, ReplayRecord, program_stored

if TYPE_CHECKING:
    from collections.abc import Callable

    from jax.export import Exported

    from .baseline import Lookup
    from .core.replay import ReplayConfig
    from .core.wrap import WrappedModel
    from .records import CheckRecord, ExplanationRecord, MetricsRecord


def store_program(wrapped: WrappedModel, example_inputs: tuple[Any, ...], limit_bytes: int) -> ProgramRecord:
    """The program a recorded baseline keeps of ``wrapped``: exported, or the reason it is not."""
    try:
        stored = export_program(wrapped, example_inputs, limit_bytes)
    except ProgramNotExported as why:
        return ProgramRecord(unavailable=str(why))
    return ProgramRecord(
        format=FORMAT,
        serialized_bytes=stored.serialized_bytes,
        stored_bytes=len(stored.data),
        data=stored.to_text(),
    )


def load_program(stored: dict[str, Any]) -> Exported:
    """A baseline record's stored program read back (ProgramCorrupt, ProgramIncompatible, KeyError,
    TypeError or ValueError where it cannot be)."""
    return deserialize_program(StoredProgram.from_text(str(stored["data"]), int(stored["serialized_bytes"])))


@dataclass(frozen=True)
class PreparedReplay:
    """Both programs of a check compiled side by side, and the seconds their export and compiles took."""

    pair: SideBySide
    seconds: float
    where: str
    """The stored program's file and record, for messages."""


def prepare_replay(
    current: CheckRecord,
    lookup: Lookup | None,
    program: Callable[[], tuple[Exported, tuple[Any, ...]]] | None,
) -> PreparedReplay | ReplayRecord | None:
    """The baseline's stored program and the current one compiled side by side; why not, as a record,
    where they cannot be (the cross-process comparison then decides); None without a baseline."""
    __tracebackhide__ = True
    if lookup is None or lookup.record is None:
        return None
    if program is None:
        return ReplayRecord(unavailable="jaxperf.measure times any callable: only jaxperf.check replays")
    stored = lookup.record.get("program")
    if not program_stored(stored):
        why = stored.get("unavailable") if isinstance(stored, dict) else None
        return ReplayRecord(
            unavailable=f"no program stored with its baseline: {why}"
            if why
            else "no program stored with its baseline (recorded before programs were; "
            "--jaxperf-update-baselines stores one)"
        )
    where = f"{lookup.path} record {current.baseline_key!r}"
    began = time.perf_counter()
    try:
        baseline = load_program(stored)
    except (ProgramCorrupt, KeyError, TypeError, ValueError) as error:
        raise CaseFailed(
            f"the program stored in {where} cannot be read: {error}; the file was left as it is "
            "(--jaxperf-update-baselines records it anew)"
        ) from None
    except ProgramIncompatible as error:
        return ReplayRecord(unavailable=f"not comparable by replay: {error}")
    try:
        exported, arguments = program()
    except ProgramNotExported as error:
        return ReplayRecord(unavailable=f"the current program cannot be exported: {error}")
    try:
        pair = side_by_side(baseline, exported, arguments)
    except ReplayUnavailable as error:
        return ReplayRecord(unavailable=f"not comparable by replay: {error}")
    except ReplayFailed as error:
        raise CaseFailed(f"replaying the baseline's program ({where}) failed: {error}") from None
    return PreparedReplay(pair, time.perf_counter() - began, where)


def replayed(
    prepared: PreparedReplay | ReplayRecord | None,
    config: ReplayConfig,
    *,
    previous: Replay | ReplayRecord | None = None,
) -> Replay | ReplayRecord | None:
    """The prepared programs timed against each other: the first replay's budget pays for their export
    and compiles, a longer one goes on from the ``previous`` replay's blocks; a record saying why not
    passed through."""
    __tracebackhide__ = True
    if not isinstance(prepared, PreparedReplay):
        return prepared
    going_on = previous if isinstance(previous, Replay) else None
    try:
        return replay(
            prepared.pair,
            config,
            spent=0.0 if going_on is not None else prepared.seconds,
            previous=going_on,
        )
    except ReplayUnavailable as error:
        return ReplayRecord(unavailable=f"not comparable by replay: {error}")
    except ReplayFailed as error:
        raise CaseFailed(f"replaying the baseline's program ({prepared.where}) failed: {error}") from None


def replay_record(replayed: Replay | ReplayRecord | None) -> ReplayRecord | None:
    """What a check's record keeps of its replay: the figures, or why there are none."""
    return replayed.to_dict() if isinstance(replayed, Replay) else replayed


def explanation_of_change(
    prepared: PreparedReplay | ReplayRecord | None,
    baseline: dict[str, Any],
    metrics: MetricsRecord | None,
    lowered: Any,
    budget_seconds: float,
) -> ExplanationRecord:
    """Why the check's time changed: from both programs where the baseline's was replayed; from both
    programs compiled apart where it was stored but not replayed; else from the figures the baseline
    recorded, saying why."""
    if isinstance(prepared, PreparedReplay):
        return explain_replayed(prepared.pair, budget_seconds)
    why = (prepared or {}).get("unavailable") or "the baseline's program was not replayed"
    stored = baseline.get("program")
    if program_stored(stored) and lowered is not None:
        try:
            program = load_program(stored)
            return explain_compiled(compiled_alone(program), lowered.compile(), why)
        except (ProgramUnreadable, KeyError, TypeError, ValueError) as error:
            why = f"{why}; its stored program cannot be compiled here: {error}"
    recorded = baseline.get("metrics")
    return explain_recorded(why, recorded if isinstance(recorded, dict) else None, metrics)  # type: ignore[arg-type]
