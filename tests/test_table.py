"""CalibrationTable: mapping access, validation, JSON with provenance, merge and overrides."""

import json
import math
import re

import numpy as np
import pytest

import trtcal
from trtcal import CalibrationTable
from trtcal.formats.table import Provenance


def _random_table(rng, n=17, **prov):
    names = [f"/blocks.{i}/conv{i % 3}/Conv_output_0" for i in range(n)]
    amax = np.abs(rng.standard_t(3, size=n)) * 4 + 1e-3
    return CalibrationTable(dict(zip(names, amax.tolist())), **prov)


def test_mapping_interface(rng):
    t = _random_table(rng, method="entropy", flavor="tensorrt", bins=2048)
    names = list(t)
    assert len(t) == 17 and names[0] in t and "nope" not in t
    assert t[names[3]] == pytest.approx(t.scale(names[3]) * 127)
    assert t.scales()[names[5]] == t[names[5]] / 127
    t["extra"] = 3
    assert t["extra"] == 3.0 and isinstance(t["extra"], float)
    del t["extra"]
    assert "extra" not in t
    assert dict(t.items()) == {n: t[n] for n in names}
    assert trtcal.CalibrationTable is CalibrationTable and "CalibrationTable" in trtcal.__all__


def test_missing_name_suggests_similar():
    t = CalibrationTable({"/conv1/Conv_output_0": 1.0})
    with pytest.raises(KeyError, match="similar names"):
        t["conv1/Conv_output_0"]


@pytest.mark.parametrize(
    "bad,err,match",
    [
        (math.nan, ValueError, "NaN"),
        (-1.0, ValueError, "negative"),
        ("x", TypeError, "number"),
        (True, TypeError, "number"),
        (None, TypeError, "number"),
    ],
)
def test_amax_validation_names_the_tensor(bad, err, match):
    with pytest.raises(err, match=match) as e:
        CalibrationTable({"layer/out": bad})
    assert "layer/out" in str(e.value)


def test_inf_and_zero_are_kept():
    t = CalibrationTable({"a": math.inf, "b": 0.0})
    back = CalibrationTable.from_json(t.to_json())
    assert back["a"] == math.inf and back["b"] == 0.0


def test_json_round_trip_keeps_provenance_and_extras(tmp_path, rng):
    t = _random_table(
        rng,
        method="percentile",
        flavor="modelopt",
        bins=2048,
        percentile=99.99,
        num_samples=512,
        num_batches=16,
        nonfinite={"nan": 0, "posinf": 3, "neginf": 0},
    )
    first = list(t)[0]
    t.extras(first)["nonfinite"] = {"nan": 0, "posinf": 3, "neginf": 0}
    p = tmp_path / "table.json"
    t.to_json(p)
    data = json.loads(p.read_text())
    assert (
        data["format"] == "trtcal.calibration-table" and data["provenance"]["percentile"] == 99.99
    )
    assert data["provenance"]["trtcal_version"] == trtcal.__version__
    assert data["tensors"][first]["scale"] == pytest.approx(t[first] / 127)
    back = CalibrationTable.from_json(p)
    assert dict(back) == dict(t) and list(back) == list(t)
    assert back.provenance == t.provenance
    assert back.extras(first) == {"nonfinite": {"nan": 0, "posinf": 3, "neginf": 0}}
    assert back.method_of(first) == "percentile"


def test_json_refuses_foreign_files(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"a": 1.0}')
    with pytest.raises(ValueError, match="not a trtcal calibration table"):
        CalibrationTable.from_json(p)
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        CalibrationTable.from_json(p)
    p.write_text('{"format": "trtcal.calibration-table", "version": 99, "tensors": {}}')
    with pytest.raises(ValueError, match="upgrade"):
        CalibrationTable.from_json(p)


def test_unknown_provenance_fields_go_to_extra():
    p = Provenance.from_dict({"method": "mse", "calibrator_seed": 7})
    assert p.method == "mse" and p.extra == {"calibrator_seed": 7}
    with pytest.raises(TypeError, match="unknown keyword"):
        CalibrationTable({}, methd="x")


def test_merge_policies(rng):
    a = CalibrationTable({"x": 1.0, "y": 2.0}, method="entropy")
    b = CalibrationTable({"y": 3.0, "z": 4.0}, method="max")
    with pytest.raises(ValueError, match="'y'"):
        a.merge(b)
    assert dict(a.merge(b, on_conflict="theirs")) == {"x": 1.0, "y": 3.0, "z": 4.0}
    assert dict(a.merge(b, on_conflict="ours")) == {"x": 1.0, "y": 2.0, "z": 4.0}
    assert a.merge(b, on_conflict="max")["y"] == 3.0 and a.merge(b, on_conflict="min")["y"] == 2.0
    assert dict(a.merge({"x": 1.0})) == dict(a)  # equal values are no conflict
    assert dict(a) == {"x": 1.0, "y": 2.0}  # merge returns a new table
    with pytest.raises(ValueError, match="on_conflict"):
        a.merge(b, on_conflict="sum")


def test_override_by_name_glob_regex_and_list():
    names = [
        "/enc/attn/MatMul_output_0",
        "/enc/attn/Softmax_output_0",
        "/enc/mlp/Gelu_output_0",
        "(Unnamed Layer* 46) [Constant]_output",
    ]
    t = CalibrationTable(dict.fromkeys(names, 1.0), method="entropy")
    assert t.override("(Unnamed Layer* 46) [Constant]_output", 5.0) == [
        names[3]
    ]  # exact beats glob
    assert t[names[3]] == 5.0 and t.method_of(names[3]) == "override"
    assert t.override("/enc/attn/*", 2.0, method="max") == names[:2]
    assert t.method_of(names[0]) == "max" and t.method_of(names[2]) == "entropy"
    assert t.override(re.compile(r"Gelu"), 3.0) == [names[2]]
    assert t.override([names[0], "/enc/mlp/*"], 4.0) == [names[0], names[2]]
    with pytest.raises(KeyError, match="matches no tensor"):
        t.override("/dec/*", 1.0)
    assert t.override("brand_new", 0.5) == ["brand_new"] and t["brand_new"] == 0.5


