"""Shared test configuration: backend facts, ../shared data, the 1.0.1 oracle."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
ORACLE_DIR = ROOT / ".oracle" / "sm101"
BACKEND = keras.backend.backend()
ON_TF = BACKEND == "tensorflow"
IN_CI = bool(os.environ.get("CI"))


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {BACKEND}"


_tests_started = 0
GC_EVERY = 10  # tests between full garbage collections (one costs ~0.2 s with TensorFlow loaded)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with a clean Keras graph/name state and fixed seeds.

    A full ``gc.collect()`` (``clear_session``'s ``free_memory``) runs every ``GC_EVERY`` tests only: run before
    each of ~480 TensorFlow tests it cost ~50 s of the pass, and Python's own collector still runs in between.
    """
    global _tests_started
    keras.backend.clear_session(free_memory=_tests_started % GC_EVERY == 0)
    _tests_started += 1
    keras.utils.set_random_seed(0)
    yield


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing in CI: ../shared must be beside the project")
        pytest.skip(f"{path} is absent (../shared is only present beside the project's own checkout)")
    return path


def run_oracle(script: str, cwd: Path, timeout: int = 600) -> str:
    """Run `script` with segmentation_models 1.0.1 (tf.keras) in a subprocess; return its stdout.

    The oracle is installed by `make test` into .oracle/sm101 (never imported in this process:
    it shares our import name).
    """
    if not (ORACLE_DIR / "segmentation_models").exists():
        if IN_CI:
            pytest.fail(f"segmentation_models 1.0.1 oracle missing at {ORACLE_DIR}; `make test` installs it")
        pytest.skip(f"segmentation_models 1.0.1 oracle not installed at {ORACLE_DIR} (run `make test`)")
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ORACLE_DIR),
        SM_FRAMEWORK="tf.keras",
        KERAS_BACKEND="tensorflow",
        TF_CPP_MIN_LOG_LEVEL="3",
        CUDA_VISIBLE_DEVICES="",
    )
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=str(cwd),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"oracle script failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout


def run_fresh_python(script: str, cwd: Path, timeout: int = 600, env_extra: dict | None = None) -> str:
    """Run `script` in a fresh interpreter with the current backend; return stdout."""
    env = dict(os.environ)
    env["KERAS_BACKEND"] = BACKEND
    env["PYTHONPATH"] = str(ROOT)
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=str(cwd),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"fresh-process script failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout


