"""`SegmentationLoader`: a keras.utils.PyDataset that feeds `fit`/`evaluate` on every backend."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

import keras
import numpy as np

from .augment import STRIDE, pad_to_multiple, rescale, train_augmentation
from .datasets import SegmentationDataset
from .io import IGNORE

__all__ = ["SegmentationLoader", "one_hot_targets"]


def one_hot_targets(masks: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One-hot targets (B, H, W, C) with all-zero rows at ignored pixels, and pixel weights (B, H, W)."""
    masks = np.asarray(masks)
    if masks.dtype == np.uint8:  # rows of a 256-entry table (4x faster than indexing an identity matrix)
        table = np.zeros((256, num_classes), "float32")
        table[np.arange(num_classes), np.arange(num_classes)] = 1.0
        y = table.take(masks, axis=0)
    else:
        y = (masks[..., None] == np.arange(num_classes)).astype("float32")
    return y, (masks != IGNORE).astype("float32")


class SegmentationLoader(keras.utils.PyDataset):
    """Batches ``(images, one-hot masks, pixel weights)`` from a `SegmentationDataset`.

    - the backbone's preprocessing (``preprocessing``: a backbone name or a function) is applied to images;
    - ignored pixels (void, padding) have all-zero targets and weight 0, so losses and metrics skip them;
    - ``training=True``: seeded shuffling per epoch and seeded augmentation per sample, so that batch ``i`` of
      epoch ``e`` is a pure function of ``(seed, e, i)`` (an interrupted run resumes with the same data order);
      incomplete last batches are dropped;
    - batches are padded (bottom/right, ignored) to a multiple of 32; ``crop_size`` crops training images;
    - ``max_batches`` caps the batches per epoch (the first ones of each epoch's order);
    - ``shard=(index, count)``: data-parallel training over ``count`` processes. ``batch_size`` is the global
      batch; batch ``i`` of every process is cut from the same global batch of the shared seeded order, and this
      process gets its ``index``-th equal part (``batch_size / count`` samples): no sample is read twice, every
      process runs the same number of steps, and a resumed run sees the same order. ``pad_last=N`` (the
      replicas): the last (incomplete) batch of an evaluation loader is filled up to ``batch_size`` with weight-0
      copies of a sample, its real samples dealt over the N parts, so that it splits evenly over devices and
      processes while metrics count each real sample once;
    - ``workers`` threads (or processes with ``use_multiprocessing``) prepare batches while the model trains;
    - ``cache_mb``: decoded (and rescaled) samples are kept in memory up to this many megabytes, so that later
      epochs skip file decoding (the largest cost of a batch); 0 disables it. The cache lives in this process:
      worker threads share it, while worker processes (``use_multiprocessing``, restarted by Keras every epoch)
      never reuse it, so it is off in that mode.

    Call ``fit(..., shuffle=False)``: the loader shuffles itself (Keras' own shuffling is not seeded).
    """

    def __init__(
        self,
        dataset: SegmentationDataset,
        batch_size: int = 8,
        preprocessing: str | Callable | None = None,
        training: bool = False,
        crop_size: tuple[int, int] | int | None = None,
        scale: float = 1.0,
        augment: bool = True,
        seed: int = 0,
        epoch: int = 0,
        workers: int = 2,
        use_multiprocessing: bool = False,
        max_queue_size: int = 8,
        max_batches: int | None = None,
        cache_mb: float = 1024,
        shard: tuple[int, int] = (0, 1),
        pad_last: int = 0,
    ):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if training and len(dataset) < batch_size:
            raise ValueError(
                f"data set {dataset.name!r} has {len(dataset)} pairs, fewer than the batch size {batch_size}"
            )
        index, count = shard
        if not (isinstance(count, int) and count >= 1 and isinstance(index, int) and 0 <= index < count):
            raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}")
        if batch_size % count:
            raise ValueError(
                f"the global batch size {batch_size} does not split evenly over {count} processes: choose a "
                f"batch size that is a multiple of {count}"
            )
        if isinstance(crop_size, int):
            crop_size = (crop_size, crop_size)
        if crop_size and any(c % 32 for c in crop_size):
            raise ValueError(f"crop size must be a multiple of 32, got {crop_size}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if isinstance(preprocessing, str):
            from ..preprocessing import get_preprocessing

            preprocessing = get_preprocessing(preprocessing)
        self.dataset = dataset
        self.batch_size = batch_size
        self.preprocessing = preprocessing
        self.training = training
        self.crop_size = tuple(crop_size) if crop_size else None
        self.scale = float(scale)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.max_batches = max_batches
        self.shard = (index, count)
        if (
            isinstance(pad_last, bool)
            or not isinstance(pad_last, int)
            or pad_last < 0
            or (pad_last and batch_size % pad_last)
        ):
            raise ValueError(f"pad_last must be 0 or a number of parts that divides batch_size, got {pad_last!r}")
        self.pad_last = pad_last
        self._sizes: list[tuple[int, int]] | None = None  # image sizes from the headers (processes > 1)
        if not cache_mb >= 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
        self.cache_mb = 0.0 if use_multiprocessing else float(cache_mb)
        self._pipeline = train_augmentation(self.crop_size, augment) if training else None
        self._local = threading.local()
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cache_bytes = 0
        self._cache_lock = threading.Lock()

    def __len__(self) -> int:
        n = len(self.dataset)
        batches = max(1, n // self.batch_size) if self.training else -(-n // self.batch_size)
        return min(batches, self.max_batches) if self.max_batches else batches

    def order(self, epoch: int | None = None) -> np.ndarray:
        """Sample order of ``epoch`` (a seeded permutation when training)."""
        n = len(self.dataset)
        if not self.training:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch if epoch is None else epoch]).permutation(n)

    def _augment(self, image, mask, sample_seed: int):
        pipeline = getattr(self._local, "pipeline", None)
        if pipeline is None:  # one copy per worker thread: albumentations transforms hold their RNG state
            pipeline = self._local.pipeline = copy.deepcopy(self._pipeline)
        pipeline.set_random_seed(sample_seed)
        out = pipeline(image=image, mask=mask)
        return out["image"], out["mask"]

    def load_sample(self, index: int, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Image (uint8) and mask of sample ``index`` after rescaling and (training) augmentation. They may be
        read-only (cached arrays or views of them): copy before changing them in place."""
        image, mask = self.decoded_sample(int(index))
        if self.training:
            epoch = self.epoch if epoch is None else epoch
            sample_seed = int(np.random.SeedSequence([self.seed, epoch, int(index)]).generate_state(1)[0])
            image, mask = self._augment(image, mask, sample_seed)
        return image, mask

    def decoded_sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image and mask of sample ``index`` read from its files and rescaled, from the cache when there.
        Cached arrays are read-only, so that no later step can change them in place."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        image, mask = rescale(*self.dataset.load(index), self.scale)
        size = image.nbytes + mask.nbytes
        if self._cache_bytes + size <= self.cache_mb * 2**20:
            with self._cache_lock:
                if index not in self._cache and self._cache_bytes + size <= self.cache_mb * 2**20:
                    image, mask = np.ascontiguousarray(image), np.ascontiguousarray(mask)
                    image.setflags(write=False)
                    mask.setflags(write=False)
                    self._cache[index] = (image, mask)
                    self._cache_bytes += size
        return image, mask

    def batch_indices(self, i: int) -> np.ndarray:
        """The samples of global batch ``i`` (all processes together; see ``shard``)."""
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range (0..{len(self) - 1})")
        return self.order()[i * self.batch_size : (i + 1) * self.batch_size]

    def __getitem__(self, i: int):
        epoch = self.epoch
        indices = self.batch_indices(i)
        filler = np.zeros(len(indices), bool)
        if self.pad_last and len(indices) < self.batch_size:  # weight-0 fillers: an even split, metrics unchanged
            indices, filler = self._padded(indices)
        index, count = self.shard
        part = len(indices) // count
        if count > 1 and part * count != len(indices):
            raise ValueError(
                f"batch {i} has {len(indices)} samples, which do not split over {count} processes (pad_last, the "
                "number of replicas, fills the last batch)"
            )
        mine = slice(index * part, (index + 1) * part) if count > 1 else slice(None)
        # every process pads its part to the size of the whole global batch: the parts must have one shape
        shape = self._global_shape(indices) if count > 1 else None
        x, y, weights = self.collate([self.load_sample(j, epoch) for j in indices[mine]], shape)
        if filler[mine].any():
            weights[filler[mine]] = 0.0
        return x, y, weights

    def _padded(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``indices`` filled up to the batch size with copies of the first, and which are fillers. The real
        samples are dealt round-robin over the ``pad_last`` equal parts (replicas), so that no part holds only
        fillers while another has real samples."""
        parts = self.pad_last
        per = self.batch_size // parts
        slots = np.array([part * per + k for k in range(per) for part in range(parts)])
        out = np.full(self.batch_size, indices[0])
        filler = np.ones(self.batch_size, bool)
        out[slots[: len(indices)]] = indices
        filler[slots[: len(indices)]] = False
        return out, filler

    def _global_shape(self, indices: np.ndarray) -> tuple[int, int]:
        """The padded (height, width) of the samples ``indices`` (a training crop, or the largest rescaled image
        from the file headers, rounded up to a multiple of 32), without decoding them."""
        if self.training and self.crop_size:
            return self.crop_size
        if self._sizes is None:
            self._sizes = self.dataset.image_sizes()
        rescaled = [(max(1, round(h * self.scale)), max(1, round(w * self.scale))) for h, w in self._sizes]
        high = max(rescaled[int(j)][0] for j in indices)
        wide = max(rescaled[int(j)][1] for j in indices)
        return -(-high // STRIDE) * STRIDE, -(-wide // STRIDE) * STRIDE

    def collate(
        self, samples: list[tuple[np.ndarray, np.ndarray]], shape: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One batch ``(x, y, weights)`` from ``load_sample`` outputs: padded (to ``shape`` when given),
        preprocessed, one-hot."""
        images = pad_to_multiple([s[0] for s in samples], 0, shape=shape)
        masks = pad_to_multiple([s[1] for s in samples], IGNORE, shape=shape)
        x = images.astype("float32")
        if self.preprocessing is not None:
            x = np.asarray(self.preprocessing(x), dtype="float32")
        y, weights = one_hot_targets(masks, self.dataset.num_classes)
        return x, y, weights

    def inference_batches(self, batches: int, seed: int = 0) -> InferenceBatches:
        """Up to ``batches`` batches of a seeded random choice of this loader's samples as inference sees them:
        rescaled, padded and preprocessed, with no crop or augmentation (decoded samples come from this loader's
        cache). What `recalibrate_batchnorm` needs to match inference."""
        n = len(self.dataset)
        chosen = np.random.default_rng([self.seed, seed]).permutation(n)[: batches * self.batch_size]
        return InferenceBatches(self, chosen)

    def on_epoch_end(self) -> None:
        if self.training:
            self.epoch += 1

    def __getstate__(self):  # worker processes get a copy without the thread-local cache
        state = self.__dict__.copy()
        for key in ("_local", "_cache_lock"):
            state.pop(key, None)
        state["_cache"], state["_cache_bytes"] = {}, 0
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()
        self._cache_lock = threading.Lock()


class InferenceBatches:
    """Batches ``(x, y, weights)`` of given samples of a loader, without crop or augmentation
    (`SegmentationLoader.inference_batches`)."""

    def __init__(self, loader: SegmentationLoader, indices: np.ndarray):
        self.loader = loader
        self.indices = np.asarray(indices)

    def __len__(self) -> int:
        return -(-len(self.indices) // self.loader.batch_size)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range (0..{len(self) - 1})")
        size = self.loader.batch_size
        return self.loader.collate(
            [self.loader.decoded_sample(int(j)) for j in self.indices[i * size : (i + 1) * size]]
        )
