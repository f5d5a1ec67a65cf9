"""The benchmark harness: exact FLOP counts on tiny models, ratio rows, and the --quick path end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from conftest import BACKEND, ROOT, shared_path

sys.path.insert(0, str(ROOT))
from benchmarks import accuracy  # noqa: E402
from benchmarks.flops import keras_model_flops, torch_model_flops  # noqa: E402
from benchmarks.run import ratio_rows  # noqa: E402
from benchmarks.smp_env import SMP_DIR  # noqa: E402
from benchmarks.worker import Skip, build_keras, run_matmul  # noqa: E402


def test_keras_flop_counter_is_exact_on_tiny_models():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8*4 * 3*3*3 MACs
    assert keras_model_flops(keras.Model(inputs, x)) == 2 * 8 * 8 * 4 * 27
    y = keras.layers.Conv2D(5, 3, strides=2, padding="valid", use_bias=False)(x)  # 3x3 out: 3*3*5 * 3*3*4
    z = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(y)  # 3*3*10 * 9
    t = keras.layers.Conv2DTranspose(2, 2, strides=2)(z)  # 3*3*10 (in) * 2*2*2
    s = keras.layers.SeparableConv2D(3, 3, padding="same")(t)  # 6*6*2*9 + 6*6*2*3
    d = keras.layers.Dense(7)(keras.layers.GlobalAveragePooling2D()(s))  # 3*7
    inner = keras.Model(inputs, d)
    outer_in = keras.Input((8, 8, 3))
    nested = keras.Model(outer_in, keras.layers.Dense(2)(inner(outer_in)))  # + 7*2, nested counted once
    expected = 2 * (
        8 * 8 * 4 * 27 + 3 * 3 * 5 * 36 + 3 * 3 * 10 * 9 + 3 * 3 * 10 * 8 + (6 * 6 * 2 * 9 + 6 * 6 * 2 * 3) + 3 * 7
    )
    assert keras_model_flops(inner) == expected
    assert keras_model_flops(nested) == expected + 2 * 7 * 2


@pytest.mark.skipif(BACKEND != "torch", reason="the torch counter is checked once, on the torch pass")
def test_torch_flop_counter_matches_keras_count():
    import torch

    module = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ConvTranspose2d(4, 2, 2, stride=2),
        torch.nn.Conv2d(2, 6, 3, padding=1, groups=2),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 16 * 16, 5),
    )
    macs = 8 * 8 * 4 * 27 + 8 * 8 * 4 * 2 * 2 * 2 + 16 * 16 * 6 * 9 * 1 + 6 * 16 * 16 * 5
    assert torch_model_flops(module, torch.zeros(2, 3, 8, 8)) == 2 * macs


def test_configuration_a_backbone_cannot_serve_is_skipped_with_the_reason():
    """DeepLabV3+ needs a dilated encoder: for a family that has none the row says so instead of failing."""
    with pytest.raises(Skip, match="'vgg16' .*cannot be dilated"):
        build_keras("ours", "DeepLabV3Plus", "vgg16", 64)


def test_matmul_peak_is_measured():
    # torch's matmul is only tried on the torch pass (importing torch costs seconds elsewhere)
    out = run_matmul(SimpleNamespace(matmul_n=64, matmul_repeats=2, matmul_torch=BACKEND == "torch"))
    assert out["peak_gflops"] > 0 and out["peak_gflops"] == max(v for k, v in out.items() if k.endswith("_gflops"))


def test_ratio_rows_compare_ours_with_both_peers():
    def record(contender, train_s, infer_s, b1_s, rss):
        return {
            "contender_id": contender,
            "arch": "Unet",
            "backbone": "resnet34",
            "size": 256,
            "batch": 8,
            "status": "ok",
            "train": {"median_s": train_s},
            "infer_batch": {"median_s": infer_s},
            "infer_b1": {"median_s": b1_s},
            "peak_rss_train_mb": rss,
        }

    rows = ratio_rows(
        [
            record("ours-tensorflow", 2.0, 0.5, 0.1, 1000),
            record("sm101-tensorflow", 4.0, 0.5, 0.2, 2000),
            record("ours-jax", 1.0, 0.25, 0.05, 1000),
            record("smp-torch", 2.0, 1.0, 0.1, 500),
        ]
    )
    by = {(r["ours"], r["peer"]): r for r in rows}
    assert by[("ours-tensorflow", "sm101-tensorflow")]["train"] == pytest.approx(2.0)
    assert by[("ours-tensorflow", "sm101-tensorflow")]["latency"] == pytest.approx(2.0)
    assert by[("ours-jax", "smp-torch")]["infer"] == pytest.approx(4.0)
    assert by[("ours-jax", "smp-torch")]["memory"] == pytest.approx(2.0)
    assert by[("best(ours-jax)", "smp-torch")]["train"] == pytest.approx(2.0)


def test_ratio_rows_also_compare_with_smp_on_the_same_allocator_settings():
    def record(contender, train_s, rss):
        return {
            "contender_id": contender,
            "arch": "Unet",
            "backbone": "resnet34",
            "size": 256,
            "batch": 8,
            "status": "ok",
            "train": {"median_s": train_s},
            "peak_rss_train_mb": rss,
        }

    rows = ratio_rows(
        [
            record("ours-torch", 2.0, 1000),
            record("smp-torch", 3.0, 1000),
            record("ours-torch-retain", 1.8, 1100),
            record("smp-torch-retain", 2.5, 1250),
        ]
    )
    by = {(r["ours"], r["peer"]): r for r in rows}
    assert by[("ours-torch", "smp-torch")]["train"] == pytest.approx(1.5)
    # ours as the command line runs it (allocator on) against SMP with and without the same setting
    assert by[("ours-torch-retain", "smp-torch")]["train"] == pytest.approx(3.0 / 1.8)
    assert by[("ours-torch-retain", "smp-torch-retain")]["train"] == pytest.approx(2.5 / 1.8)
    assert by[("ours-torch-retain", "smp-torch-retain")]["memory"] == pytest.approx(1100 / 1250)
    assert by[("best(ours-torch)", "smp-torch-retain")]["memory"] == pytest.approx(0.8)


def test_tables_combine_a_grid_measured_in_several_runs(tmp_path, capsys):
    from benchmarks import tables

    def record(contender, backbone, train_s):
        return {
            "contender_id": contender,
            "arch": "Unet",
            "backbone": backbone,
            "size": 512,
            "batch": 8,
            "status": "ok",
            "train": {"median_s": train_s},
            "infer_batch": {"median_s": 1.0},
            "infer_b1": {"median_s": 0.1},
            "peak_rss_train_mb": 1000,
            "flops_per_image": 1e11,
        }

    parts = [
        (100.0, [record("ours-torch", "resnet34", 4.0), record("smp-torch", "resnet34", 8.0)]),
        (200.0, [record("ours-torch", "efficientnetb0", 2.0), record("smp-torch", "efficientnetb0", 3.0)]),
    ]
    files = []
    for peak, results in parts:
        files.append(tmp_path / f"{peak:.0f}.json")
        files[-1].write_text(json.dumps({"matmul": {"peak_gflops": peak}, "results": results, "finished_utc": None}))
    assert tables.main([str(f) for f in files]) == 0
    out = capsys.readouterr().out
    assert out.count("(cut short)") == 2  # one header per run
    assert "| Unet-resnet34 | 512 | ours-torch / SMP | 2.00x |" in out
    assert "| Unet-efficientnetb0 | 512 | ours-torch / SMP | 1.50x |" in out
    # each record's FLOP fraction against its own run's matmul peak (x3 for forward and backward):
    # training 2 img/s x 300 GFLOP of 100 GFLOP/s, 4 img/s x 300 GFLOP of 200 GFLOP/s: 600% both;
    # inference 8 img/s x 100 GFLOP: 800% of 100, 400% of 200
    for backbone, ips, fractions in (("resnet34", "2.00", "600 / 800"), ("efficientnetb0", "4.00", "600 / 400")):
        (line,) = [line for line in out.splitlines() if line.startswith(f"| Unet-{backbone} | 512 | ours (torch) |")]
        assert f"| {ips} |" in line and line.endswith(f"| {fractions} |"), line


def test_smp_worker_retains_freed_memory_without_importing_the_package():
    code = (
        "import sys; sys.path.insert(0, '.'); from benchmarks import worker; ok = worker.retain_freed_memory(); "
        "print(ok, 'segmentation_models' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, check=True)
    from segmentation_models.accel import allocator

    assert out.stdout.split()[-3:] == [str(allocator._glibc() is not None), "False", "False"]


def test_ratio_rows_compare_device_memory_on_gpu_runs():
    def record(contender, peak_mb):
        return {
            "contender_id": contender,
            "arch": "Unet",
            "backbone": "resnet34",
            "size": 256,
            "batch": 8,
            "status": "ok",
            "train": {"median_s": 1.0},
            "device": "gpu",
            "peak_rss_train_mb": 3000,
            "framework_memory": {"peak_mb": peak_mb},
        }

    (row, best) = ratio_rows([record("ours-torch", 1200), record("smp-torch", 1500)])
    assert row["memory"] == pytest.approx(0.8) and best["memory"] == pytest.approx(0.8)


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run in a new session and kill the whole process group on timeout (run.py starts worker processes)."""
    proc = subprocess.Popen(
        cmd, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.skipif(
    BACKEND != "torch",
    reason="end to end once, on the torch pass: it needs no tracing, while "
    "TF/JAX compilation alone costs 40-75 s CPU (the same run_keras code path is exercised)",
)
def test_quick_benchmark_runs_end_to_end_for_ours(tmp_path):
    # The --quick path, shrunk: 32x32, batch 2, one step, resnet18 (the cheapest ResNet to trace/compile).
    out_json = tmp_path / "bench.json"
    proc = _run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--size",
            "32",
            "--batch",
            "2",
            "--steps",
            "1",
            "--infer-steps",
            "1",
            "--backbones",
            "resnet18",
            "--contenders",
            f"ours-{BACKEND}",
            "--no-matmul",
            "--json",
            str(out_json),
        ],
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"ours-{BACKEND}" in proc.stdout and "train" in proc.stdout
    payload = json.loads(out_json.read_text())  # rewritten after every configuration, finished at the end
    assert payload["finished_utc"] and payload["ratios"] == []
    (record,) = payload["results"]
    assert record["status"] == "ok", record
    assert (record["arch"], record["backbone"], record["size"]) == ("Unet", "resnet18", 32)
    assert record["train"]["median_s"] > 0 and record["infer_b1"]["median_s"] > 0
    assert record["peak_rss_train_mb"] >= record["rss_after_build_mb"] > 0
    # below Unet-resnet34's 15.66 GFLOP per 256x256 image, scaled to 32x32 (FLOPs scale with the pixel count)
    assert 0.5 * 15.66e9 / 64 < record["flops_per_image"] < 15.66e9 / 64
    tables = _run([sys.executable, str(ROOT / "benchmarks" / "tables.py"), str(out_json)], timeout=120)
    assert tables.returncode == 0 and "| Unet-resnet18 | 32 |" in tables.stdout, tables.stderr


