"""kiln.deploy.benchmark: timings that add up, the SLO pick, the plot, and `kiln bench`."""

import json
import time

import pytest
import torch

import kiln.deploy as deploy
from kiln.cli import main
from kiln.deploy import Benchmark, Engine, Timing


def _sleeping_engine(seconds_per_sample: float) -> Engine:
    def runner(batch):
        time.sleep(seconds_per_sample * len(batch))
        return batch * 2

    return Engine(dict.fromkeys((1, 4), runner), (2,), torch.float32, torch.device("cpu"))


def test_timings_measure_the_calls_and_throughput_is_batch_over_mean_latency():
    result = deploy.benchmark(_sleeping_engine(0.01), calls=5, warmup=1, slo_ms=30.0)
    assert [r.batch_size for r in result.rows] == [1, 4] and result.latency.batch_size == 1
    for row, sleep_ms in zip(result.rows, (10.0, 40.0)):
        assert row.calls == 5
        assert sleep_ms <= row.p50_ms <= row.p99_ms < sleep_ms + 500  # a loaded CI machine
        assert row.throughput == pytest.approx(row.batch_size / row.mean_ms * 1e3)
    assert result.best == result.rows[0]  # batch 4 sleeps 40 ms > the 30 ms SLO
    assert result.as_dict()["best"]["batch_size"] == 1


def test_warm_up_runs_its_calls_and_its_seconds_before_the_timed_calls():
    from kiln.deploy._benchmark import time_calls

    made = []

    def call():
        made.append(time.perf_counter())
        time.sleep(0.005)

    times = time_calls(call, 3, torch.device("cpu"), warmup=0)
    assert len(times) == len(made) == 3
    made.clear()
    times = time_calls(call, 3, torch.device("cpu"), warmup=2, warmup_s=0.05)
    assert len(times) == 3
    # a sleep lasts at least its time: 0.05 s of 5 ms calls is at least 10 of them
    assert len(made) >= 3 + 10
    assert made[-3] - made[0] >= 0.05


def test_best_is_the_highest_throughput_within_the_slo():
    rows = [Timing(1, 1, 2, 1, 1000, 9), Timing(8, 2, 3, 2, 4000, 9),
            Timing(64, 5, 6.9, 5, 12800, 9), Timing(256, 9, 12, 9, 28000, 9)]  # fmt: skip
    assert Benchmark("m", "cpu", rows, slo_ms=7).best == rows[2]
    assert Benchmark("m", "cpu", rows, slo_ms=1).best is None
    assert Benchmark("m", "cpu", rows).peak == rows[3]


def test_a_real_engine_benchmarks_on_random_inputs_of_its_dtype(mlp):
    engine = deploy.optimize(mlp, torch.randn(2, 6), "fp32", batch_sizes=(1, 8))
    result = deploy.benchmark(engine, calls=3, warmup=1)
    assert [r.batch_size for r in result.rows] == [1, 8]
    assert all(0 < r.p50_ms <= r.p99_ms for r in result.rows)
    assert result.info["precision"] == "fp32"
    with pytest.raises(ValueError, match=r"Received: batch_sizes=\[0\], calls=3"):
        deploy.benchmark(engine, batch_sizes=[0], calls=3)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    result = deploy.benchmark(_sleeping_engine(0.0), calls=2, warmup=0, slo_ms=7)
    deploy.plot([result], str(tmp_path / "bench.png"))
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kiln_deploy_then_kiln_bench_on_the_cli(tmp_path, conv_net, capsys):
    conv_net.save(str(tmp_path / "conv.kiln"))
    repo = tmp_path / "repo"
    code = main(["deploy", str(tmp_path / "conv.kiln"), str(repo), "--name", "conv",
                 "--precision", "fp32", "--batch-sizes", "1,2", "--device", "cpu", "--no-onnx",
                 "--image-mean", "0.5", "--image-std", "0.25", "--no-fuse"])  # fmt: skip
    assert code == 0
    assert "conv/1 (fp32 on cpu, batch sizes [1, 2]" in capsys.readouterr().out
    config = json.loads((repo / "conv" / "1" / "config.json").read_text())
    assert config["options"]["fuse"] is False and config["skipped"] == []
    engine = deploy.load(repo / "conv")
    assert engine.input_shape == (8, 8, 3) and engine.input_dtype == torch.uint8
    out = tmp_path / "bench.json"
    code = main(["bench", str(repo), "--calls", "3", "--slo-ms", "50", "--warmup-s", "0.1",
                 "--json", str(out), "--plot", str(tmp_path / "b.png")])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "conv on cpu (fp32), SLO p99 <= 50 ms" in printed and "best under SLO" in printed
    assert "batch-1 latency p50 " in printed and "best under the SLO: " in printed
    (result,) = json.loads(out.read_text())
    assert [r["batch_size"] for r in result["rows"]] == [1, 2] and result["best"] is not None
    asked: dict[str, object] = {}

    def optimize(*args, **kwargs):
        asked.update(kwargs)
        raise KeyboardInterrupt  # enough: what deploy asked for is recorded

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(deploy, "optimize", optimize)
        for flags, fuse in (([], True), (["--no-triton"], "cudnn"), (["--no-fuse"], False)):
            with pytest.raises(KeyboardInterrupt):
                main(["deploy", str(tmp_path / "conv.kiln"), str(repo), *flags])
            assert asked["fuse"] == fuse, flags
    with pytest.raises(SystemExit, match=r"comma-separated integers\. Received: '1,x'"):
        main(["deploy", str(tmp_path / "conv.kiln"), str(repo), "--batch-sizes", "1,x"])
