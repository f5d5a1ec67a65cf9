"""`segmentation-models demo`: train a small Unet on generated shapes, no download, about a minute."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train a Unet-resnet18 briefly on generated data and save a picture")
    p.add_argument("--output", default="runs/demo", help="folder for the picture and the model (default runs/demo)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--size", type=int, default=64, help="image size, a multiple of 32")
    p.add_argument("--samples", type=int, default=192)
    p.set_defaults(func=run)


def generated_shapes(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images of noisy backgrounds with discs (class 1) and squares (class 2); masks of class indices."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(110, 25, (n, size, size, 3))
    masks = np.zeros((n, size, size), "int64")
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            cls = int(rng.integers(1, 3))
            r = rng.integers(size // 10, size // 4)
            cy, cx = rng.integers(r, size - r, 2)
            region = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) if cls == 1 else ((abs(yy - cy) <= r) & (abs(xx - cx) <= r))
            masks[i][region] = cls
            images[i][region] = rng.normal([200, 60, 60] if cls == 1 else [60, 80, 200], 25)
    return np.clip(images, 0, 255).astype("float32"), masks


def run(args: argparse.Namespace) -> int:
    import keras

    import segmentation_models as sm

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
    classes = 3
    x, masks = generated_shapes(args.samples, args.size)
    y = np.eye(classes, dtype="float32")[masks]
    x = sm.get_preprocessing("resnet18")(x)
    split = int(0.8 * len(x))
    model = sm.Unet("resnet18", input_shape=(args.size, args.size, 3), classes=classes, activation="softmax",
                    encoder_weights=None, decoder_filters=(128, 64, 32, 16, 8))
    model.compile(keras.optimizers.Adam(2e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    start = time.time()
    model.fit(x[:split], y[:split], validation_data=(x[split:], y[split:]), epochs=args.epochs, batch_size=8, verbose=1)
    pred = model.predict(x[split:], verbose=0).argmax(-1)
    truth = masks[split:]
    ious = []
    for c in range(1, classes):
        inter = np.logical_and(pred == c, truth == c).sum()
        union = np.logical_or(pred == c, truth == c).sum()
        ious.append(inter / union if union else 1.0)
    model.save(out / "model.keras")
    picture = _plot(x[split:], truth, pred, out / "predictions.png")
    print(f"trained {args.epochs} epochs in {time.time() - start:.0f} s; validation IoU discs {ious[0]:.3f}, squares {ious[1]:.3f}")
    print(f"picture: {picture}\nmodel:   {out / 'model.keras'}")
    return 0


def _plot(images, truth, pred, path: Path, rows: int = 4) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, 3, figsize=(7, 2.3 * rows))
    for r in range(rows):
        img = images[r] - images[r].min()
        for ax, content, title in zip(axes[r], (img / max(img.max(), 1e-6), truth[r], pred[r]), ("image", "truth", "prediction")):
            ax.imshow(content, vmin=0, vmax=2, cmap=None if content.ndim == 3 else "viridis", interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
