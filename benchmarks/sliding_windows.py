"""Sliding-window inference: ours (`segmentation_models.inference.predict_sliding`) against MONAI's
`sliding_window_inference` on the same model, tile, overlap and window batch; then a large TIFF end to end
through `segmentation-models predict --tile` (streamed from disk to a mask TIFF).

Each measurement runs in its own process (peak RSS is the process's high-water mark, VmHWM; on a GPU the peak
memory torch or TensorFlow allocated is reported too):

- ``ours``: `predict_sliding` on a --size x --size RGB image in memory, float probabilities out (what MONAI
  returns), Gaussian blending (sigma 1/8 of the tile, as MONAI's default ``sigma_scale=0.125``);
- ``monai``: `monai.inferers.sliding_window_inference` with the Keras model (torch backend) as its predictor,
  ``mode="gaussian"``; skipped with a message when MONAI is not installed or the backend is not torch;
- ``stream``: a --big x --big tiled RGB TIFF (written tile by tile) predicted by the command line into a mask TIFF
  (a run folder holding the same model): wall time and peak RSS of that process.

Throughput is megapixels of image per second after one untimed warm-up window batch. The model has random
weights (the work per pixel does not depend on them).

    KERAS_BACKEND=torch python benchmarks/sliding_windows.py                    # 4000 px, 20000 px TIFF, GPU
    KERAS_BACKEND=tensorflow python benchmarks/sliding_windows.py --size 2000        # smoke: 2000 px, TIFF too
    python benchmarks/sliding_windows.py --json sliding.json                    # results as JSON as well
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `python -m segmentation_models ARGS` that writes its own peak RSS (VmHWM, KB) to a file when it exits. The
# child's rusage ru_maxrss would not do: exec records the forking parent's high-water mark in it.
MEASURED_CLI = """
import atexit, os, runpy, sys
def peak():
    with open("/proc/self/status") as f, open(os.environ["SM_PEAK_RSS_FILE"], "w") as out:
        out.write(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
atexit.register(peak)
sys.argv = ["segmentation-models", *sys.argv[1:]]
runpy.run_module("segmentation_models", run_name="__main__")
"""


def _peak_rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def _device_peak_gb() -> float | None:
    import keras

    if keras.backend.backend() == "torch":
        import torch

        return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return tf.config.experimental.get_memory_info(gpus[0].name)["peak"] / 2**30 if gpus else None
    return None


def _model(args):
    import segmentation_models as sm

    return sm.Unet(args.backbone, classes=args.classes, encoder_weights=None)


def _image(side: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (side, side, 3), dtype=np.uint8)


def worker_ours(args) -> dict:
    import numpy as np

    from segmentation_models.inference import predict_sliding

    model, image = _model(args), _image(args.size)
    scale = lambda b: b / np.float32(255)  # noqa: E731
    predict_sliding(model, image[: args.tile, : args.tile], args.tile, batch_size=args.batch_size, preprocessing=scale)
    started = time.perf_counter()
    probs = predict_sliding(
        model, image, args.tile, args.overlap, "gaussian", args.batch_size, preprocessing=scale, verbose=False
    )
    seconds = time.perf_counter() - started
    assert probs.shape == (args.size, args.size, args.classes)
    return {"seconds": seconds, "mpx_per_s": args.size**2 / 1e6 / seconds}


def worker_monai(args) -> dict:
    import keras

    if keras.backend.backend() != "torch":
        return {
            "skipped": f"MONAI runs on torch: this run's backend is {keras.backend.backend()} (KERAS_BACKEND=torch)"
        }
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / ".bench" / "monai"))  # `make bench-env`
    try:
        from monai.inferers import sliding_window_inference
    except ImportError:
        return {"skipped": "MONAI is not installed (`make bench-env` puts it in .bench/monai): contender left out"}
    import torch

    model, image = _model(args), _image(args.size)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.from_numpy(image).permute(2, 0, 1)[None].to(device=device, dtype=torch.float32) / 255.0

    def predictor(batch):  # MONAI's NCHW windows through the channels-last Keras model
        return model(batch.permute(0, 2, 3, 1), training=False).permute(0, 3, 1, 2)

    def run(inputs):
        with torch.no_grad():
            return sliding_window_inference(
                inputs,
                (args.tile, args.tile),
                args.batch_size,
                predictor,
                overlap=args.overlap,
                mode="gaussian",
                sigma_scale=0.125,
                sw_device=device,
                device=device,
            )

    run(x[..., : args.tile, : args.tile])
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    probs = run(x)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    assert tuple(probs.shape) == (1, args.classes, args.size, args.size)
    return {"seconds": seconds, "mpx_per_s": args.size**2 / 1e6 / seconds}


def _write_big_tiff(path: Path, side: int, tile: int = 512) -> None:
    """A side x side RGB tiled TIFF written tile by tile (never the whole image in memory)."""
    import numpy as np
    import tifffile

    base = np.random.default_rng(0).integers(0, 256, (tile, tile, 3), dtype=np.uint8)

    def tiles():
        for ty in range(-(-side // tile)):
            for tx in range(-(-side // tile)):
                yield base + np.uint8((ty * 7 + tx * 13) % 256)

    tifffile.imwrite(path, tiles(), shape=(side, side, 3), dtype="uint8", tile=(tile, tile), photometric="rgb")


def stream(args, folder: Path) -> dict:
    """The --big TIFF through `segmentation-models predict --tile` in a subprocess: seconds and its peak RSS."""
    from segmentation_models.preprocessing import get_preprocessing

    model = _model(args)
    run = folder / "run"
    run.mkdir()
    model.save(run / "best.keras")
    names = [f"class{i}" for i in range(args.classes)]
    config = {
        "model": {"architecture": "Unet", "backbone": args.backbone},
        "preprocessing": getattr(get_preprocessing(args.backbone), "mode", None),
        "classes": {
            "names": names,
            "colors": [[(37 * i) % 256, (91 * i) % 256, (53 * i) % 256] for i in range(len(names))],
        },
        "train": {"scale": 1.0},
    }
    (run / "config.json").write_text(json.dumps(config))
    big = folder / "big.tif"
    started = time.perf_counter()
    _write_big_tiff(big, args.big)
    written = time.perf_counter() - started
    peak = folder / "peak_rss_kb"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", SM_PEAK_RSS_FILE=str(peak))
    cmd = [sys.executable, "-c", MEASURED_CLI, "predict", str(run), str(big), "--quiet"]
    cmd += ["--tile", str(args.tile), "--overlap", str(args.overlap), "--output", str(folder / "pred")]
    started = time.perf_counter()
    with open(folder / "predict.log", "w") as log:
        code = subprocess.run(cmd, env=env, stdout=log, stderr=log).returncode
    seconds = time.perf_counter() - started
    if code:
        raise RuntimeError(f"predict failed:\n{(folder / 'predict.log').read_text()[-3000:]}")
    import tifffile

    with tifffile.TiffFile(folder / "pred" / "big_mask.tif") as tif:
        assert tif.pages.first.shape == (args.big, args.big)
    return {
        "side": args.big,
        "tiff_written_s": round(written, 1),
        "seconds": seconds,
        "mpx_per_s": args.big**2 / 1e6 / seconds,
        "peak_rss_gb": int(peak.read_text()) / 2**20,
    }


def _in_subprocess(args, which: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", which] + [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("worker", "json")
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=4000, help="side of the in-memory image (default 4000)")
    p.add_argument(
        "--big", type=int, default=None, help="side of the streamed TIFF (0: skip; default 20000, --size below 4000)"
    )
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--backbone", default="resnet34")
    p.add_argument("--classes", type=int, default=12)
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--worker", choices=("ours", "monai", "stream"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.big is None:
        args.big = 20000 if args.size >= 4000 else args.size
    if args.worker:
        if args.worker == "stream":
            with tempfile.TemporaryDirectory() as folder:
                result = stream(args, Path(folder))
        else:
            result = {"ours": worker_ours, "monai": worker_monai}[args.worker](args)
            result.update(peak_rss_gb=_peak_rss_gb(), device_peak_gb=_device_peak_gb())
        print(json.dumps(result))
        return 0
    import keras

    backend = keras.backend.backend()
    print(
        f"{backend}: Unet-{args.backbone}, {args.classes} classes, tile {args.tile}, overlap {args.overlap}, "
        f"batch {args.batch_size}; {args.size}x{args.size} in memory"
    )
    results = {"backend": backend, "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "json")}}
    for which in ("ours", "monai") + (("stream",) if args.big else ()):
        r = results[which] = _in_subprocess(args, which)
        if "skipped" in r or "error" in r:
            print(f"{which:7s} {r.get('skipped') or 'failed: ' + r['error']}")
            continue
        device = f", device peak {r['device_peak_gb']:.2f} GB" if r.get("device_peak_gb") is not None else ""
        size = f" ({r['side']}x{r['side']} TIFF via the command line)" if which == "stream" else ""
        print(
            f"{which:7s} {r['mpx_per_s']:8.2f} megapixels/s  {r['seconds']:8.1f} s  "
            f"peak RSS {r['peak_rss_gb']:.2f} GB{device}{size}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
