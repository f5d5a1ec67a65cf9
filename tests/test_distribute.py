"""Data-parallel training (issue #35): sharded loaders, the engine per backend, and end-to-end runs on several
devices (JAX: 2 host devices; TensorFlow: MirroredStrategy over 2 logical CPUs) and processes (JAX: 2 processes
on 127.0.0.1), each compared with one device. Device counts are fixed when a backend starts: those runs are fresh
processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from segmentation_models.data import SegmentationLoader
from segmentation_models.data.shapes import write_shapes_dataset
from segmentation_models.data.sources import open_train_val
from segmentation_models.training import TrainingOptions
from segmentation_models.training.distribute import setup_distribution

from conftest import BACKEND, ROOT, run_fresh_python

on = {b: pytest.mark.skipif(BACKEND != b, reason=f"runs on the {b} backend") for b in ("tensorflow", "jax", "torch")}

# A small Unet-ResNet18; 12 shapes of 64x64: 10 for training (2 steps of the global batch 4 on 32x32 crops),
# 2 for validation
TRAIN = [
    "train",
    "--classes",
    "background,disc,square",
    "--backbone",
    "resnet18",
    "--encoder-weights",
    "none",
    "--model-arg",
    "encoder_depth=3",  # the encoder cut at stride 8: a third of the layers to compile
    "--model-arg",
    "decoder_filters=[8,8,8]",
    "--batch-size",
    "4",
    "--crop",
    "32",
    "--optimizer",
    "sgd",
    "--lr",
    "0.01",
    "--bn-batches",
    "2",
    "--overlays",
    "0",
    "--workers",
    "1",
    "--quiet",
]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), 12, 64, seed=1)


# ---- the loader's shards and the options (no engine) -----------------------------------------------------------
def test_shards_partition_every_global_batch_in_the_shared_order(shapes):
    train_set, val_set = open_train_val({"data": str(shapes), "classes": 3}, 0, False)
    kw = dict(training=True, crop_size=32, augment=False, seed=3, workers=1)
    whole = SegmentationLoader(train_set, 4, **kw)
    parts = [SegmentationLoader(train_set, 4, shard=(k, 2), **kw) for k in range(2)]
    for epoch in (0, 5):  # the same order in every process, and after a resume (the epoch is all it takes)
        for loader in (whole, *parts):
            loader.epoch = epoch
        for i in range(len(whole)):
            x, y, w = whole[i]
            got = [p[i] for p in parts]
            np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), x)
            np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), y)
            assert all(len(g[0]) == 2 for g in got)
    # validation: the last batch (2 of 4) is filled with weight-0 copies, one real sample per part
    val = [SegmentationLoader(val_set, 4, shard=(k, 2), pad_last=2, workers=1) for k in range(2)]
    batches = [v[0] for v in val]
    assert [b[0].shape[0] for b in batches] == [2, 2]
    assert [int((b[2].reshape(2, -1).max(1) > 0).sum()) for b in batches] == [1, 1]
    with pytest.raises(ValueError, match="multiple of 2"):
        SegmentationLoader(train_set, 3, shard=(0, 2), **kw)


def test_distribution_options_are_checked():
    with pytest.raises(ValueError, match="distribute must be one of"):
        TrainingOptions(distribute="ddp")
    with pytest.raises(ValueError, match="sync_bn"):
        TrainingOptions(sync_bn="yes")
    with pytest.raises(ValueError, match="distribute_timeout"):
        TrainingOptions(distribute_timeout=0)
    assert setup_distribution("none").engine == "none"


@on["torch"]
def test_torch_refuses_data_parallel_with_the_reason():
    with pytest.raises(ValueError, match="not supported on the torch backend.*DistributedDataParallel"):
        setup_distribution("data-parallel")
    assert not setup_distribution("auto").active  # auto stays on one device


@on["tensorflow"]
def test_tensorflow_refuses_several_workers_with_the_reason(monkeypatch):
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    with pytest.raises(ValueError, match="several TensorFlow workers are not supported.*72388"):
        setup_distribution("auto")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not a valid cluster"):
        setup_distribution("auto")


@on["jax"]
@pytest.mark.parametrize("mode", ["data-parallel"])
def test_one_jax_device_refuses_explicit_data_parallel(mode):
    with pytest.raises(ValueError, match="needs more than one device or process"):
        setup_distribution(mode)


# ---- several devices in one process: equal to one device with the same global batch ------------------------------
_COMPARE = """
import json
{setup}
import keras
import numpy as np
from segmentation_models.cli import main
from segmentation_models import runs

