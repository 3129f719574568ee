"""Every bad input of the reliability audit (issue 13) gets one `hwnas: error:` line and exit 2.

The fixtures are built here, in a temporary folder, from the files shipped in the repository; each
case calls the CLI in-process (`hwnas.cli.main`). Case names are the audit's.
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from hwnas.cli import main

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "latency_tables" / "ort-cpu-1t" / "nb201-cifar100.json"
MOBILE = "k3_e1-k3_e1-k3_e1-k3_e1-k3_e1-k3_e1-k3_e1"


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _build_fixtures(fx: Path, bench_csv: Path) -> dict[str, str]:
    """The audit's `fx/` folder; returns names for the case templates (e.g. run ids)."""
    import torch

    from hwnas.spaces import get_space
    from hwnas.train.checkpoint import checkpoint_bytes

    with bench_csv.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [next(reader) for _ in range(60)]
    lat = header.index("pi5_onnx_latency_ms")
    _write_csv(fx / "small.csv", header, rows)
    _write_csv(fx / "tiny.csv", header, rows[:5])
    (fx / "binary.csv").write_bytes(bytes([0x00, 0xFF, 0xFE, 0x80]) * 64)
    _write_csv(fx / "allnan.csv", header, [r[:2] + ["nan"] * (len(r) - 2) for r in rows])
    _write_csv(fx / "neglat.csv", header, [r[:lat] + [str(-float(r[lat]))] + r[lat + 1:] for r in rows])
    _write_csv(fx / "nancell.csv", header, [r[:lat] + ["nan"] + r[lat + 1:] if i == 7 else r for i, r in enumerate(rows)])
    _write_csv(fx / "dup.csv", header, rows + rows[:3])
    acc = header.index("accuracy")
    _write_csv(fx / "acc250.csv", header, [r[:acc] + ["250"] + r[acc + 1:] if i == 7 else r for i, r in enumerate(rows)])
    with bench_csv.open(newline="") as fh:  # the full table with one impossible accuracy (audit 3, case 8)
        full = list(csv.reader(fh))[1:]
    _write_csv(fx / "acc250_full.csv", header, [r[:acc] + ["250"] + r[acc + 1:] if i == 7 else r for i, r in enumerate(full)])
    rep = header.index("rep_arch_idx")
    _write_csv(fx / "badrep.csv", header, [r[:rep] + ["999999"] + r[rep + 1:] if i == 3 else r for i, r in enumerate(rows)])

    tables = fx / "tables"
    tables.mkdir()
    base = json.loads(TABLE.read_text())
    first = next(iter(base["entries"]))

    def table(name: str, change) -> None:
        data = copy.deepcopy(base)
        change(data)
        (tables / f"{name}.json").write_text(json.dumps(data).replace("NaN-marker", "NaN"))

    table("copy-nb201", lambda d: None)
    table("no_entries", lambda d: d.update(entries={}))
    table("median_str", lambda d: d["entries"][first].update(median_ms="fast"))
    table("median_neg", lambda d: d["entries"][first].update(median_ms=-0.5))
    table("median_zero", lambda d: d["entries"][first].update(median_ms=0))
    (tables / "median_nan.json").write_text(
        json.dumps(base).replace(f'"{first}": {{', f'"{first}": {{"median_ms": NaN, ', 1).replace(
            f'"median_ms": {base["entries"][first]["median_ms"]}, ', "", 1))
    assert json.loads((tables / "median_nan.json").read_text())["entries"][first]["median_ms"] != 1.0
    table("calib_str", lambda d: d.update(calibration="none"))
    table("calib_scale_str", lambda d: d["calibration"].update(scale="one"))
    table("device_list", lambda d: d.update(device=["ort-cpu-1t"]))
    table("device_str", lambda d: d.update(device="ort-cpu-1t"))
    table("entries_list", lambda d: d.update(entries=[1, 2]))
    table("n_str", lambda d: d["entries"][first].update(n="many"))
    table("calib_neg", lambda d: d["calibration"].update(scale=-2.0))

    rec = fx / "rec"
    rec.mkdir()
    ok = {"name": "ok", "space": "nb201:cifar100", "objectives": ["params", "latency_ms"],
          "latency_table": str(TABLE), "strategy": {"name": "nsga2", "params": {"population_size": 4}},
          "seed": 0, "budget": 4, "executor": "inline"}
    _yaml(rec / "ok.yaml", ok)
    _yaml(rec / "other.yaml", {**ok, "name": "other", "objectives": ["params", "macs"]})
    variants = {
        "execint": {"executor": 5},
        "popstr": {"strategy": {"name": "nsga2", "params": {"population_size": "four"}}},
        "train_list": {"train": [1, 2]},
        "train_str": {"train": {"epochs": "two"}},
        "dataset_bad_acc": {"dataset": "cifar10", "objectives": ["accuracy", "latency_ms"]},
        "dataset_bad": {"dataset": "no-such-data"},
        "budgetfloat": {"budget": 2.5},
        "budgetzero": {"budget": 0},
        "execneg": {"executor": {"name": "inline", "workers": -1}},
        "execneg_local": {"executor": {"name": "local", "workers": -1}},
        "seedstr": {"seed": "zero"},
        "namelist": {"name": ["a"]},
        "seedneg": {"seed": -1},
    }
    for name, change in variants.items():
        _yaml(rec / f"{name}.yaml", {**ok, **change})
    (rec / "dupkey.yaml").write_text((rec / "ok.yaml").read_text() + "budget: 3\n")  # budget twice

    dev = fx / "dev"
    dev.mkdir()
    spec = {"name": "ort-cpu-1t", "runtime": "onnxruntime", "device": "cpu", "threads": 1, "repeats": 50}
    _yaml(dev / "noruntime.yaml", {k: v for k, v in spec.items() if k != "runtime"})
    _yaml(dev / "threads_str.yaml", {**spec, "threads": "two"})
    _yaml(dev / "repeats_float.yaml", {**spec, "repeats": 60.5})
    _yaml(fx / "exr_str.yaml", {"opset": "eighteen"})
    _yaml(fx / "exr_parity_str.yaml", {"parity": {"atol": "tiny"}})

    space = get_space("mobile")
    arch = space.parse(MOBILE)
    torch.manual_seed(0)
    good = space.build(arch)
    (fx / "badmeta.safetensors").write_bytes(checkpoint_bytes(arch, good).replace(b'"meta":"{}"', b'"meta":"{x"'))
    other = space.build(space.parse("k5_e6-k5_e6-k5_e6-k5_e6-k5_e6-k5_e6-k5_e6"))
    (fx / "mism.safetensors").write_bytes(checkpoint_bytes(arch, other))

    db = f"sqlite:///{fx / 'rec.db'}"
    assert main(["search", str(rec / "ok.yaml"), "--storage", db, "--quiet", "--name", "ok-run"]) == 0
    assert main(["search", str(rec / "other.yaml"), "--storage", db, "--quiet", "--name", "other-run"]) == 0
    return {"db": db}


