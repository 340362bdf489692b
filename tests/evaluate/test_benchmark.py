"""Latency measurement and ``tfopt benchmark``: what is timed, how it is summarised, and inputs.

No assertion here depends on how fast the machine is: speed comparisons live in benchmarks/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfopt.benchmark import Benchmark, ModelBenchmark, benchmark, format_benchmark, load_data, peak_rss
from tfopt.errors import DataError, TfoptError
from tfopt.evaluate.latency import (
    measure_interleaved,
    measure_latency,
    measure_pair,
    prepare_interpreter,
    summarize,
    time_interleaved,
)
from tfopt.evaluate.litert import TfliteRunner
from tfopt.results import Latency

ROOT = Path(__file__).resolve().parents[2]


def test_summarize_arithmetic() -> None:
    ms = np.arange(1, 101, dtype=float)  # 1..100 ms
    lat = summarize(ms, threads=2, batch=4, warmup=3)
    assert (lat.p50, lat.p90, lat.p99, lat.mean) == (50.5, 90.1, 99.01, 50.5)
    assert lat.runs == 100 and lat.threads == 2 and lat.batch == 4 and lat.warmup == 3
    assert lat.throughput == round(4 * 1000 / 50.5, 1)


def test_measure_latency_keeps_the_pipeline_call(tiny_tflite, digits) -> None:
    lat = measure_latency(tiny_tflite["int8"], digits.x_test, 20, 2, 1)  # positional, as pipeline.run calls it
    assert 0 < lat.p50 <= lat.p90 <= lat.p99 and lat.runs == 20 and lat.batch == 1
    assert lat.throughput == pytest.approx(1000 / lat.mean, rel=0.05)  # lat.mean is rounded to 0.1 µs


def test_batch_resizes_the_input(tiny_tflite, digits) -> None:
    interp = prepare_interpreter(tiny_tflite["float32"], digits.x_test[:3], batch=5)  # 3 samples repeated to 5
    d = interp.get_input_details()[0]
    assert list(d["shape"]) == [5, 8, 8, 1]
    np.testing.assert_array_equal(interp.get_tensor(d["index"])[3], digits.x_test[0])
    lat = measure_latency(tiny_tflite["float32"], digits.x_test, runs=5, warmup=1, batch=5)
    assert lat.batch == 5 and lat.throughput == pytest.approx(5000 / lat.mean, rel=0.05)


def test_random_inputs_match_the_input_dtype(tiny_tflite) -> None:
    interp = prepare_interpreter(tiny_tflite["int8_io"], None, batch=2)
    d = interp.get_input_details()[0]
    x = interp.get_tensor(d["index"])
    assert x.dtype == np.int8 and x.shape == (2, 8, 8, 1) and len(np.unique(x)) > 10
    interp.invoke()
    assert np.isfinite(interp.get_tensor(interp.get_output_details()[0]["index"]).astype(float)).all()


def test_images_without_channel_axis_are_accepted(tiny_tflite, digits) -> None:
    interp = prepare_interpreter(tiny_tflite["float32"], digits.x_test[:4, :, :, 0])
    np.testing.assert_array_equal(interp.get_tensor(interp.get_input_details()[0]["index"])[0], digits.x_test[0])


def test_data_of_another_shape_names_both_shapes(tiny_tflite) -> None:
    with pytest.raises(DataError, match=r"expects inputs of shape \(8, 8, 1\).*the data's are \(28, 28, 1\)\. Fix:"):
        prepare_interpreter(tiny_tflite["float32"], np.zeros((2, 28, 28, 1), np.float32))


@pytest.mark.parametrize("field,value", [("runs", 0), ("threads", 0), ("batch", 0), ("warmup", -1)])
def test_counts_out_of_range(tiny_tflite, field, value) -> None:
    kwargs = {"runs": 5, "warmup": 1, "threads": 1, "batch": 1, field: value}
    with pytest.raises(TfoptError, match=f"{field} must be at least"):
        measure_latency(tiny_tflite["float32"], None, **kwargs)


class _Recorder:
    """Stands in for an interpreter: records which one was invoked, in order."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def invoke(self) -> None:
        self.log.append(self.name)


def test_pair_alternates_so_noise_hits_both() -> None:
    log: list[str] = []
    a, b = _Recorder("a", log), _Recorder("b", log)
    lat_a, lat_b = measure_pair(a, b, runs=10, warmup=2, rounds=4)
    assert lat_a.runs == lat_b.runs == 10
    assert log[:4] == ["a", "a", "b", "b"]  # warm-up of each
    blocks = []
    for name in log[4:]:
        if not blocks or blocks[-1][0] != name:
            blocks.append([name, 0])
        blocks[-1][1] += 1
    # rounds of 3, 3, 2, 2 runs in the order AB, BA, AB, BA (consecutive B's merge at round edges)
    assert [n for n, _ in blocks] == ["a", "b", "a", "b", "a"]
    assert [c for _, c in blocks] == [3, 6, 5, 4, 2]


