"""The baseline store: committed, reviewable JSON, one file per environment and test module.

Layout: ``<baselines>/<environment id>/<test module>.json``. The environment id is readable (backend,
device kind and count) and ends in a hash of the whole fingerprint, so two machines never share a file and
a baseline is compared only with runs of the same environment. Files are written only on request, only by
the xdist controller, through a temporary file and a rename; a file that cannot be read is reported and
left untouched.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import writable
from .environment import _version
from .errors import BaselineError
from .record_fields import count_problem, figure_problem, first_problem, median_problem, seconds_list_problem
from .records import program_stored
from .verdicts import NEW, NOT_COMPARABLE, Comparability

if TYPE_CHECKING:
    from collections.abc import Mapping

SCHEMA_VERSION = 1
#: Environment variables that change what XLA compiles or how it runs.
_ENV_PREFIXES = ("XLA_FLAGS", "JAX_", "XLA_PYTHON_CLIENT_", "XLA_CLIENT_", "TF_GPU_ALLOCATOR", "CUDA_VISIBLE")
#: ... except these, which only say where things are kept.
_ENV_IGNORED = ("JAX_COMPILATION_CACHE_DIR", "JAXPERF_REPEAT_CHILD")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_fingerprint() -> dict[str, str]:
    """What a timing depends on besides the code: hardware, versions, precision, XLA settings."""
    import jax

    devices = jax.devices()
    env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES) and k not in _ENV_IGNORED}
    return {
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": str(len(devices)),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "flax": _version("flax"),
        "python": platform.python_version(),
        "matmul_precision": str(getattr(jax.config, "jax_default_matmul_precision", None)),
        "xla_env": " ".join(f"{k}={env[k]}" for k in sorted(env)),
        "cpu_model": _cpu_model(),
    }


def environment_id(fingerprint: Mapping[str, str]) -> str:
    """A directory name: ``cpu-cpu-x1-3fa2b1c4`` (backend, device kind, count, fingerprint hash)."""
    digest = hashlib.sha256(json.dumps(dict(fingerprint), sort_keys=True).encode()).hexdigest()[:8]
    kind = _slug(fingerprint.get("device_kind", "unknown"))
    backend, count = _slug(fingerprint.get("backend", "unknown")), fingerprint.get("device_count", "?")
    return f"{backend}-{kind}-x{count}-{digest}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def module_file_name(module: str) -> str:
    """A safe file name for a test module path (``suites/test_x.py`` → ``suites.test_x.py-1a2b3c.json``).

    Only ``[A-Za-z0-9._-]`` survive, leading dots are dropped, and a hash of the original keeps distinct
    paths distinct: nothing in a test id can escape the baselines folder.
    """
    readable = re.sub(r"[^A-Za-z0-9._-]+", ".", module.replace("\\", "/").replace("/", ".")).lstrip(".")
    digest = hashlib.sha256(module.encode()).hexdigest()[:6]
    return f"{readable[:80] or 'module'}-{digest}.json"


def stable_numbers(value: Any) -> Any:
    """Floats to 6 significant digits, recursively, so files diff cleanly and read the same everywhere."""
    if isinstance(value, float):
        return value if not math.isfinite(value) else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: stable_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [stable_numbers(v) for v in value]
    return value


def dumps(document: Mapping[str, Any]) -> str:
    """The file format: sorted keys, one item per line, stable numbers, UTF-8; ValueError for a NaN or an
    infinity (not JSON: a strict reader refuses the whole file)."""
    text = json.dumps(
        stable_numbers(dict(document)), sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False
    )
    return text + "\n"


#: Fields every timed baseline record has: what a verdict is computed from.
REQUIRED_FIELDS = ("median", "samples", "noise_floor")
#: Figures that, where present (the noise floor always is), are finite numbers of at least zero.
_FIGURE_FIELDS = ("noise_floor", "ci_low", "ci_high", "p90", "p99", "iqr")
#: Counts that, where present, are whole numbers of at least zero.
_COUNT_FIELDS = ("sample_count", "processes", "recordings", "items_per_call")


def record_problem(record: Any) -> str | None:
    """What makes ``record`` no baseline measurement (``is a list, not a record``, ``has a median of
    inf``); None when it is one: a finite positive median and samples, a finite noise floor, and
    well-formed optional fields. A verdict is never computed from anything else."""
    if not isinstance(record, dict):
        return f"is {_shown(record)}, not a record (an object of fields)"
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        return f"has no {' and no '.join(missing)}"
    medians = record.get("process_medians")
    problem = first_problem(
        median_problem(record["median"], _shown),
        seconds_list_problem("samples", record["samples"], _shown, empty_allowed=False),
        seconds_list_problem("process_medians", medians, _shown) if medians is not None else None,
        *(figure_problem(name, record[name], _shown) for name in _FIGURE_FIELDS if name in record),
        *(
            count_problem(name, record[name], _shown, positive=False)
            for name in _COUNT_FIELDS
            if record.get(name) is not None
        ),
    )
    if problem:
        return problem
    for name in ("metrics", "program"):
        if record.get(name) is not None and not isinstance(record[name], dict):
            return f"has {name} {_shown(record[name])}, not an object of fields"
    return None


def _non_finite_field(records: Mapping[str, Any]) -> str:
    """Where the first NaN or infinity of ``records`` is: ``record 'k' field metrics.flops``."""

    def find(value: Any, path: str) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return path
        items = (
            value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        )
        for name, item in items:
            found = find(item, f"{path}.{name}" if path else str(name))
            if found is not None:
                return found
        return None

    for key, record in records.items():
        field = find(record, "")
        if field is not None:
            return f"record {key!r} field {field}"
    return "a number"


def valid_record(baseline: BaselineFile, key: str) -> dict[str, Any]:
    """``baseline``'s record ``key``; BaselineError naming the file and the key where it is no
    measurement (see :func:`record_problem`)."""
    record = baseline.records[key]
    problem = record_problem(record)
    if problem:
        raise BaselineError(f"baseline file {baseline.path}: record {key!r} {problem}; {_LEFT_ALONE}")
    return record


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class BaselineFile:
    """One module's baselines for one environment."""

    path: Path
    environment: dict[str, str]
    module: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "environment": self.environment,
            "module": self.module,
            "records": self.records,
        }