# (audit name, argv with {fx} and {db} placeholders, a fragment the error line must hold)
CASES: list[tuple[str, str, str]] = [
    # -- the agent's flags
    ("ag_host_bad", "agent serve --host no.such.host.invalid --port 0", "not an address"),
    ("ag_port_big", "agent serve --port 99999", "not a TCP port"),
    ("ag_port_neg", "agent serve --port -1", "not a TCP port"),
    ("ag_upload_neg", "agent serve --port 0 --max-upload-mb -1", "--max-upload-mb"),
    # -- bench over a CSV
    ("b_allnan", "bench --budget 10 --seeds 2 --strategies random --table {fx}/allnan.csv", "line 2"),
    ("b_binary", "bench --budget 10 --seeds 2 --strategies random --table {fx}/binary.csv", "not a text CSV"),
    ("b_plot_unwr", "bench --budget 10 --seeds 2 --strategies random --table {fx}/small.csv "
                    "--plot {fx}/small.csv/x.png", "not a directory"),
    ("b_neg", "bench --budget 10 --seeds 2 --strategies random --table {fx}/neglat.csv", "must be > 0"),
    ("b_nan", "bench --budget 10 --seeds 2 --strategies random --table {fx}/nancell.csv", "line 9"),
    ("b_strat_empty", "bench --budget 10 --seeds 2 --strategies , --table {fx}/small.csv", "--strategies"),
    ("b_dup", "bench --budget 10 --seeds 2 --strategies random --table {fx}/dup.csv", "line 62"),
    ("b_budget_huge", "bench --budget 100000 --seeds 1 --strategies random --table {fx}/tiny.csv", "5 archs"),
    ("b_budget0", "bench --budget 0 --seeds 1 --strategies random --table {fx}/tiny.csv", "--budget"),
    # -- device specs and profiling
    ("dev_noruntime", "profile --device {fx}/dev/noruntime.yaml --space nb201 --out {fx}/dev_noruntime.json "
                      "--rounds 1 --calibrate 0 --no-progress", "runtime"),
    ("dev_threads_str", "profile --device {fx}/dev/threads_str.yaml --space nb201 --out {fx}/d.json "
                        "--rounds 1 --calibrate 0 --no-progress", "threads must be an integer"),
    ("dev_repeats_float", "profile --device {fx}/dev/repeats_float.yaml --space nb201 --out {fx}/d.json "
                          "--rounds 1 --calibrate 0 --no-progress", "repeats must be an integer"),
    ("prof_unwritable", "profile --device ort-cpu-1t --space nb201 --out /proc/nope/x.json --rounds 1 "
                        "--calibrate 0 --no-progress", "/proc/nope"),
    ("prof_rounds0", "profile --device ort-cpu-1t --space nb201 --out {fx}/r0.json --rounds 0 --calibrate 0 "
                     "--no-progress", "--rounds"),
    ("prof_calneg", "profile --device ort-cpu-1t --space nb201 --out {fx}/rneg.json --rounds 1 --calibrate -3 "
                    "--no-progress", "--calibrate"),
    # -- export
    ("ex_outfile", f"export --recipe fast --no-measure --space mobile --arch {MOBILE} --out {{fx}}/small.csv",
     "not a folder"),
    ("ex_outunwr", f"export --recipe fast --no-measure --space mobile --arch {MOBILE} --out {{fx}}/small.csv/out",
     "not a directory"),
    ("ex_st_badmeta", f"export --recipe fast --no-measure --space mobile --arch {MOBILE} --out {{fx}}/e31 "
                      "--weights {fx}/badmeta.safetensors", "meta"),
    ("ex_st_mism", f"export --recipe fast --no-measure --space mobile --arch {MOBILE} --out {{fx}}/e30 "
                   "--weights {fx}/mism.safetensors", "does not match"),
    ("ex_st_onlyweights", "export --recipe fast --no-measure --out {fx}/e34 --weights {fx}/mism.safetensors",
     "does not match"),
    ("exr_str", f"export --space mobile --arch {MOBILE} --out {{fx}}/o_exr_str --recipe {{fx}}/exr_str.yaml "
                "--no-measure", "opset must be an integer"),
    ("exr_parity_str", f"export --space mobile --arch {MOBILE} --out {{fx}}/o_exr_p "
                       "--recipe {fx}/exr_parity_str.yaml --no-measure", "atol must be a number"),
    # -- fit-table over a CSV
    ("ft_binary", "fit-table --space nb201:cifar100 --target-column pi5_onnx_latency_ms --train 20 "
                  "--measurements {fx}/binary.csv", "not a text CSV"),
    ("ft_out_unwr", "fit-table --space nb201:cifar100 --target-column pi5_onnx_latency_ms --train 20 "
                    "--measurements {fx}/small.csv --out {fx}/small.csv/x.json", "not a directory"),
    ("ft_neglat", "fit-table --space nb201:cifar100 --target-column pi5_onnx_latency_ms --train 20 "
                  "--measurements {fx}/neglat.csv", "must be > 0"),
    ("ft_nan", "fit-table --space nb201:cifar100 --target-column pi5_onnx_latency_ms --train 20 "
               "--measurements {fx}/nancell.csv", "line 9"),
    ("ft_badrep", "fit-table --space nb201:cifar100 --target-column pi5_onnx_latency_ms --train 20 "
                  "--measurements {fx}/badrep.csv", "rep_arch_idx"),
    # -- recipes
    ("r_execint", "search {fx}/rec/execint.yaml --storage {db} --quiet", "executor"),
    ("r_popstr", "search {fx}/rec/popstr.yaml --storage {db} --quiet", "population_size must be an integer"),
    ("r_train_list", "search {fx}/rec/train_list.yaml --storage {db} --quiet", "train must be a mapping"),
    ("r_train_str", "search {fx}/rec/train_str.yaml --storage {db} --quiet", "epochs must be an integer"),
    ("r_dataset_bad_acc", "search {fx}/rec/dataset_bad_acc.yaml --storage {db} --quiet", "cifar10"),
    ("r_dataset_bad", "search {fx}/rec/dataset_bad.yaml --storage {db} --quiet", "no-such-data"),
    ("r_budgetfloat", "search {fx}/rec/budgetfloat.yaml --storage {db} --quiet", "budget must be an integer"),
    ("r_budgetzero", "search {fx}/rec/budgetzero.yaml --storage {db} --quiet", "budget"),
    ("r_execneg", "search {fx}/rec/execneg.yaml --storage {db} --quiet", "workers"),
    ("r_execneg_local", "search {fx}/rec/execneg_local.yaml --storage {db} --quiet", "workers"),
    ("r_seedstr", "search {fx}/rec/seedstr.yaml --storage {db} --quiet", "seed must be an integer"),
    ("r_namelist", "search {fx}/rec/namelist.yaml --storage {db} --quiet", "name must be a string"),
    # -- third audit (bad-inputs-r3.md): 1, 7, 8, 9, 10, 12, 13
    ("r3_seedneg", "search {fx}/rec/seedneg.yaml --storage {db} --quiet", "seed must be >= 0, got -1"),
    ("r3_calib_neg", "search {fx}/rec/ok.yaml --storage {db} --quiet --table {fx}/tables/calib_neg.json",
     "scale must be > 0"),
    ("r3_acc250_full", "bench --budget 10 --seeds 2 --strategies random --table {fx}/acc250_full.csv",
     "line 9: accuracy=250 is not an accuracy"),
    ("r3_acc250", "bench --budget 10 --seeds 2 --strategies random --table {fx}/acc250.csv",
     "line 9: accuracy=250 is not an accuracy"),
    ("r3_dupkey", "search {fx}/rec/dupkey.yaml --storage {db} --quiet", "key 'budget' appears twice"),
    ("r3_sample_huge", "sample mobile --n 99999999999999999999999", "n must be <= 100,000"),
    ("r3_pick_neg", "export --run ok-run --storage {db} --pick latency<=-1 --out {fx}/e_pick --no-measure",
     "must be a positive number"),
    # -- search command line
    ("sc_plot_unwr", "search {fx}/rec/ok.yaml --storage {db} --quiet --plot {fx}/small.csv/p.png",
     "not a directory"),
    ("sc_storage_unwr", "search {fx}/rec/ok.yaml --storage sqlite:///{fx}/small.csv/x.db --quiet",
     "not a directory"),
    ("sc_workers0", "search {fx}/rec/ok.yaml --storage {db} --quiet --workers -1 --executor local", "--workers"),
    ("sc_budget0", "search {fx}/rec/ok.yaml --storage {db} --quiet --budget 0", "--budget"),
    ("sc_budget_neg", "search {fx}/rec/ok.yaml --storage {db} --quiet --budget -1", "--budget"),
    # -- latency tables in a search
    ("st_no_entries", "search {fx}/rec/ok.yaml --storage {db} --budget 6 --quiet --table {fx}/tables/no_entries.json",
     "first 3 evaluations all failed"),
    ("st_median_str", "search {fx}/rec/ok.yaml --storage {db} --budget 6 --quiet --table {fx}/tables/median_str.json",
     "median_ms must be a number"),
    ("st_median_neg", "search {fx}/rec/ok.yaml --storage {db} --budget 6 --quiet --table {fx}/tables/median_neg.json",
     "median_ms must be > 0"),
    ("st_median_zero", "search {fx}/rec/ok.yaml --storage {db} --budget 6 --quiet "
                       "--table {fx}/tables/median_zero.json", "median_ms must be > 0"),
    ("st_median_nan", "search {fx}/rec/ok.yaml --storage {db} --budget 6 --quiet --table {fx}/tables/median_nan.json",
     "median_ms must be > 0"),
    # -- validate
    ("v_calib_str", "validate --table {fx}/tables/calib_str.json --device ort-cpu-1t --samples 3 --rounds 1 "
                    "--plot {fx}/v.png", "calibration must be a mapping"),
    ("v_calib_scale_str", "validate --table {fx}/tables/calib_scale_str.json --device ort-cpu-1t --samples 3 "
                          "--rounds 1 --plot {fx}/v.png", "scale must be a number"),
    ("v_device_list", "validate --table {fx}/tables/device_list.json --device ort-cpu-1t --samples 3 --rounds 1 "
                      "--plot {fx}/v.png", "device must be a mapping"),
    ("v_device_str", "validate --table {fx}/tables/device_str.json --device ort-cpu-1t --samples 3 --rounds 1 "
                     "--plot {fx}/v.png", "device must be a mapping"),
    ("v_entries_list", "validate --table {fx}/tables/entries_list.json --device ort-cpu-1t --samples 3 "
                       "--rounds 1 --plot {fx}/v.png", "entries must be a mapping"),
    ("v_n_str", "validate --table {fx}/tables/n_str.json --device ort-cpu-1t --samples 3 --rounds 1 "
                "--plot {fx}/v.png", "n must be an integer"),
    ("va_plot", "validate --table {fx}/tables/copy-nb201.json --device ort-cpu-1t --samples 3 --rounds 1 "
                "--plot {fx}/small.csv/va.png", "not a directory"),
    ("va_s0", "validate --table {fx}/tables/copy-nb201.json --device ort-cpu-1t --samples 0 --rounds 1 "
              "--plot {fx}/va.png", "--samples"),
    ("va_sneg", "validate --table {fx}/tables/copy-nb201.json --device ort-cpu-1t --samples -2 --rounds 1 "
                "--plot {fx}/va.png", "--samples"),
    ("va_r0", "validate --table {fx}/tables/copy-nb201.json --device ort-cpu-1t --samples 3 --rounds 0 "
              "--plot {fx}/va.png", "--rounds"),
    # -- reports and run listings
    ("rp_outdir", "report ok-run --storage {db} --out {fx}", "is a directory"),
    ("rp_unwr", "report ok-run --storage {db} --out {fx}/small.csv/r.md", "not a directory"),
    ("rp_baseline_other", "report ok-run --storage {db} --baseline other-run --out {fx}/rp_bo.md", "objectives"),
    ("ru_missing", "runs --storage sqlite:///{fx}/nonexist_dir/none.db", "no run journal"),
    ("sh_missing", "show latest --storage sqlite:///{fx}/nonexist_dir/none.db", "no run journal"),
    # -- counts
    ("s3", "sample mobile --n -3", "--n"),
    ("s0", "sample mobile --n 0", "--n"),
]