class _ReloadChecker:
    """Reloads saved `.keras` models in one fresh process that runs beside the tests.

    Each `add` hands a model to that process at once (a line on its stdin), so the reloading overlaps the tests
    instead of running at session end, when the other worker may already be idle (it took 90 s at the end of the
    TensorFlow pass). `verify` closes its input, waits for it, and checks every model was reloaded equal.
    """

    SCRIPT = """
        import json, sys
        import numpy as np
        import keras
        import segmentation_models  # noqa: F401  (registers the package's Keras objects)
        results = open(sys.argv[1], "a")
        for line in sys.stdin:
            model_path, xp, yp, label = json.loads(line)
            m = keras.saving.load_model(model_path, safe_mode=True)
            segmentation_models.accel.adopt(m)  # the package's model again, on its kernels as when saved
            x = np.load(xp)
            # as tests/helpers.py::forward: JAX compiles the whole model, the others call it eagerly
            got = m.predict_on_batch(x) if keras.backend.backend() == "jax" else m(x, training=False)
            got = got if isinstance(got, (list, tuple)) else [got]
            stored = np.load(yp)
            want = [stored[f"arr_{k}"] for k in range(len(stored.files))]
            err = max(float(np.abs(keras.ops.convert_to_numpy(g) - w).max()) for g, w in zip(got, want))
            err = err if len(got) == len(want) else float("inf")
            results.write(json.dumps([label, err]) + "\\n")
            results.flush()
            del m
            keras.backend.clear_session()
        """

    def __init__(self, folder: Path):
        self.folder = folder
        self.labels: list[str] = []
        self.process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=str(ROOT))
        self.log = open(self.folder / "reload.log", "w")  # closed in verify
        return subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(self.SCRIPT), str(self.folder / "results.jsonl")],
            cwd=str(self.folder),
            env=env,
            stdin=subprocess.PIPE,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def add(self, model_path: Path, x, expected, label: str) -> None:
        import json

        import numpy as np

        i = len(self.labels)
        xp, yp = self.folder / f"x{i}.npy", self.folder / f"y{i}.npz"
        np.save(xp, x)
        # several outputs (e.g. mask and auxiliary labels) are stored in order
        np.savez(yp, *(expected if isinstance(expected, (list, tuple)) else [expected]))
        self.labels.append(label)
        if self.process is None:
            self.process = self._start()
        try:
            self.process.stdin.write(json.dumps([str(model_path), str(xp), str(yp), label]) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:  # the reloading process died: verify reports its output
            pass

    def verify(self) -> None:
        import json

        if self.process is None:
            return
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        code = self.process.wait(timeout=900)
        self.log.close()
        output = (self.folder / "reload.log").read_text()[-5000:]
        results_file = self.folder / "results.jsonl"
        lines = results_file.read_text().splitlines() if results_file.exists() else []
        results = [json.loads(line) for line in lines]
        assert code == 0 and len(results) == len(self.labels), (
            f"fresh-process reload stopped after {len(results)} of {len(self.labels)} models:\n{output}"
        )
        bad = [(label, err) for label, err in results if not err <= 1e-6]
        assert not bad, f"fresh-process reload differs: {bad}"


@pytest.fixture(scope="session")
def reload_checker(tmp_path_factory):
    """Session fixture: `check_model` hands it saved models, which one fresh process beside the tests reloads
    (safe_mode on, no custom_objects, only keras and segmentation_models imported) and compares; checked at the
    end of the session."""
    checker = _ReloadChecker(tmp_path_factory.mktemp("fresh_reload"))
    yield checker
    checker.verify()


# Test files that take longest on each backend (worker seconds measured with SM_TEST_TIMINGS), heaviest first.
# `make test` runs pytest-xdist with `--dist loadfile --no-loadscope-reorder`, which hands whole files to the two
# workers in collection order: longest first keeps one worker from finishing a heavy file alone at the end.
HEAVIEST_FIRST = {
    "tensorflow": (
        "test_cli.py",
        "test_backbone_families.py",
        "test_seed_examples.py",
        "test_keras_applications_backbones.py",
        "test_faults.py",
        "test_unet.py",
        "test_smp_architectures.py",
        "test_fpn_linknet_pspnet.py",
        "test_saved_models.py",
        "test_hub.py",  # ~55 s of calls measured alone (not yet with SM_TEST_TIMINGS under xdist)
        "test_tf_kernels.py",
        "test_weights.py",
        "test_export.py",
        "test_sliding_windows.py",
        "test_tta.py",
        "test_export_litert.py",
        "test_input_size.py",
        "test_unet_equals_101.py",
        "test_fpn_linknet_pspnet_equal_101.py",
        "test_training.py",
        "test_validation.py",
        "test_accel.py",
        "test_segformer.py",
    ),
    "jax": (
        "test_smp_architectures.py",
        "test_backbone_families.py",
        "test_keras_applications_backbones.py",
        "test_unet.py",
        "test_fpn_linknet_pspnet.py",
        "test_distribute.py",
        "test_segformer.py",
        "test_hub.py",  # ~60 s measured alone, cold compilation cache
        "test_cli.py",
        "test_saved_models.py",
        "test_input_size.py",
        "test_mit.py",
        "test_tta.py",
        "test_losses.py",
        "test_faults.py",
    ),
    "torch": (
        "test_torch_kernels.py",
        "test_smp_architectures.py",
        "test_unet.py",
        "test_export.py",
        "test_benchmarks.py",
        "test_api_compat.py",
        "test_fpn_linknet_pspnet.py",
        "test_accel.py",
        "test_saved_models.py",
        "test_hub.py",
    ),
}


def export_unet(input_shape=(None, None, 3), **kwargs):
    """A small Unet with BatchNormalization statistics away from (0, 1), for export checks."""
    import numpy as np

    import segmentation_models as sm

    kwargs = {
        "classes": 3,
        "activation": "softmax",
        "encoder_weights": None,
        "decoder_filters": (16, 8, 8, 8, 8),
        **kwargs,
    }
    model = sm.Unet("resnet18", input_shape=input_shape, **kwargs)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # BN statistics away from (0, 1), so inference-mode BN is exercised
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape).astype("float32"))
    return model


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST.get(BACKEND, ()))}
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), order[id(item)]))


def pytest_runtest_logreport(report):
    """With SM_TEST_TIMINGS=FILE, append each test phase's duration as it finishes (to find slow tests)."""
    path = os.environ.get("SM_TEST_TIMINGS")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # under xdist the controller logs the reports its workers send
    if path and report.when in ("setup", "call", "teardown"):
        with open(path, "a") as f:
            f.write(f"{report.duration:8.1f} {report.outcome:7s} {report.when:8s} {report.nodeid}\n")
