"""Regenerate tests/data/mit_golden.npz: MiT feature maps computed by the reference implementation.

The reference is Hugging Face transformers' ``SegformerModel`` (the implementation whose tensor names
NVIDIA's published ``nvidia/mit-b*`` checkpoints use). It is filled with deterministic, seeded random
weights (`seeded_tensors`, pure numpy, also used by the test to rebuild the very same checkpoint
without torch), run on a seeded 1x64x64x3 input, and its four stage outputs are stored (NHWC).

Run it with torch available and transformers installed in a throw-away folder, never in the
project's environment::

    python -m pip install --no-deps --target /tmp/mitref transformers==4.46.3 huggingface_hub==0.26.5 \
        tokenizers==0.20.3 regex tqdm fsspec
    PYTHONPATH=/tmp/mitref python scripts/make_mit_golden.py

The npz holds, per variant, the tensor names and shapes of the checkpoint (so the test does not need
torch to know them) and the golden features; the weights themselves are not committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SEED = 20240601
INPUT_SHAPE = (1, 64, 64, 3)  # NHWC
VARIANTS = {  # name -> (hidden sizes, depths)
    "mit_b0": ((32, 64, 160, 256), (2, 2, 2, 2)),
    "mit_b1": ((64, 128, 320, 512), (2, 2, 2, 2)),
}
GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "data" / "mit_golden.npz"


def seeded_input(seed: int = SEED) -> np.ndarray:
    """The fixed NHWC input (ImageNet-normalised scale)."""
    return np.random.default_rng(seed).normal(0.0, 1.0, INPUT_SHAPE).astype("float32")


def seeded_tensors(names, shapes, seed: int = SEED) -> dict[str, np.ndarray]:
    """Deterministic weights for a checkpoint with these tensor names and (PyTorch) shapes.

    Kernels ~ N(0, 1/fan_in); LayerNorm scales ~ 1 + N(0, 0.1); other vectors ~ N(0, 0.1).
    """
    rng = np.random.default_rng(seed + 1)
    out = {}
    for name, shape in zip(names, shapes):
        shape = tuple(int(s) for s in shape)
        if len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        elif name.endswith(".weight"):
            value = 1.0 + rng.normal(0.0, 0.1, shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        out[name] = value.astype("float32")
    return out


def main() -> None:
    import torch
    from transformers import SegformerConfig, SegformerModel

    torch.manual_seed(0)
    x = torch.from_numpy(seeded_input().transpose(0, 3, 1, 2).copy())
    arrays: dict[str, np.ndarray] = {}
    for variant, (sizes, depths) in VARIANTS.items():
        config = SegformerConfig(hidden_sizes=list(sizes), depths=list(depths), num_labels=1000)
        model = SegformerModel(config).eval()
        # the names of the published checkpoints: SegformerForImageClassification = "segformer." + ...
        ref = {f"segformer.{k}": tuple(v.shape) for k, v in model.state_dict().items()}
        ref["classifier.weight"] = (1000, sizes[-1])
        ref["classifier.bias"] = (1000,)
        names, shapes = list(ref), [list(s) for s in ref.values()]
        tensors = seeded_tensors(names, shapes)
        state = {k[len("segformer.") :]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith("segformer.")}
        model.load_state_dict(state, strict=True)
        with torch.no_grad():
            hidden = model(x, output_hidden_states=True).hidden_states
        arrays[f"{variant}/names_shapes"] = np.array(json.dumps([names, shapes]))
        for stride, h in zip((4, 8, 16, 32), hidden):
            arrays[f"{variant}/stride{stride}"] = h.numpy().transpose(0, 2, 3, 1).astype("float32")
        print(variant, sum(int(np.prod(s)) for s in shapes), [tuple(h.shape) for h in hidden])
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN, **arrays)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