def read_file(path: Path) -> BaselineFile:
    """Load one baseline file; BaselineError says what is wrong with it and that it was left alone."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise BaselineError(f"baseline file {path} is not UTF-8 text ({error}); {_LEFT_ALONE}") from None
    except OSError as error:
        raise BaselineError(f"baseline file {path} cannot be read ({error})") from None
    return parse_file(text, path)


_KEPT = "the file was kept as it was"
_LEFT_ALONE = (
    "the file was left as it is: repair it, or delete it and record anew with --jaxperf-update-baselines"
)


def parse_file(text: str, path: Path) -> BaselineFile:
    """A baseline file's text (from disk or from a git revision) as a BaselineFile, or BaselineError."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise BaselineError(
            f"baseline file {path} is corrupt or truncated ({error}); {_LEFT_ALONE}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("records"), dict):
        raise BaselineError(f"baseline file {path} is not a jaxperf baseline (no records); {_LEFT_ALONE}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BaselineError(
            f"baseline file {path} has schema version {version!r}; this pytest-jaxperf reads version "
            f"{SCHEMA_VERSION}; {_LEFT_ALONE}"
        )
    environment = data.get("environment")
    if not isinstance(environment, dict):
        raise BaselineError(f"baseline file {path} has no environment fingerprint; {_LEFT_ALONE}")
    return BaselineFile(path, environment, str(data.get("module", "")), data["records"])


#: Fingerprint fields that make a baseline's program itself another program: another backend, device, device
#: count, matmul precision or XLA flag compiles something else, which no tier may compare.
PROGRAM_FIELDS = ("backend", "device_kind", "device_count", "matmul_precision", "xla_env")
#: Fields that change what the compiler reports: another jax or jaxlib may count FLOPs and bytes otherwise,
#: so the exact tier is not compared; a stored program still replays (both compiled by this XLA).
EXACT_FIELDS = ("jax", "jaxlib")
# Every other field (the CPU model, Python, flax) changes absolute times only: those are not compared,
# the exact figures and the replay are.


def portability(ours: Mapping[str, str], theirs: Mapping[str, str]) -> Comparability | None:
    """Which tiers a baseline recorded under ``theirs`` may be compared in here; None for none at all."""
    differing = {k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)}
    if not differing:
        return Comparability()
    if differing & set(PROGRAM_FIELDS):
        return None
    elsewhere = "; ".join(differing_fields(ours, theirs))
    return Comparability(
        times=False, exact=not differing & set(EXACT_FIELDS), why_not=f"recorded with {elsewhere}"
    )


@dataclass(frozen=True)
class Lookup:
    """The result of looking a measurement up: a record, or why there is none."""

    status: str
    """``found``, ``new`` or ``not comparable``."""
    record: dict[str, Any] | None = None
    reason: str = ""
    comparability: Comparability = field(default_factory=Comparability)
    """For a record of another environment: the tiers it can still be compared in."""
    path: Path | None = None
    """The file the record was read from."""