def test_interleaved_rotates_every_file_through_every_position() -> None:
    """A run's files timed in turn: round r starts with the r-th file, each gets its runs in every round."""
    log: list[str] = []
    recorders = [_Recorder(name, log) for name in "abc"]
    lats = time_interleaved(recorders, runs=6, warmup=1, rounds=3)
    assert log[:3] == ["a", "b", "c"]  # each warmed up first
    expected = [n for order in ("abc", "bca", "cab") for n in order for _ in range(2)]  # 6 runs / 3 rounds
    assert log[3:] == expected
    assert [(lat.runs, lat.rounds, lat.interleaved) for lat in lats] == [(6, 3, 3)] * 3


def test_measure_interleaved_times_every_file(tiny_tflite, digits) -> None:
    paths = [tiny_tflite["float32"], tiny_tflite["int8"], tiny_tflite["float32"]]
    lats = measure_interleaved(paths, digits.x_test, runs=9, warmup=1, rounds=4)
    assert len(lats) == 3
    for lat in lats:
        assert lat.runs == 9 and lat.rounds == 4 and lat.interleaved == 3 and lat.warmup == 1
        assert 0 < lat.p50 <= lat.p90
    with pytest.raises(TfoptError, match="not found"):
        measure_interleaved([tiny_tflite["int8"], "missing.tflite"], None, runs=2)


def test_benchmark_vs_reports_both_and_the_ratio(tiny_tflite) -> None:
    b = benchmark(tiny_tflite["int8"], vs=tiny_tflite["float32"], runs=8, warmup=1, rounds=2, memory=False)
    assert [Path(m.path).name for m in b.models] == ["tiny_int8.tflite", "tiny_float32.tflite"]
    assert b.p50_ratio == pytest.approx(b.models[0].latency.p50 / b.models[1].latency.p50)
    assert b.models[0].size_bytes == tiny_tflite["int8"].stat().st_size
    text = format_benchmark(b)
    assert "ratio p50 A/B" in text and "valid for timing only" in text and "A: tiny_int8.tflite" in text


def test_format_ratio_direction() -> None:
    def mb(p50: float) -> ModelBenchmark:
        return ModelBenchmark("m.tflite", 1024, Latency(p50, p50, p50, 10, 1, p50, 1, 1, 1000 / p50), None, None)

    b = Benchmark([mb(1.0), mb(4.0)], "x.npz", False, 1, 1, 10, 1, 2, "test")
    assert b.p50_ratio == 0.25 and "A is 4.00x faster" in format_benchmark(b)
    assert "timing only" not in format_benchmark(b)


def test_data_from_npz_and_from_a_dataset(tiny_tflite, tmp_path, digits) -> None:
    npz = tmp_path / "inputs.npz"
    np.savez(npz, x=(digits.x_test[:6] * 255).astype(np.uint8))
    x, desc = load_data(str(npz))
    assert x.dtype == np.float32 and x.max() <= 1.0 and "6 samples" in desc
    x, desc = load_data("digits")
    assert x.shape[1:] == (8, 8, 1) and "digits test split" in desc
    b = benchmark(tiny_tflite["float32"], data=str(npz), runs=3, warmup=0, memory=False)
    assert not b.random_inputs and "timing only" not in format_benchmark(b)


@pytest.mark.parametrize(
    "spec,needle", [("nope", "neither an .npz file nor a registered dataset"), ("missing.npz", "Data file not found")]
)
def test_bad_data_argument(spec, needle) -> None:
    with pytest.raises(DataError, match=needle):
        load_data(spec)


def test_npz_without_x_key(tmp_path) -> None:
    npz = tmp_path / "d.npz"
    np.savez(npz, images=np.zeros((2, 8, 8)))
    with pytest.raises(DataError, match=r"need 'x'"):
        load_data(str(npz))


def test_peak_rss_is_measured_in_a_fresh_process(tiny_tflite) -> None:
    peak, before = peak_rss(tiny_tflite["float32"])
    assert before is not None and 10 * 2**20 < before <= peak < 2**31


def test_old_latency_records_still_load() -> None:
    import pydantic

    lat = pydantic.TypeAdapter(Latency).validate_python({"p50": 1.0, "p90": 2.0, "mean": 1.5, "runs": 10, "threads": 1})
    assert lat.p99 is None and lat.batch == 1 and lat.throughput is None


def test_runner_and_benchmark_read_integer_io_alike(tiny_tflite, digits) -> None:
    """The runner's quantization helper is shared: float data fed to int8 inputs gives the same tensor."""
    runner = TfliteRunner(tiny_tflite["int8_io"])
    interp = prepare_interpreter(tiny_tflite["int8_io"], digits.x_test[:1])
    np.testing.assert_array_equal(
        interp.get_tensor(interp.get_input_details()[0]["index"]), runner.quantize_input(digits.x_test[:1])
    )


def test_cli_benchmark_never_imports_tensorflow(tiny_tflite) -> None:
    code = (
        "import sys; from tfopt.cli import main; "
        f"rc = main(['benchmark', {str(tiny_tflite['int8'])!r}, "
        f"'--vs', {str(tiny_tflite['float32'])!r}, '--runs', '4', '--no-memory']); "
        "print('TF', 'tensorflow' in sys.modules); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "TF False" in proc.stdout and "ratio p50 A/B" in proc.stdout
