"""Settings: built-in defaults < TOML file < environment < command line, validated once.

Every field of :class:`Settings` can be set in the TOML file (top-level keys),
in the environment as ``CLUSTER_WORKERS_<FIELD>`` (e.g.
``CLUSTER_WORKERS_DATABASE_URL``) and on the command line.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from cluster_workers.db.connect import Database
from cluster_workers.errors import ConfigError
from cluster_workers.run.params import ClusteringParams

ENV_PREFIX = "CLUSTER_WORKERS_"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "cluster_workers.toml"  # config/cluster_workers.toml links here
BACKENDS = ("loky", "dask")
_DEFAULTS = ClusteringParams()


@dataclass(frozen=True)
class Settings:
    """Everything one clustering run needs; plain values only, so it pickles to workers."""

    database_url: str = "sqlite:///demo/experiments.db"
    downsample: int = 10
    offset: int = 0  # keep the text steps whose number is offset modulo downsample (0: today's sample)
    # the clustering parameters: see cluster_workers.run.params.ClusteringParams (defined and validated there)
    min_cluster_size: int = _DEFAULTS.min_cluster_size  # 0 = auto: max(2, int(n * 0.001))
    min_samples: int = _DEFAULTS.min_samples  # 0 = same as min_cluster_size; scikit-learn's convention
    epsilon: float = _DEFAULTS.cluster_selection_epsilon  # cluster_selection_epsilon
    allow_single_cluster: bool = _DEFAULTS.allow_single_cluster
    cluster_selection_method: str = _DEFAULTS.cluster_selection_method
    engine: str = _DEFAULTS.engine
    medoid: str = _DEFAULTS.medoid
    engine_params: tuple[str, ...] = ()  # KEY=VALUE for the evoc engine (engines/evoc.py), e.g. ("threads=2", "noise_level=0.3")
    min_samples_to_cluster: int = 2  # HDBSCAN needs 2; the application's owners asked that only smaller models be skipped
    models: tuple[str, ...] = ()  # empty = every model in the database
    experiment: str = ""  # cluster only this experiment's runs (an experiment id); empty = every run
    force: bool = False
    cascade: bool = False  # with force: also replace-away the results made from those replaced (assign, recut)
    rollback: bool = False  # write every row, then roll the transaction back (bench: measures, changes nothing)
    skip_bad_vectors: bool = False  # skip (and count) bad vectors / orphan embeddings instead of failing
    workers: int = 0  # 0 = one per model, at most the number of cores
    timeout: float = 3600.0  # seconds per model (wall clock, from worker start)
    busy_timeout: float = 30.0  # seconds to wait for a lock another writer holds (SQLite busy_timeout, PostgreSQL lock_timeout)
    statement_timeout: float = 3600.0  # PostgreSQL: longest single SQL statement, seconds (0 = no limit)
    connect_timeout: float = 10.0  # PostgreSQL: seconds to wait for the server to answer
    backend: str = "loky"
    scheduler: str = ""
    log_dir: str = "logs"  # where bin/cluster writes clustering_<timestamp>.log
    memory_limit_mb: float = 0.0  # memory the workers may use together; 0 = what the system reports available

    def __post_init__(self) -> None:
        validate(self)

    @property
    def clustering(self) -> ClusteringParams:
        """The clustering parameters as one validated value."""
        return ClusteringParams(
            min_cluster_size=self.min_cluster_size,
            min_samples=self.min_samples,
            cluster_selection_epsilon=self.epsilon,
            allow_single_cluster=self.allow_single_cluster,
            cluster_selection_method=self.cluster_selection_method,
            engine=self.engine,
            medoid=self.medoid,
            engine_options=parse_engine_params(self.engine_params),
        )

    @property
    def database(self) -> Database:
        """The database and the lock wait every read-only command uses."""
        return Database(self.database_url, self.busy_timeout)

    @property
    def db_limits(self) -> dict[str, float]:
        """The bounded waits, as ``make_engine`` keyword arguments."""
        return {
            "busy_timeout": self.busy_timeout,
            "statement_timeout": self.statement_timeout,
            "connect_timeout": self.connect_timeout,
        }

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


def parse_engine_params(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``("threads=2", ...)`` as ``(("threads", "2"), ...)``; a later KEY wins."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"engine parameter must be KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value.strip()
    return tuple(sorted(pairs.items()))


def validate(s: Settings) -> None:
    """Raise :class:`ConfigError` naming the first bad value."""
    if not isinstance(s.downsample, int) or isinstance(s.downsample, bool) or s.downsample < 1:
        raise ConfigError(f"downsample must be a positive integer, got {s.downsample!r}")
    if not isinstance(s.offset, int) or isinstance(s.offset, bool) or not 0 <= s.offset < s.downsample:
        raise ConfigError(f"offset must be an integer from 0 to downsample - 1 ({s.downsample - 1}), got {s.offset!r}")
    _ = s.clustering  # building it validates the clustering parameters
    if s.min_samples_to_cluster < 2:
        raise ConfigError(f"min_samples_to_cluster must be >= 2, got {s.min_samples_to_cluster!r}")
    if s.backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {s.backend!r}")
    if s.workers < 0:
        raise ConfigError(f"workers must be >= 0, got {s.workers!r}")
    if s.timeout <= 0 or s.busy_timeout < 0:
        raise ConfigError("timeout must be > 0 and busy_timeout >= 0")
    if s.statement_timeout < 0 or s.connect_timeout <= 0:
        raise ConfigError("statement_timeout must be >= 0 and connect_timeout > 0")
    if s.memory_limit_mb < 0:
        raise ConfigError(f"memory_limit_mb must be >= 0, got {s.memory_limit_mb!r}")
    if not s.database_url:
        raise ConfigError("database_url is empty")


def _coerce(name: str, raw: Any) -> Any:
    """Turn a TOML/env/CLI value into the type of field ``name``."""
    field_types = {f.name: f.type for f in fields(Settings)}
    if name not in field_types:
        raise ConfigError(f"unknown setting {name!r}")
    kind = field_types[name]
    try:
        if kind == "bool":
            if isinstance(raw, str):
                if raw.strip().lower() in ("1", "true", "yes", "on"):
                    return True
                if raw.strip().lower() in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(raw)
            return bool(raw)
        if kind == "int":
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind.startswith("tuple"):
            if isinstance(raw, str):
                return tuple(part.strip() for part in raw.split(",") if part.strip())
            return tuple(str(part) for part in raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name} has an invalid value: {raw!r}") from None


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML config file; keys may sit at top level or under ``[cluster_workers]``."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    data = data.get("cluster_workers", data)
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):  # allow [clustering] / [database] style sections
            flat.update(value)
        else:
            flat[key] = value
    return flat


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build validated settings: defaults < TOML < environment < ``overrides`` (None values ignored)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        file_values = read_toml(Path(path))
    elif DEFAULT_CONFIG_PATH.exists():
        file_values = read_toml(DEFAULT_CONFIG_PATH)
    else:
        file_values = {}
    for key, raw in file_values.items():
        values[key] = _coerce(key, raw)
    for f in fields(Settings):
        env_key = ENV_PREFIX + f.name.upper()
        if env_key in environ:
            values[f.name] = _coerce(f.name, environ[env_key])
    for key, raw in (overrides or {}).items():
        if raw is not None:
            values[key] = _coerce(key, raw)
    return Settings(**values)