def differing_fields(ours: Mapping[str, str], theirs: Mapping[str, str]) -> list[str]:
    """The fingerprint fields that differ, each as ``field: 'theirs' there, 'ours' here``."""
    return [
        f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here"
        for k in sorted(set(ours) | set(theirs))
        if ours.get(k) != theirs.get(k)
    ]


class BaselineStore:
    """Reads and writes the baselines of one environment under ``directory``."""

    def __init__(self, directory: Path, fingerprint: Mapping[str, str]) -> None:
        self.directory = directory
        self.fingerprint = dict(fingerprint)
        self.environment_dir = directory / environment_id(fingerprint)
        self._cache: dict[Path, BaselineFile | BaselineError | None] = {}

    def path_for(self, module: str, environment_dir: Path | None = None) -> Path:
        base = environment_dir or self.environment_dir
        path = base / module_file_name(module)
        # module_file_name already confines the name; this guards the invariant itself.
        if path.resolve().parent != base.resolve():
            raise BaselineError(f"refusing baseline path {path} outside {base}")
        return path

    def _load(self, path: Path) -> BaselineFile | None:
        if path not in self._cache:
            try:
                self._cache[path] = read_file(path) if path.exists() else None
            except BaselineError as error:
                self._cache[path] = error
        cached = self._cache[path]
        if isinstance(cached, BaselineError):
            raise cached
        return cached

    def lookup(self, module: str, key: str) -> Lookup:
        """This environment's record for ``key``; else a portable one of another environment (another CPU
        model, another jax: see :func:`portability`), one with a stored program first; else whether
        another environment has one that cannot be compared."""
        current = self._load(self.path_for(module))
        if current is not None:
            if current.environment != self.fingerprint:
                fields = "; ".join(differing_fields(self.fingerprint, current.environment))
                return Lookup(NOT_COMPARABLE, None, f"{current.path} was recorded elsewhere ({fields})")
            if key in current.records:
                return Lookup("found", valid_record(current, key), path=current.path)
        others = sorted(p for p in self.directory.glob("*/") if p.is_dir() and p != self.environment_dir)
        portable: list[Lookup] = []
        incomparable = ""
        for other_dir in others:
            try:
                other = self._load(self.path_for(module, other_dir))
            except BaselineError:
                continue
            if other is None or key not in other.records:
                continue
            comparability = portability(self.fingerprint, other.environment)
            if comparability is None:
                fields = "; ".join(differing_fields(self.fingerprint, other.environment))
                incomparable = incomparable or f"only a baseline of another environment ({fields})"
                continue
            portable.append(Lookup("found", valid_record(other, key), "", comparability, other.path))
        if portable:
            # The exact tier first (certain where a replay may find the program unreadable), then a record
            # that can be replayed; among equals, the first directory in name order.
            return min(
                portable,
                key=lambda found: (
                    not found.comparability.exact,
                    not program_stored((found.record or {}).get("program")),
                ),
            )
        return Lookup(NOT_COMPARABLE, None, incomparable) if incomparable else Lookup(NEW)

    def write(self, module: str, records: Mapping[str, dict[str, Any]]) -> Path:
        """Merge ``records`` into the module's file (others kept) and write it atomically.

        The file is read again and written under the environment directory's lock: another process
        recording into the same file meanwhile (a second run, a CI matrix job on a shared volume) keeps
        its records. Raises BaselineError for a file that cannot be read (it is never overwritten) and
        OSError for one that cannot be written.
        """
        path = self.path_for(module)
        with writable.locked(path.parent):
            self._cache.pop(path, None)  # what another recorder wrote since this session read it
            existing = self._load(path)  # raises on a corrupt file: it is never overwritten
            if existing is not None and existing.environment != self.fingerprint:
                raise BaselineError(
                    f"baseline file {path} holds another environment's records; it was not overwritten"
                )
            for key, record in records.items():
                problem = record_problem(record)
                if problem:
                    raise BaselineError(f"refusing to write record {key!r} to {path}: it {problem}; {_KEPT}")
            merged = dict(existing.records) if existing else {}
            merged.update(records)
            document = BaselineFile(path, self.fingerprint, module, merged)
            try:
                text = dumps(document.document())
            except ValueError:  # a number JSON has no word for, deeper than the fields checked above
                where = _non_finite_field(merged)
                raise BaselineError(f"refusing to write {path}: {where} is not finite; {_KEPT}") from None
            writable.write_atomically(path, text)
        self._cache[path] = document
        return path
