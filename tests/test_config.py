"""The schema layer (hwnas.config): every config kind is checked one way, with one-line errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from hwnas.config import check, parse, parse_kwargs, setting
from hwnas.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    atol: float = setting(1e-3, gt=0)


@dataclass(frozen=True)
class Toy:
    name: str
    mode: str = setting("fast", choices=("fast", "exact"))
    count: int = setting(1, ge=1, why="at least one run")
    cores: tuple[int, ...] | None = None
    options: Mapping[str, str | int | bool] = setting({})
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        check(self, "toy")


@pytest.mark.parametrize("data, message", [
    ({"name": "a", "cuont": 2}, "f.yaml: unknown key(s) cuont (did you mean count?); valid keys: "),
    ({"count": 2}, "f.yaml: missing required key 'name'"),
    ({"name": "a", "count": "two"}, "f.yaml: count must be an integer, got 'two' (str)"),
    ({"name": "a", "count": True}, "f.yaml: count must be an integer, got True (bool)"),
    ({"name": "a", "count": 0}, "f.yaml: count must be >= 1 (at least one run), got 0"),
    ({"name": "a", "mode": "exakt"}, "f.yaml: mode 'exakt' is not one of fast, exact (did you mean exact?)"),
    ({"name": "a", "cores": [0, "1"]}, "f.yaml: cores[1] must be an integer, got '1' (str)"),
    ({"name": "a", "options": {"k": [1]}}, "options.k must be a string, an integer or true or false, got [1]"),
    ({"name": "a", "inner": {"atol": "tiny"}}, "f.yaml inner: atol must be a number, got 'tiny' (str)"),
    ({"name": "a", "inner": {"atol": 0}}, "f.yaml inner: atol must be > 0, got 0.0"),
    ({"name": "a", "inner": {"atl": 1}}, "f.yaml inner: unknown key(s) atl (did you mean atol?)"),
    (["name"], "f.yaml: this file must be a mapping of keys name, mode, count"),
])
def test_bad_values_name_the_file_the_field_and_what_is_valid(data, message):
    with pytest.raises(ConfigError) as info:
        parse(Toy, data, "f.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_values_are_converted_to_their_types():
    toy = parse(Toy, {"name": "a", "cores": [2, 3], "options": {"id": 0, "algo": "HEURISTIC"},
                      "inner": {"atol": 1}}, "f.yaml")
    assert toy.cores == (2, 3) and toy.inner.atol == 1.0 and isinstance(toy.inner.atol, float)
    assert toy.options == {"id": 0, "algo": "HEURISTIC"} and parse(Toy, {"name": "b"}, "f").options == {}


def test_limits_hold_for_objects_built_in_python_too():
    with pytest.raises(ConfigError, match="toy: count must be >= 1"):
        Toy("a", count=0)
    with pytest.raises(ConfigError, match="toy: mode 'slow' is not one of fast, exact"):
        Toy("a", mode="slow")


def _strategy(space, objectives, seed=0, *, population_size: int = 8, rate: float = 0.5, greedy: bool = False):
    return population_size, rate, greedy


def test_keyword_parameters_are_typed_from_the_annotations():
    assert parse_kwargs(_strategy, {"rate": 1, "greedy": True}, "r.yaml", "strategy 'x'") == {"rate": 1.0, "greedy": True}
    with pytest.raises(ConfigError, match=r"r.yaml: strategy 'x' has no parameter\(s\) populaton_size "
                                          r"\(did you mean population_size\?\); valid: greedy, population_size, rate"):
        parse_kwargs(_strategy, {"populaton_size": 3}, "r.yaml", "strategy 'x'")
    with pytest.raises(ConfigError, match="population_size must be an integer, got 2.5"):
        parse_kwargs(_strategy, {"population_size": 2.5}, "r.yaml", "strategy 'x'")
    with pytest.raises(ConfigError, match="greedy must be true or false, got 1"):
        parse_kwargs(_strategy, {"greedy": 1}, "r.yaml", "strategy 'x'")


def test_make_strategy_checks_types_like_a_recipe():
    from hwnas.search.strategies import make_strategy
    from hwnas.spaces import get_space

    with pytest.raises(ConfigError, match="population_size must be an integer, got '8'"):
        make_strategy("nsga2", get_space("nb201"), 2, 0, {"population_size": "8"})
    with pytest.raises(ConfigError, match=r"nsga2 needs population_size >= 4"):  # ranges stay in the constructor
        make_strategy("nsga2", get_space("nb201"), 2, 0, {"population_size": 2})


def test_device_spec_provider_options(tmp_path):
    from hwnas.devices import load_device

    path = tmp_path / "gpu.yaml"
    path.write_text("name: g\nruntime: onnxruntime\ndevice: cuda\nprovider_options:\n  device_id: 1\n"
                    "  cudnn_conv_algo_search: HEURISTIC\n")
    spec = load_device(path)
    assert spec.provider_options == {"device_id": 1, "cudnn_conv_algo_search": "HEURISTIC"}
    assert spec.identity()["provider_options"] == spec.provider_options  # they change the numbers
    assert "provider_options" not in load_device("ort-cpu-1t").identity()  # old tables still match
    assert load_device(path) == spec and hash(load_device(path)) == hash(spec)
    path.write_text("name: g\nruntime: onnxruntime\nprovider_options: [device_id]\n")
    with pytest.raises(ConfigError, match="provider_options must be a mapping, got"):
        load_device(path)


def test_a_repeated_yaml_key_is_an_error_and_merge_keys_still_work(tmp_path):
    from hwnas.fileio import read_yaml

    path = tmp_path / "r.yaml"
    path.write_text("base: &b {epochs: 1}\ntrain:\n  <<: *b\n  epochs: 2\n")
    assert read_yaml(path, "recipe")["train"] == {"epochs": 2}
    path.write_text("budget: 5\nseed: 0\nbudget: 3\n")
    with pytest.raises(ConfigError, match=r"r.yaml is not valid YAML: key 'budget' appears twice \(lines 1 and 3\)"):
        read_yaml(path, "recipe")


def test_overrides_are_checked_like_the_file():
    from hwnas.search.recipe import parse_recipe

    recipe = parse_recipe({"space": "mobile", "objectives": ["params"]}, "r.yaml")
    with pytest.raises(ConfigError, match="r.yaml: budget must be >= 1, got 0"):
        recipe.with_overrides(budget=0)
    assert recipe.with_overrides(budget=7).budget == 7