@pytest.mark.skipif(BACKEND != "torch", reason="once, on the torch pass (no tracing)")
def test_mixed_precision_and_a_missing_gpu(tmp_path):
    """--mixed-precision bf16 runs ours under Keras' mixed_bfloat16 policy; --device gpu without a GPU is an
    error row naming the reason, never a silent CPU measurement."""
    import torch

    out_json = tmp_path / "bench.json"
    base = [
        sys.executable,
        str(ROOT / "benchmarks" / "run.py"),
        "--quick",
        "--size",
        "32",
        "--batch",
        "2",
        "--steps",
        "1",
        "--infer-steps",
        "1",
        "--backbones",
        "resnet18",
        "--contenders",
        "ours-torch",
    ]
    proc = _run(base + ["--mixed-precision", "bf16", "--matmul-n", "64", "--json", str(out_json)], timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads(out_json.read_text())
    (record,) = payload["results"]
    assert record["status"] == "ok" and record["mixed_precision"] == "bf16" and record["device"] == "cpu"
    assert payload["matmul"]["peak_gflops"] == payload["matmul"]["torch_bfloat16_gflops"] > 0
    if not torch.cuda.is_available():
        proc = _run(base + ["--device", "gpu", "--no-matmul", "--json", str(out_json)], timeout=900)
        (record,) = json.loads(out_json.read_text())["results"]
        assert proc.returncode == 1 and record["status"] == "error" and "sees no GPU" in record["reason"]
        assert "sees no GPU" in proc.stdout


@pytest.mark.skipif(BACKEND != "tensorflow", reason="numpy/albumentations only: checked once, on the TensorFlow pass")
def test_loader_benchmark_profiles_the_cli_loader(tmp_path):
    # The data side of benchmarks/loader.py (generated PNG files, the CLI's loader, the stage profile, the
    # cache filled by a first epoch); the fit rounds cost a model compilation and are left to the benchmark run.
    from benchmarks.loader import cli_defaults, main

    out = tmp_path / "loader.json"
    assert (
        main(
            [
                "--profile-only",
                "--generated",
                "--size",
                "64",
                "--batch",
                "2",
                "--steps",
                "2",
                "--warmup",
                "1",
                "--profile-batches",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    defaults = cli_defaults()
    assert (record["workers"], record["multiprocessing"], record["cache_mb"]) == (
        defaults["workers"],
        defaults["multiprocessing"],
        defaults["cache_mb"],
    )
    assert record["data"].startswith("generated 480x360 PNGs") and record["scale"] == 0.25
    cold, warm = record["loader_ms_per_batch"], record["loader_ms_per_batch_cached"]
    assert warm["decode"] < 0.1 * cold["decode"] and cold["total"] > warm["total"] > 0
    assert record["cached_samples"] == 64  # the whole generated set fits in the default cache


def test_loader_benchmark_verdict_and_paired_round_ratios():
    # Best of each side for the PASS line; each round's back-to-back ratio and their median beside it; the
    # process' own warm-up (--settle) runs before the rounds by default.
    from benchmarks.loader import TARGET, parse_args, summarize_rounds

    rates = {"memory": [2.5, 3.0, 2.8, 2.0], "loader": [2.5, 2.7, 2.9, 1.9]}
    cpu = {"memory": [6.0, 5.0, 5.2, 7.0], "loader": [6.1, 5.5, 5.0, 7.2]}
    out = summarize_rounds(rates, cpu)
    assert (out["best_in_memory"], out["best_loader"]) == (3.0, 2.9)
    assert out["ratio"] == pytest.approx(2.9 / 3.0) and out["passed"] == (2.9 / 3.0 >= TARGET)
    assert out["cpu_ratio"] == pytest.approx(5.0 / 5.0)
    assert out["paired_ratios"] == pytest.approx([1.0, 0.9, 2.9 / 2.8, 0.95])
    assert out["median_paired_ratio"] == pytest.approx((0.95 + 1.0) / 2)
    assert (parse_args([]).settle, parse_args(["--quick"]).settle, parse_args(["--settle", "0"]).settle) == (12, 2, 0)


# --------------------------------------------------------------------------------- accuracy side by side (CamVid)
requires_smp = pytest.mark.skipif(
    not (SMP_DIR / "segmentation_models_pytorch").exists(),
    reason=f"SMP is not installed in {SMP_DIR} (`make bench-env`)",
)


def test_accuracy_protocol_is_the_cli_configuration(tmp_path):
    # The SMP side is configured by parsing the very `train` arguments that ours runs with.
    from segmentation_models.cli import build_parser
    from segmentation_models.cli.train import config_from_args

    args = accuracy.parse_args(["--quick", "--data", str(tmp_path), "--output", str(tmp_path / "out")])
    config = config_from_args(build_parser().parse_args(accuracy.cli_train_argv(args, tmp_path / "run")))
    assert config["model"] == {
        "arch": "unet",
        "backbone": "resnet34",
        "encoder_weights": None,
        "encoder_freeze": False,
        "options": {},
    }
    t = config["train"]
    assert (t["epochs"], t["batch_size"], t["crop"], t["scale"], t["steps_per_epoch"], t["val_steps"]) == (
        1,
        2,
        [64, 64],
        0.25,
        3,
        1,
    )
    assert (t["loss"], t["optimizer"], t["schedule"], t["lr"], t["seed"], t["augment"]) == (
        "cce_dice_loss",
        "adam",
        "cosine",
        1e-3,
        0,
        True,
    )
    evaluate = build_parser().parse_args(accuracy.cli_evaluate_argv(args, tmp_path / "run"))
    assert (evaluate.split, evaluate.limit) == ("test", 4)


def test_equal_wall_clock_mode_trains_the_epochs_that_fit(tmp_path, monkeypatch):
    # Each contender's calibration epoch sets its own epoch count; the budgeted run gets it in args and argv.
    argv = [
        "--minutes",
        "10",
        "--epochs",
        "3",
        "--data",
        str(tmp_path),
        "--output",
        str(tmp_path / "out"),
        "--overlays=2",
    ]
    args = accuracy.parse_args(argv)
    calls = []

    def fake_run(run_args, run_argv, contender, out):
        calls.append((run_args.epochs, run_argv, contender, out))
        return {"seconds_per_epoch": [400.0, 130.0 if contender == "ours" else 200.0]}  # the first: start-up

    monkeypatch.setattr(accuracy, "run_contender", fake_run)
    for contender, epochs in (("ours", 4), ("smp", 3)):
        run_args, run_argv, calibration = accuracy.calibrated(args, argv, contender)
        assert calibration == {
            "epoch_seconds": 130.0 if contender == "ours" else 200.0,
            "epochs": epochs,
            "minutes": 10.0,
        }
        assert run_args.epochs == epochs and accuracy.parse_args(run_argv).epochs == epochs
        assert "--minutes" not in run_argv and run_argv.count("--epochs") == 1
        probe_epochs, probe_argv, _, probe_out = calls[-1]
        assert probe_epochs == 2 and probe_out == args.output / "calibration" / contender
        probe = accuracy.parse_args(probe_argv)
        assert (probe.epochs, probe.overlays, probe.eval_limit, probe.minutes) == (2, 0, 1, None)
    assert args.epochs == 3  # the caller's arguments are left as they were
    assert accuracy.epochs_in_budget(0.5, 45.0) == 1 and accuracy.epochs_in_budget(30, 119.9) == 15
    with pytest.raises(SystemExit, match="--minutes"):
        accuracy.parse_args(["--minutes", "0"])


@pytest.mark.skipif(BACKEND != "torch", reason="torch on the torch pass only")
@pytest.mark.parametrize("loss", ["categorical_crossentropy", "cce_dice_loss"])
def test_smp_loss_equals_the_cli_training_loss(loss):
    # What `segmentation-models train` minimises (its compiled loss, fed the loader's targets and pixel weights)
    # equals the SMP side's torch loss, void and padding included.
    import torch

    from segmentation_models.data import IGNORE, one_hot_targets
    from segmentation_models.training import get_loss

    rng = np.random.default_rng(0)
    classes = 5
    masks = rng.integers(0, classes, (2, 6, 7)).astype("uint8")
    masks[0, :3] = IGNORE
    masks[1, :, -2:] = IGNORE
    y, w = one_hot_targets(masks, classes)
    logits = rng.normal(size=(2, 6, 7, classes)).astype("float32")
    probs = keras.ops.softmax(keras.ops.convert_to_tensor(logits), axis=-1)
    inputs = keras.Input((6, 7, classes))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    model.compile(loss=get_loss(loss))
    cli = float(keras.ops.convert_to_numpy(model.compute_loss(y=y, y_pred=probs, sample_weight=w)))
    ours = accuracy.cli_equivalent_loss(
        torch.from_numpy(logits).permute(0, 3, 1, 2), torch.from_numpy(accuracy.target_indices(y, w)), classes, loss
    )
    assert float(ours) == pytest.approx(cli, rel=1e-5)
    np.testing.assert_array_equal(accuracy.target_indices(y, w), masks)


@requires_smp
@pytest.mark.skipif(BACKEND != "torch", reason="SMP (torch) once, on the torch pass")
def test_accuracy_smp_side_trains_and_scores_like_evaluate(tmp_path):
    import torch

    from segmentation_models.data import CAMVID_CLASSES

    root = shared_path("camvid")
    args = accuracy.parse_args(
        [
            "--quick",
            "--data",
            str(root),
            "--backbone",
            "resnet18",
            "--steps-per-epoch",
            "2",
            "--eval-limit",
            "2",
            "--torch-threads",
            str(torch.get_num_threads()),
            "--output",
            str(tmp_path),
        ]
    )
    summary = accuracy.run_smp(args, tmp_path / "smp")
    assert (summary["epochs"], summary["steps_per_epoch"], summary["encoder"]) == (1, 2, "tu-resnet18")
    assert summary["input_standardisation"] is not None  # resnet18: identity preprocessing, bn_data in ours
    record = accuracy.smp_record(args, tmp_path / "smp")
    assert record["steps"] == 2 and record["test_images"] == 2
    assert list(record["per_class_iou"]) == list(CAMVID_CLASSES)
    assert 0 <= record["test_mean_iou"] <= 1 and record["test_pixels"] < 2 * 360 * 480  # void left out
    table = accuracy.markdown_table([record]).splitlines()
    assert table[0].startswith("| contender | model | epochs | steps |") and "| Unet-tu-resnet18 | 1 | 2 |" in table[2]


def _interleaved_record(contender: str, train_times: list[float], round_: int = 0) -> dict:
    return {
        "contender_id": contender,
        "arch": "Unet",
        "backbone": "resnet34",
        "size": 256,
        "batch": 8,
        "status": "ok",
        "interleaved": True,
        "round": round_,
        "peak_rss_train_mb": 1000.0,
        "train": {"median_s": sorted(train_times)[len(train_times) // 2], "times_s": train_times},
    }


def test_paired_ratios_pool_the_per_call_ratios_of_interleaved_rounds():
    from benchmarks.run import merge_rounds

    # round 0: the machine slows down 2x mid-round, on both sides; round 1: ours 1.5x faster throughout
    raw = [
        _interleaved_record("ours-torch", [1.0, 1.0, 2.0, 2.0]),
        _interleaved_record("smp-torch", [1.3, 1.3, 2.6, 2.6]),
        _interleaved_record("ours-torch", [1.0, 1.0], 1),
        _interleaved_record("smp-torch", [1.5, 1.5], 1),
    ]
    (row, _best) = ratio_rows(merge_rounds(raw), raw)
    assert (row["ours"], row["peer"]) == ("ours-torch", "smp-torch")
    assert row["train_pairs"] == 6 and row["train_paired"] == pytest.approx(1.3)  # median of 1.3 x4, 1.5 x2
    assert row["train"] == pytest.approx(1.5)  # best rounds (medians): ours 1.0 s, SMP 1.5 s, both round 1
    assert "infer_paired" not in row  # no inference calls recorded
    assert "train_paired" not in ratio_rows(merge_rounds(raw))[0]  # without the unmerged records: no pairing


FAKE_GATED_WORKER = """
import sys, time
sys.path.insert(0, {root!r})
from benchmarks import worker
worker.GATED["on"] = True
name = sys.argv[sys.argv.index("--contender") + 1]
worker.gate("build")
def busy():
    t = time.perf_counter()
    while time.perf_counter() - t < 0.05:
        pass
record = {{"contender": name, "status": "ok", "train": worker.timed(busy, 1, 4, "train")}}
print(worker.RESULT_PREFIX + __import__("json").dumps(record), flush=True)
"""


def test_interleaved_workers_compute_one_at_a_time_in_turns(tmp_path, monkeypatch):
    """run.py --interleave: the contenders' processes take turns call by call, never computing together."""
    from benchmarks import run

    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_GATED_WORKER.format(root=str(ROOT)))
    monkeypatch.setattr(run, "WORKER", script)
    records = run.run_interleaved({"ours-torch": [], "smp-torch": [], "smp-torch-retain": []}, timeout=60)
    windows = []
    for contender, record in records.items():
        assert record["status"] == "ok" and record["interleaved"], record
        train = record["train"]
        assert len(train["times_s"]) == len(train["starts_unix_s"]) == 4
        windows += [
            (start, start + t, contender, i)
            for i, (start, t) in enumerate(zip(train["starts_unix_s"], train["times_s"]))
        ]
    windows.sort()
    for (_, end, *_), (start, *_) in zip(windows, windows[1:]):
        assert end <= start + 1e-3, windows  # one call at a time
    order = [(contender, i) for *_, contender, i in windows]
    forward, backward = ["ours-torch", "smp-torch", "smp-torch-retain"], ["smp-torch-retain", "smp-torch", "ours-torch"]
    # turns: build, warm-up, then call i of every contender, the order reversed each turn
    expected = [(c, i) for i in range(4) for c in (forward if (i + 2) % 2 == 0 else backward)]
    assert order == expected


@pytest.mark.skipif(BACKEND != "torch", reason="benchmarks/op_times.py times torch operators")
def test_operator_times_cover_the_step(capsys):
    from benchmarks import op_times

    assert (
        op_times.main(
            [
                "ours",
                "Unet",
                "resnet18",
                "--phase",
                "train",
                "--size",
                "64",
                "--batch",
                "2",
                "--warmup",
                "1",
                "--steps",
                "1",
                "--top",
                "40",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    step = float(head.split(": ")[1].split(" s per step")[0])
    operators = float(head.split("operators ")[1].split(" s")[0])
    assert 0 < operators < 3 * step  # the operators' own time is of the order of the step's
    assert "convolution_backward" in out and "native_batch_norm" in out
