"""DeviceSpec: how a device measures (runtime, threads, batch, dtype, graph-opt, protocol), from YAML."""

from __future__ import annotations

import dataclasses
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError
from hwnas.fileio import data_dir, find_named_file, read_yaml, typed

RUNTIMES = ("onnxruntime", "torch", "remote", "executorch", "litert")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float16")
GRAPH_OPT_LEVELS = ("disable", "basic", "extended", "all")
STATISTICS = ("median", "p10")
MIN_REPEATS = 50
# Where `load_device("name")` looks for `name.yaml`: $HWNAS_DEVICES, ./devices, the repo's devices/.
_REPO_DEVICES = data_dir("devices")


@dataclass(frozen=True)
class DeviceSpec:
    """One measurement setup; two specs with equal `identity()` produce comparable numbers."""

    name: str
    runtime: str
    device: str = "cpu"
    threads: int = 1
    batch_size: int = 1
    dtype: str = "float32"
    graph_optimization: str = "all"
    warmup: int = 10
    repeats: int = 50
    measure_memory: bool = True
    cpus: tuple[int, ...] | None = None  # cores to pin measurements to; None: default_cpus(threads) on CPU
    # what one measurement reports as its latency: the median of the timed runs, or their 10th percentile
    # (runs a busy neighbour did not interrupt; on a shared machine it repeats far better than the median)
    statistic: str = "median"
    providers: tuple[str, ...] = ()
    host: str = ""
    port: int = 0
    token_env: str = "HWNAS_AGENT_TOKEN"
    timeout_s: float = 120.0
    max_upload_bytes: int = 64 * 1024 * 1024
    description: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = f" in {self.source}" if self.source else ""
        if not self.name:
            raise ConfigError(f"device spec{where} needs a non-empty `name`")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"device {self.name!r}{where}: runtime {self.runtime!r} is not one of {', '.join(RUNTIMES)}")
        if self.device not in DEVICES:
            raise ConfigError(f"device {self.name!r}{where}: device {self.device!r} is not one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"device {self.name!r}{where}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.statistic not in STATISTICS:
            raise ConfigError(
                f"device {self.name!r}{where}: statistic {self.statistic!r} is not one of {', '.join(STATISTICS)}"
            )
        if self.graph_optimization not in GRAPH_OPT_LEVELS:
            raise ConfigError(
                f"device {self.name!r}{where}: graph_optimization {self.graph_optimization!r} is not one of "
                f"{', '.join(GRAPH_OPT_LEVELS)}"
            )
        for key in ("threads", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"device {self.name!r}{where}: {key} must be >= 1")
        if self.warmup < 0:
            raise ConfigError(f"device {self.name!r}{where}: warmup must be >= 0")
        if self.repeats < MIN_REPEATS:
            raise ConfigError(
                f"device {self.name!r}{where}: repeats must be >= {MIN_REPEATS} (the timing protocol), got {self.repeats}"
            )
        if self.runtime == "remote" and (not self.host or not self.port):
            raise ConfigError(f"remote device {self.name!r}{where} needs `host` and `port` of its agent")
        if self.cpus is not None:
            if any(int(c) < 0 for c in self.cpus) or len(set(self.cpus)) != len(self.cpus):
                raise ConfigError(f"device {self.name!r}{where}: cpus must be distinct core numbers >= 0, got {list(self.cpus)}")
            if self.cpus and len(self.cpus) < self.threads:
                raise ConfigError(
                    f"device {self.name!r}{where}: {self.threads} threads need at least as many cpus, got {list(self.cpus)}"
                )
        if self.dtype == "float16" and self.device == "cpu":
            raise ConfigError(f"device {self.name!r}{where}: float16 is only supported with device: cuda")

    # -- identity --------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """The settings that change measured numbers (what a latency table must match); `statistic`
        only when it is not the median (so tables from before it existed still match median specs)."""
        out = {
            "name": self.name, "runtime": self.runtime, "device": self.device, "threads": self.threads,
            "batch_size": self.batch_size, "dtype": self.dtype,
            "graph_optimization": self.graph_optimization,
        }
        if self.statistic != "median":
            out["statistic"] = self.statistic
        return out

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source")
        data["providers"] = list(self.providers)
        data["cpus"] = None if self.cpus is None else list(self.cpus)
        return data

    def pinned_cpus(self) -> tuple[int, ...]:
        """The local cores measurements run on: `cpus`, or by default the last `threads` cores (local CPU
        specs); () = unpinned (remote specs, whose `cpus` the agent applies on the device; CUDA specs by
        default; `cpus: []`)."""
        from hwnas.devices.timing import default_cpus

        if self.runtime == "remote":  # `cpus` are the device's cores: the agent pins there, not this host
            return ()
        if self.cpus is not None:
            if not self.cpus or not hasattr(os, "sched_getaffinity"):
                return ()
            allowed = os.sched_getaffinity(0)
            missing = sorted(set(self.cpus) - allowed)
            if missing:
                raise ConfigError(
                    f"device {self.name!r}: cpus {missing} are not available to this process (allowed: "
                    f"{sorted(allowed)}); change `cpus` in the spec"
                )
            return tuple(self.cpus)
        if self.runtime == "remote" or self.device != "cpu":
            return ()
        return default_cpus(self.threads)

    def fingerprint(self) -> dict[str, Any]:
        """Identity plus the host: CPU model, OS, runtime versions (remote: asks the agent)."""
        from hwnas.devices.fingerprint import host_fingerprint

        data = dict(self.identity())
        if self.runtime == "remote":
            from hwnas.devices.client import AgentClient

            data["host"] = AgentClient.from_spec(self).info()
        else:
            data["host"] = host_fingerprint(cuda=self.device == "cuda")
        return data

    def with_overrides(self, **changes: Any) -> DeviceSpec:
        return dataclasses.replace(self, **changes)


def _known_keys() -> set[str]:
    return {f.name for f in dataclasses.fields(DeviceSpec)} - {"source"}


def device_from_dict(data: Any, source: str = "") -> DeviceSpec:
    """Parse a mapping (already loaded from YAML) into a DeviceSpec; unknown keys are errors."""
    where = source or "device spec"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a YAML mapping of settings, got {type(data).__name__}")
    unknown = sorted(set(data) - _known_keys())
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)}; valid keys: {', '.join(sorted(_known_keys()))}")
    missing = [k for k in ("name", "runtime") if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r} (runtime: one of {', '.join(RUNTIMES)})")
    kwargs = dict(data)
    if "providers" in kwargs:
        kwargs["providers"] = tuple(typed(kwargs["providers"] or [], list, "providers", where))
    if kwargs.get("cpus") is not None:
        cpus = kwargs["cpus"]
        if not isinstance(cpus, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in cpus):
            raise ConfigError(f"{where}: cpus must be a list of core numbers, e.g. [1], got {cpus!r}")
        kwargs["cpus"] = tuple(cpus)
    types = {"threads": int, "batch_size": int, "warmup": int, "repeats": int, "port": int,
             "max_upload_bytes": int, "timeout_s": float}
    for key, kind in types.items():
        if key in kwargs:
            kwargs[key] = typed(kwargs[key], kind, key, where)
    for key in ("name", "runtime", "device", "dtype", "graph_optimization", "host", "token_env", "description",
                "statistic"):
        if key in kwargs and not isinstance(kwargs[key], str):
            raise ConfigError(f"{where}: {key} must be a string, got {kwargs[key]!r}")
    if "measure_memory" in kwargs and not isinstance(kwargs["measure_memory"], bool):
        raise ConfigError(f"{where}: measure_memory must be true or false")
    return DeviceSpec(**kwargs, source=source)


def _search_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("HWNAS_DEVICES", "").split(os.pathsep) if p]
    return dirs + [Path.cwd() / "devices", _REPO_DEVICES]


def load_device(path_or_name: str | os.PathLike[str] | DeviceSpec) -> DeviceSpec:
    """A DeviceSpec from a YAML path or a name under devices/ (e.g. `ort-cpu-1t`)."""
    if isinstance(path_or_name, DeviceSpec):
        return path_or_name
    path = find_named_file(path_or_name, _search_dirs(), "device spec")
    return device_from_dict(read_yaml(path, "device spec"), source=str(path))


def cpu_model() -> str:
    """The CPU model string (Linux /proc/cpuinfo, else platform)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
