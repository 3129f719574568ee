"""DeviceSpec: how a device measures (runtime, threads, batch, dtype, graph-opt, protocol), from YAML."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.config import check, parse, setting
from hwnas.devices.fingerprint import cpu_model, host_fingerprint  # noqa: F401 - cpu_model re-exported
from hwnas.errors import ConfigError
from hwnas.fileio import data_dir, find_named_file, read_yaml

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
    """One measurement setup; two specs with equal `identity()` produce comparable numbers.

    Its fields are the keys of a device YAML file: types and limits are checked by `hwnas.config`."""

    name: str
    runtime: str = setting(choices=RUNTIMES)
    device: str = setting("cpu", choices=DEVICES)
    threads: int = setting(1, ge=1)
    batch_size: int = setting(1, ge=1)
    dtype: str = setting("float32", choices=DTYPES)
    graph_optimization: str = setting("all", choices=GRAPH_OPT_LEVELS)
    warmup: int = setting(10, ge=0)
    repeats: int = setting(50, ge=MIN_REPEATS, why="the timing protocol")
    measure_memory: bool = True
    cpus: tuple[int, ...] | None = setting(None, expect="a list of core numbers, e.g. [1]")  # cores to pin measurements to; None: default_cpus(threads) on CPU
    # what one measurement reports as its latency: the median of the timed runs, or their 10th percentile
    # (runs a busy neighbour did not interrupt; on a shared machine it repeats far better than the median)
    statistic: str = setting("median", choices=STATISTICS)
    providers: tuple[str, ...] = ()
    # runtime options of the execution provider (ONNX Runtime CUDA: device_id, cudnn_conv_algo_search, ...)
    provider_options: Mapping[str, str | int | float | bool] = setting({}, hash=False)
    host: str = ""
    port: int = setting(0, ge=0, le=65535)
    token_env: str = "HWNAS_AGENT_TOKEN"
    tls_fingerprint: str = ""  # remote: SHA-256 of the agent's certificate (it prints it), or "insecure"
    timeout_s: float = setting(120.0, gt=0)
    max_upload_bytes: int = setting(64 * 1024 * 1024, ge=1)
    description: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        place = f" in {self.source}" if self.source else ""
        if not self.name:
            raise ConfigError(f"device spec{place} needs a non-empty `name`")
        where = f"device {self.name!r}{place}"
        check(self, where)
        if self.runtime == "remote" and (not self.host or not self.port):
            raise ConfigError(f"remote {where} needs `host` and `port` of its agent")
        if self.cpus is not None:
            if any(int(c) < 0 for c in self.cpus) or len(set(self.cpus)) != len(self.cpus):
                raise ConfigError(f"{where}: cpus must be distinct core numbers >= 0, got {list(self.cpus)}")
            if self.cpus and len(self.cpus) < self.threads:
                raise ConfigError(f"{where}: {self.threads} threads need at least as many cpus, got {list(self.cpus)}")
        if self.dtype == "float16" and self.device == "cpu":
            raise ConfigError(f"{where}: float16 is only supported with device: cuda")

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
        if self.provider_options:
            out["provider_options"] = dict(sorted(self.provider_options.items()))
        return out

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source")
        data["providers"] = list(self.providers)
        data["cpus"] = None if self.cpus is None else list(self.cpus)
        data["provider_options"] = dict(self.provider_options)
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
        data = dict(self.identity())
        if self.runtime == "remote":
            from hwnas.devices.client import AgentClient

            data["host"] = AgentClient.from_spec(self).info()
        else:
            data["host"] = host_fingerprint(cuda=self.device == "cuda")
        return data

    def with_overrides(self, **changes: Any) -> DeviceSpec:
        return dataclasses.replace(self, **changes)


def device_from_dict(data: Any, source: str = "") -> DeviceSpec:
    """Parse a mapping (already loaded from YAML) into a DeviceSpec; unknown keys are errors."""
    return parse(DeviceSpec, data, source or "device spec", source=source)


def _search_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("HWNAS_DEVICES", "").split(os.pathsep) if p]
    return dirs + [Path.cwd() / "devices", _REPO_DEVICES]


def load_device(path_or_name: str | os.PathLike[str] | DeviceSpec) -> DeviceSpec:
    """A DeviceSpec from a YAML path or a name under devices/ (e.g. `ort-cpu-1t`)."""
    if isinstance(path_or_name, DeviceSpec):
        return path_or_name
    path = find_named_file(path_or_name, _search_dirs(), "device spec")
    return device_from_dict(read_yaml(path, "device spec"), source=str(path))