def test_mixed_quantization_takes_chosen_layers_from_another_method(rng):
    entropy = _random_table(rng, method="entropy", flavor="tensorrt", bins=2048)
    pct = CalibrationTable(
        {n: v * 0.8 for n, v in entropy.items()}, method="percentile", percentile=99.99
    )
    mixed = entropy.copy()
    changed = mixed.override("*/conv1/*", pct)
    assert changed and all("/conv1/" in n for n in changed)
    for n in mixed:
        if n in changed:
            assert mixed[n] == pct[n] and mixed.method_of(n) == "percentile"
            assert mixed.extras(n)["percentile"] == 99.99
        else:
            assert mixed[n] == entropy[n] and mixed.method_of(n) == "entropy"
    back = CalibrationTable.from_json(mixed.to_json())
    assert back.method_of(changed[0]) == "percentile"


def test_table_from_cache_has_provenance(tmp_path):
    p = tmp_path / "calib.cache"
    p.write_text("TRT-8601-MinMaxCalibration\ninput: 3c010204\n")
    t = CalibrationTable.from_cache(p)
    assert t["input"] == pytest.approx(1.0)
    assert t.provenance.method == "tensorrt-cache"
    assert t.provenance.extra == {"tensorrt_version": "8.6.1", "algorithm": "MinMaxCalibration"}
    j = tmp_path / "t.json"
    t.to_json(j)
    c2 = tmp_path / "back.cache"
    CalibrationTable.from_json(j).to_cache(
        c2, tensorrt_version="8.6.1", algorithm="MinMaxCalibration"
    )
    assert c2.read_bytes() == p.read_bytes()


# ------------------------------------------------------------------- invalid amax: reader,
# constructor, convert
BAD_AMAX = [
    (-1.0, "negative"),
    (-math.inf, "negative"),
    (math.nan, "NaN"),
    ("-inf", "negative"),
    ("nan", "NaN"),
    (-1e-30, "negative"),
]


@pytest.mark.parametrize("value,why", BAD_AMAX)
def test_constructor_and_setitem_refuse_invalid_amax(value, why):
    v = float(value)
    with pytest.raises(ValueError, match=f"tensor 'conv/out'.*{why}"):
        CalibrationTable({"conv/out": v})
    t = CalibrationTable({"ok": 1.0})
    with pytest.raises(ValueError, match=f"tensor 'conv/out'.*{why}"):
        t["conv/out"] = v
    assert list(t) == ["ok"]


@pytest.mark.parametrize("value,why", BAD_AMAX)
def test_json_reader_refuses_invalid_amax_naming_file_and_tensor(tmp_path, value, why):
    p = tmp_path / "t.json"
    doc = {
        "format": "trtcal.calibration-table",
        "version": 1,
        "tensors": {
            "ok": {"amax": 1.0},
            "conv/out": {
                "amax": value
                if isinstance(value, str)
                else (str(value) if not math.isfinite(value) else value)
            },
        },
    }
    p.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=f"{re.escape(str(p))}: .*tensor 'conv/out'.*{why}"):
        CalibrationTable.from_json(p)


@pytest.mark.parametrize(
    "hexv,why", [("bca14285", "negative"), ("7fc00000", "NaN"), ("ff800000", "negative")]
)
def test_convert_never_writes_invalid_amax_into_a_cache(tmp_path, capsys, hexv, why):
    from trtcal.cli import main

    src = tmp_path / "odd.cache"
    src.write_text(f"TRT-8601-EntropyCalibration2\nok: 3c010204\nbad: {hexv}\n")
    t = CalibrationTable.from_cache(src)  # read (and shown by `cache show`), never written
    assert t.invalid()[0][0] == "bad"
    with pytest.raises(ValueError, match=f"tensor 'bad' has .*{why}"):
        t.to_cache(tmp_path / "x.cache")
    for out in ("out.cache", "out.json"):
        assert main(["cache", "convert", str(src), str(tmp_path / out)]) == 1
        err = capsys.readouterr().err
        assert "tensor 'bad' has" in err and not (tmp_path / out).exists()


def test_table_json_write_is_atomic_when_the_disk_fills_mid_write(tmp_path, monkeypatch):
    from trtcal.core import _files

    p = tmp_path / "t.json"
    CalibrationTable({"a": 1.0}).to_json(p)
    before = p.read_bytes()
    written = []

    def opener(fd):
        f = open(fd, "wb")  # noqa: SIM115
        real = f.write

        def write(b):
            real(bytes(b)[:100])  # 100 bytes reach the disk, then it is full
            written.append(100)
            raise OSError(28, "No space left on device")

        f.write = write
        return f

    monkeypatch.setattr(_files, "_open_temp", opener)
    with pytest.raises(
        _files.OutputError, match=f"cannot write {re.escape(str(p))}: no space left"
    ):
        CalibrationTable({n: float(i) for i, n in enumerate("abcdefgh")}).to_json(p)
    assert (
        written and p.read_bytes() == before and [x.name for x in tmp_path.iterdir()] == ["t.json"]
    )