args = {args!r}
runs_ = {{}}
for mode in ("data-parallel", "none"):
    out = {root!r} + "/" + mode
    assert main(args + ["--output", out, "--distribute", mode]) == 0
    runs_[mode] = out
a, b = (runs.load_model(runs_[m] + "/last.keras") for m in ("data-parallel", "none"))
pairs = list(zip(a.trainable_weights, b.trainable_weights))
trainable = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)
moving = max(
    float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / (1 + np.abs(np.asarray(y)))))
    for x, y in zip(a.non_trainable_weights, b.non_trainable_weights)
)
history = {{m: json.load(open(runs_[m] + "/history.json")) for m in runs_}}
config = json.load(open(runs_["data-parallel"] + "/config.json"))
print("RESULT", json.dumps({{"trainable": trainable, "moving": moving, "history": history, "config": config}}))
"""


def _compare(shapes: Path, tmp_path: Path, setup: str, extra: list[str], env: dict | None = None) -> dict:
    args = [*TRAIN, "--data", str(shapes), "--epochs", "1", "--steps-per-epoch", "2", *extra]
    script = _COMPARE.format(setup=setup, args=args, root=str(tmp_path))
    out = run_fresh_python(script, tmp_path, timeout=600, env_extra=env)
    return json.loads(out.split("RESULT ", 1)[1])


def _check_recorded(result: dict, sync_bn: bool) -> None:
    recorded = result["config"]["distribution"]
    assert recorded["replicas"] == 2 and recorded["processes"] == 1
    assert recorded["global_batch_size"] == 4 and recorded["per_replica_batch_size"] == 2
    assert recorded["lr"] == 0.01 and recorded["lr_scaled"] is False and recorded["sync_bn"] is sync_bn


@on["jax"]
def test_jax_two_devices_train_as_one_device(shapes, tmp_path):
    """DataParallel over 2 host devices: the global batch's statistics (batch norm included) and gradients,
    so the same weights and metrics as one device, to float rounding."""
    result = _compare(shapes, tmp_path, "", [], {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert result["config"]["distribution"]["engine"] == "DataParallel"
    _check_recorded(result, sync_bn=True)  # synchronized by construction
    assert result["trainable"] < 1e-5 and result["moving"] < 1e-5, result
    parallel, single = result["history"]["data-parallel"][-1], result["history"]["none"][-1]
    for key in ("loss", "val_loss", "val_mean_iou", "val_accuracy"):
        assert parallel[key] == pytest.approx(single[key], abs=1e-5), key


_TF_TWO_CPUS = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""


@on["tensorflow"]
def test_tensorflow_mirrored_over_two_cpus_trains_as_one_device(shapes, tmp_path):
    """MirroredStrategy over 2 logical CPUs with --sync-bn: the same training as one device. Keras' synchronized
    moments are E[x^2] - E[x]^2 (one device: two passes), hence a looser tolerance than JAX's."""
    result = _compare(shapes, tmp_path, _TF_TWO_CPUS, ["--sync-bn"])
    assert result["config"]["distribution"]["engine"] == "MirroredStrategy"
    _check_recorded(result, sync_bn=True)
    # the re-estimated statistics (relative) follow the weights' small differences through 20 layers; pooling
    # them over replicas is exact (recalibrating one model under the strategy or without gives equal values)
    assert result["trainable"] < 5e-4 and result["moving"] < 2e-2, result
    parallel, single = result["history"]["data-parallel"][-1], result["history"]["none"][-1]
    for key in ("loss", "val_loss", "val_mean_iou", "val_accuracy"):
        assert parallel[key] == pytest.approx(single[key], rel=5e-3), key


@on["tensorflow"]
def test_package_losses_divide_once_by_the_replicas_under_mirrored_strategy(tmp_path):
    """Each replica's loss is its own value over the replicas (their gradients are summed), with and without
    sample weights, for a loss, a sum of losses (its parts are not divided again) and a multiple, as Keras' own."""
    out = run_fresh_python(
        _TF_TWO_CPUS
        + """
import json
import numpy as np, keras
import segmentation_models as sm
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
y = np.eye(3, dtype="float32")[rng.integers(0, 3, (2, 8, 8))]
p = keras.ops.convert_to_numpy(keras.ops.softmax(rng.normal(size=(2, 8, 8, 3)).astype("float32")))
w = rng.uniform(0.5, 1.5, (2, 8, 8)).astype("float32")
losses = [sm.losses.DiceLoss(), sm.losses.CategoricalCELoss(), sm.losses.cce_dice_loss, 2 * sm.losses.JaccardLoss(),
          keras.losses.CategoricalCrossentropy()]
ratios = {}
for i, loss in enumerate(losses):
    for weights in (None, w):
        alone = float(loss(y, p, sample_weight=weights))
        sw = None if weights is None else tf.constant(weights)
        run = tf.function(lambda: loss(tf.constant(y), tf.constant(p), sw))
        per_replica = strategy.experimental_local_results(strategy.run(run))
        ratios[f"{i} {loss.name} {weights is not None}"] = [float(v) / alone for v in per_replica]
print(json.dumps(ratios))
""",
        tmp_path,
    )
    ratios = json.loads(out.strip().splitlines()[-1])
    assert len(ratios) == 10
    for name, values in ratios.items():
        assert values == pytest.approx([0.5, 0.5], rel=1e-5), name