@pytest.fixture(scope="module")
def fx(tmp_path_factory, bench_csv):
    folder = tmp_path_factory.mktemp("fx")
    names = _build_fixtures(folder, bench_csv)
    return folder, names


@pytest.mark.parametrize("name, argv, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(name, argv, fragment, fx, capsys, monkeypatch):
    folder, names = fx
    monkeypatch.setenv("HWNAS_AGENT_TOKEN", "t")
    args = argv.format(fx=folder, **names).split()
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (name, err)
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(("hwnas: error: ", "hwnas agent: error: ")), err
    assert fragment in errors[0], errors[0]


def test_refused_counts_leave_no_run_in_the_journal(fx, capsys):
    from hwnas.storage import open_storage

    folder, names = fx
    before = [r.id for r in open_storage(names["db"]).list_runs()]
    for extra in (["--budget", "0"], ["--budget", "-1"], ["--workers", "-1"]):
        assert main(["search", str(folder / "rec" / "ok.yaml"), "--storage", names["db"], "--quiet", *extra]) == 2
    assert main(["search", str(folder / "rec" / "budgetzero.yaml"), "--storage", names["db"], "--quiet"]) == 2
    assert [r.id for r in open_storage(names["db"]).list_runs()] == before
    assert not (folder / "nonexist_dir").exists()  # reading a missing journal creates nothing


def test_the_fixtures_are_valid_where_not_broken(fx, capsys):
    """The unbroken copies work, so each case fails for the one thing it breaks."""
    folder, names = fx
    assert main(["search", str(folder / "rec" / "ok.yaml"), "--storage", names["db"], "--quiet",
                 "--table", str(folder / "tables" / "copy-nb201.json")]) == 0
    assert main(["fit-table", "--space", "nb201:cifar100", "--target-column", "pi5_onnx_latency_ms", "--train", "20",
                 "--measurements", str(folder / "small.csv"), "--prior", "none"]) == 0
    assert main(["report", "ok-run", "--storage", names["db"], "--out", str(folder / "rp_ok.md")]) == 0


def test_a_search_whose_trials_all_fail_stops_loudly(fx, capsys, bench_csv):
    """Issue 13 item 3: the first 3 evaluations failing alike stop the search; the run is marked FAILED."""
    from hwnas.storage import open_storage

    folder, names = fx
    table = str(folder / "tables" / "no_entries.json")
    assert main(["search", str(folder / "rec" / "ok.yaml"), "--storage", names["db"], "--quiet", "--budget", "20",
                 "--table", table, "--name", "empty-table"]) == 2
    assert "first 3 evaluations all failed" in capsys.readouterr().err
    run = open_storage(names["db"]).get_run("empty-table")
    assert run.status == "FAILED" and len(run.trials("FAILED")) == 3 and "no entry" in run.info["stop_reason"]
    # different errors each time (archs missing from a 60-row table): the search runs its budget, then fails
    assert main(["bench", "--budget", "8", "--seeds", "1", "--strategies", "random",
                 "--table", str(folder / "small.csv")]) == 2
    assert "all 8 evaluations failed" in capsys.readouterr().err


# -- the Python API (third audit, cases 2-6): a HwnasError subclass with a one-line message, before any work

def _npz_empty(fx: Path) -> dict:
    np.savez(fx / "empty.npz", x=np.zeros((0, 28, 28), np.uint8), y=np.zeros(0, np.int64))
    return {"data": str(fx / "empty.npz")}


def _npz_corrupt(fx: Path) -> dict:
    (fx / "corrupt.npz").write_bytes(b"PK\x03\x04" + b"junk" * 64)
    return {"data": str(fx / "corrupt.npz")}


def _npz_huge(fx: Path) -> dict:  # 1025x1025 > the default cap of 1024x1024 pixels per image
    np.savez_compressed(fx / "huge.npz", x=np.zeros((6, 1025, 1025), np.uint8), y=np.arange(6) % 2)
    return {"data": str(fx / "huge.npz")}


API_CASES = [
    # (case, keyword arguments of api.search built in the fixture folder, error class name, message fragment)
    ("r3_npz_empty", _npz_empty, "DatasetError", "no images (0 rows)"),
    ("r3_npz_corrupt", _npz_corrupt, "DatasetError", "not a readable .npz"),
    ("r3_npz_huge", _npz_huge, "DatasetError", "HWNAS_MAX_INPUT_PIXELS=1050625"),
    ("r3_storage_under_file", lambda fx: {"storage": f"sqlite:///{fx / 'small.csv' / 'x.db'}"}, "StorageError",
     "small.csv is not a directory"),
    ("r3_workers_neg", lambda fx: {"evaluate": _score, "workers": -1}, "ConfigError", "workers must be >= 1, got -1"),
    ("r3_workers_zero", lambda fx: {"evaluate": _score, "workers": 0}, "ConfigError", "workers must be >= 1, got 0"),
]


def _score(model) -> dict[str, float]:
    return {"accuracy": 0.5}


@pytest.mark.parametrize("name, kwargs, error, fragment", API_CASES, ids=[c[0] for c in API_CASES])
def test_bad_api_input_is_one_clear_error(name, kwargs, error, fragment, fx):
    from hwnas import api
    from hwnas.errors import HwnasError

    folder, _ = fx
    args = {"storage": "memory://", "budget": 2, **kwargs(folder)}
    with pytest.raises(HwnasError) as info:
        api.search("mobile:mnist", ["accuracy", "params"], **args)
    assert type(info.value).__name__ == error and fragment in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_the_pixel_cap_is_raised_by_its_environment_variable(monkeypatch):
    from hwnas.errors import DatasetError
    from hwnas.train.datasets import splits_from_arrays

    x, y = np.zeros((12, 16, 16), np.uint8), np.arange(12) % 2
    monkeypatch.setenv("HWNAS_MAX_INPUT_PIXELS", "255")
    with pytest.raises(DatasetError, match="cap of 255 pixels.*HWNAS_MAX_INPUT_PIXELS=256"):
        splits_from_arrays(x, y)
    monkeypatch.setenv("HWNAS_MAX_INPUT_PIXELS", "256")
    assert splits_from_arrays(x, y).input_shape == (1, 16, 16)
    monkeypatch.setenv("HWNAS_MAX_INPUT_PIXELS", "lots")
    with pytest.raises(DatasetError, match="HWNAS_MAX_INPUT_PIXELS='lots' must be a positive whole number"):
        splits_from_arrays(x, y)


# -- issue 21 / audit r3 case 11: a valid old table validates on its own device; a table labelled
# -- for another space gets a space error (not the device line), before anything is measured
def test_a_table_without_a_recorded_statistic_validates_on_its_device(fx, capsys):
    folder, _ = fx
    assert "statistic" not in json.loads((folder / "tables" / "copy-nb201.json").read_text())["device"]
    assert main(["validate", "--table", str(folder / "tables" / "copy-nb201.json"), "--device", "ort-cpu-1t",
                 "--samples", "2", "--rounds", "1", "--plot", str(folder / "v_old.png"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 2 and result["statistic"] == "median"  # measured as the table's numbers were


def test_a_table_labelled_for_another_space_gets_a_space_error(fx, capsys):
    folder, _ = fx
    data = json.loads(TABLE.read_text())
    (folder / "tables" / "space_mobile.json").write_text(json.dumps({**data, "space": "mobile:mnist"}))
    code = main(["validate", "--table", str(folder / "tables" / "space_mobile.json"), "--device", "ort-cpu-1t",
                 "--samples", "3", "--rounds", "1", "--plot", str(folder / "v_space.png")])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1, errors
    assert "space mobile:mnist" in errors[0] and "another space" in errors[0] and "device" not in errors[0]