# ---- two processes on 127.0.0.1 (JAX) ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str], tmp_path: Path, tag: str) -> list[subprocess.Popen]:
    """The two processes of a JAX run on 127.0.0.1 (the CLI), output in tmp_path/<tag>.<rank>.log."""
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env.update(
            KERAS_BACKEND="jax",
            PYTHONPATH=str(ROOT),
            KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
            KERAS_DISTRIBUTION_NUM_PROCESSES="2",
            KERAS_DISTRIBUTION_PROCESS_ID=str(rank),
        )
        log = open(tmp_path / f"{tag}.{rank}.log", "w")
        procs.append(
            subprocess.Popen([sys.executable, "-m", "segmentation_models", *args], env=env, stdout=log, stderr=log)
        )
    return procs


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    try:
        return [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)


@on["jax"]
def test_jax_two_processes_kill_resume_and_dataset_level_metrics(shapes, tmp_path):
    """Two processes: one is killed after the first epoch; the other ends with a clear message within the
    timeout; --resume on both continues; the chief's run folder is complete and its validation metrics equal
    a one-process evaluation of the same weights on the whole validation set."""
    out = tmp_path / "run"
    # no batch-norm re-estimation here (the two-device test covers it): a compile less per process
    args = [*TRAIN, "--data", str(shapes), "--epochs", "2", "--steps-per-epoch", "2", "--bn-batches", "0"]
    # a killed peer surfaces at once as a failed collective; the heartbeat timeout (20 s) is the bound behind it,
    # long enough that a busy machine does not trip it first
    args += ["--distribute-timeout", "20", "--output", str(out)]
    procs = _launch(args, tmp_path, "first")
    try:
        deadline = time.time() + 300
        while not (out / "checkpoints" / "epoch_0001.keras").exists() and time.time() < deadline:
            assert all(p.poll() is None for p in procs), (tmp_path / "first.0.log").read_text()[-3000:]
            time.sleep(0.1)
        procs[1].send_signal(signal.SIGKILL)
        killed = time.time()
        rc = procs[0].wait(timeout=120)
        waited = time.time() - killed
    finally:
        _finish(procs, 30)
    log = (tmp_path / "first.0.log").read_text()
    assert rc == 1, log[-3000:]
    assert "data-parallel run stopped" in log and "--resume" in log, log[-3000:]
    assert waited < 60, waited  # bounded, not a hang

    assert _finish(_launch(["train", "--output", str(out), "--resume"], tmp_path, "resume"), 300) == [0, 0], (
        tmp_path / "resume.0.log"
    ).read_text()[-3000:] + (tmp_path / "resume.1.log").read_text()[-3000:]
    assert "resumed from" in (tmp_path / "resume.1.log").read_text()  # every process read the chief's checkpoint
    for name in ("config.json", "history.json", "history.csv", "training_curves.png", "summary.json", "last.keras"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "epoch_0002.keras").is_file()
    assert not list(out.rglob(".*.tmp*"))
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["distribution"]["processes"] == 2 and summary["distribution"]["replicas"] == 2

    # the logged validation metrics are data-set level: one process, the same weights, the whole validation set
    from segmentation_models import runs
    from segmentation_models.preprocessing import get_preprocessing
    from segmentation_models.training import get_metrics

    config = json.loads((out / "config.json").read_text())
    _, val_set = open_train_val(config["data"], 0, False)
    model = runs.load_model(out / "last.keras")
    model.compile(loss=None, weighted_metrics=get_metrics(["mean_iou", "accuracy"], 3))
    loader = SegmentationLoader(val_set, 4, preprocessing=get_preprocessing("resnet18"), workers=1)
    scores = model.evaluate(loader, verbose=0, return_dict=True)
    assert history[-1]["val_mean_iou"] == pytest.approx(scores["mean_iou"], abs=1e-5)
    assert history[-1]["val_accuracy"] == pytest.approx(scores["accuracy"], abs=1e-5)
