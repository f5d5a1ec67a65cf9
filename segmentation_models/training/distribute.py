"""Data-parallel training on the backends' own engines (issue #35; docs/scaling.md).

`setup_distribution` picks the engine for ``TrainingOptions.distribute``:

- TensorFlow: ``tf.distribute.MirroredStrategy`` over the local GPUs (or over several logical CPUs, when the
  program configured them). Several workers (``TF_CONFIG``) are refused: Keras 3's ``fit`` fails under
  ``MultiWorkerMirroredStrategy`` (tensorflow/tensorflow#72388);
- JAX: ``keras.distribution.DataParallel`` over every device of every process; several processes join through
  ``jax.distributed.initialize`` with Keras' variables ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the coordinator
  first), ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID`` (as
  ``keras.distribution.initialize`` reads them), with ``timeout`` as its initialisation and heartbeat timeout;
- torch: not supported (Keras' ``fit`` on torch has no DistributedDataParallel; see `check_torch`).

Conventions: ``batch_size`` is the global batch (all replicas together; each replica gets ``batch_size /
replicas``), and the learning rate is used as given, not scaled: the same configuration follows the same
trajectory on 1 or N devices. Process-wide effects, which cannot be undone in a process: a multi-worker
strategy configures TensorFlow's collectives, ``jax.distributed.initialize`` joins the JAX cluster. Everything
else is scoped: the model is built, compiled and trained inside `Distribution.scope`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..validation import check_choice
from .config import DISTRIBUTE_MODES

if TYPE_CHECKING:
    import keras


__all__ = [
    "DISTRIBUTE_MODES",
    "Distribution",
    "LostProcessError",
    "setup_distribution",
    "set_synchronized_batchnorm",
    "portable_batchnorm",
    "lost_process_errors",
]

JAX_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID")


class LostProcessError(ConnectionError):
    """A process of a data-parallel run stopped or stopped answering (the engine's collective failed or timed
    out). A ConnectionError, so the command line prints it as one line."""


@dataclass
class Distribution:
    """The engine of a run and where this process stands in it.

    Attributes:
        engine: "none", "MirroredStrategy" or "DataParallel".
        replicas: devices that each take an equal part of every global batch (all processes together).
        processes, process_index: the processes of the run and this one's rank (0 is the chief, which alone
            writes the run folder).
        sync_bn: batch statistics over the global batch (TensorFlow: synchronized BatchNormalization; JAX's
            DataParallel computes them over the global batch in any case).
    """

    engine: str = "none"
    replicas: int = 1
    processes: int = 1
    process_index: int = 0
    sync_bn: bool = False
    strategy: Any = field(default=None, repr=False)  # tf.distribute.Strategy or keras.distribution.DataParallel

    @property
    def active(self) -> bool:
        return self.engine != "none"

    @property
    def is_chief(self) -> bool:
        return self.process_index == 0

    @property
    def shard(self) -> tuple[int, int]:
        """This process's part of every global batch: (rank, processes), what `SegmentationLoader` takes."""
        return self.process_index, self.processes

    def scope(self) -> contextlib.AbstractContextManager:
        """The engine's scope, in which the model is built, compiled and trained (nothing outside it changes)."""
        if self.strategy is None:
            return contextlib.nullcontext()
        return self.strategy.scope()

    def fit_scope(self) -> contextlib.AbstractContextManager:
        """The scope ``fit`` runs in: JAX's trainer reads the distribution of the scope it runs in; a TensorFlow
        model keeps the strategy it was built in (its callbacks then run outside it)."""
        return self.scope() if self.engine == "DataParallel" else contextlib.nullcontext()

    @contextlib.contextmanager
    def chief_only(self) -> Iterator[None]:
        """A block that only the chief runs (saving a model): outside the distribution, so that nothing in it
        waits for the other processes (Keras' saving makes variables, which DataParallel would lay out over
        every process's devices, a collective the others never join)."""
        if self.engine != "DataParallel":
            yield
            return
        import keras

        current = keras.distribution.distribution()
        keras.distribution.set_distribution(None)
        try:
            yield
        finally:
            keras.distribution.set_distribution(current)

    def check_batch(self, batch_size: int) -> None:
        """ValueError when the global batch does not split evenly over the replicas."""
        if batch_size % self.replicas:
            raise ValueError(
                f"--batch-size {batch_size} (the global batch) does not split evenly over {self.replicas} "
                f"replicas ({self.engine}): choose a multiple of {self.replicas}, e.g. "
                f"{max(1, batch_size // self.replicas) * self.replicas}"
            )

    def describe(self, batch_size: int, lr: float) -> dict:
        """What the run records and prints: engine, replicas, processes, batch sizes and the learning rate."""
        return {
            "engine": self.engine,
            "replicas": self.replicas,
            "processes": self.processes,
            "global_batch_size": batch_size,
            "per_replica_batch_size": batch_size // self.replicas,
            "lr": lr,
            "lr_scaled": False,  # --lr is the rate of the global batch, whatever the number of replicas
            "sync_bn": self.sync_bn,
        }


def _tf_cluster() -> tuple[int, int]:
    """(tasks, this task's rank) of ``TF_CONFIG`` (chief first, then the workers); (1, 0) without one."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return 1, 0
    try:
        config = json.loads(text)
        cluster, task = config.get("cluster", {}), config.get("task", {})
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f'TF_CONFIG is not a valid cluster description ({err}): it must be JSON like {{"cluster": {{"worker": '
            '["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
        ) from None
    if kind not in ("chief", "worker"):
        raise ValueError(f"TF_CONFIG task type {kind!r}: data-parallel training runs chief and worker tasks only")
    tasks = len(chiefs) + len(workers)
    rank = index if kind == "chief" else len(chiefs) + index
    if not 0 <= rank < tasks:
        raise ValueError(f"TF_CONFIG task {kind} {index} is not in its cluster of {tasks} task(s)")
    return tasks, rank


def _jax_cluster() -> tuple[int, int, str | None]:
    """(processes, rank, coordinator address) from Keras' KERAS_DISTRIBUTION_* variables; (1, 0, None) if unset."""
    addresses, count, rank = (os.environ.get(name) for name in JAX_ENV)
    if not (addresses or count):
        return 1, 0, None
    try:
        processes, index = int(count), int(rank)
    except (TypeError, ValueError):
        raise ValueError(
            f"{', '.join(JAX_ENV)} must all be set for a multi-process JAX run (the coordinator's host:port, the "
            f"number of processes, this process's rank from 0), got {addresses!r}, {count!r}, {rank!r}"
        ) from None
    if not addresses or not 0 <= index < processes:
        raise ValueError(
            f"KERAS_DISTRIBUTION_PROCESS_ID {index} must be in 0..{processes - 1} and "
            f"KERAS_DISTRIBUTION_JOB_ADDRESSES must name the coordinator (host:port), got {addresses!r}"
        )
    return processes, index, addresses.split(",")[0].strip()


def setup_distribution(mode: str = "auto", sync_bn: bool = False, timeout: float = 300) -> Distribution:
    """The engine for ``mode`` on this backend and machine (see the module's docstring).

    ``auto``: data-parallel over all local devices when there is more than one, or over the processes that
    ``KERAS_DISTRIBUTION_*`` describe (JAX); else none. ``data-parallel``: the same, and an error when
    there is only one device and one process. ``none``: one device. ``timeout``: seconds after which a process
    that stopped answering ends the run with `LostProcessError` instead of a hang.
    """
    import keras

    check_choice("distribute", mode, DISTRIBUTE_MODES)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"distribute_timeout must be a positive number of seconds, got {timeout!r}")
    if mode == "none":
        return Distribution(sync_bn=sync_bn)
    backend = keras.backend.backend()
    if backend == "torch":
        return _torch(mode, sync_bn)
    if backend == "tensorflow":
        found = _tensorflow(sync_bn, timeout)
    elif backend == "jax":
        found = _jax(sync_bn, timeout)
    else:  # pragma: no cover - numpy/openvino backends do not train
        raise ValueError(f"--distribute {mode}: the {backend} backend does not train; use tensorflow or jax")
    if found is None:
        if mode == "data-parallel":
            raise ValueError(
                f"--distribute data-parallel needs more than one device or process, and this {backend} process "
                "sees one device and no cluster (TF_CONFIG, KERAS_DISTRIBUTION_*): use --distribute auto or none, "
                "or see docs/scaling.md for the launch commands"
            )
        return Distribution(sync_bn=sync_bn)
    return found


def _tensorflow(sync_bn: bool, timeout: float) -> Distribution | None:
    import tensorflow as tf

    tasks, _ = _tf_cluster()
    if tasks > 1:
        # Keras 3's fit cannot run under MultiWorkerMirroredStrategy: its train step reduces every metric with
        # strategy.reduce("MEAN", value, axis=0), which fails on the scalar metrics of several workers
        # ("Invalid reduction dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388); checked
        # with Keras 3.15 and TensorFlow 2.21
        raise ValueError(
            f"TF_CONFIG names {tasks} tasks, but several TensorFlow workers are not supported: Keras 3's fit fails "
            "under tf.distribute.MultiWorkerMirroredStrategy (tensorflow/tensorflow#72388). Train on several "
            "machines with KERAS_BACKEND=jax and KERAS_DISTRIBUTION_* (docs/scaling.md); on one machine, unset "
            "TF_CONFIG: --distribute uses MirroredStrategy over its GPUs"
        )
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if len(devices) < 2:  # several logical CPUs exist only when the program configured them (tests, CPU hosts)
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        devices = cpus if not devices and len(cpus) > 1 else []
    if len(devices) < 2:
        return None
    strategy = tf.distribute.MirroredStrategy(devices)
    return Distribution("MirroredStrategy", strategy.num_replicas_in_sync, 1, 0, sync_bn, strategy)


def _jax(sync_bn: bool, timeout: float) -> Distribution | None:
    import jax
    import keras

    processes, rank, coordinator = _jax_cluster()
    if processes > 1 and not jax.distributed.is_initialized():
        # Keras' variables, read as keras.distribution.initialize reads them; called directly for the timeouts:
        # a process that does not join or stops answering ends the others after `timeout` seconds
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=processes,
            process_id=rank,
            initialization_timeout=int(timeout),
            heartbeat_timeout_seconds=max(1, int(timeout)),
        )
    devices = keras.distribution.list_devices()
    if len(devices) < 2 and jax.process_count() < 2:
        return None
    # the loader shards the data itself (each process its part of every global batch)
    strategy = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    # DataParallel computes every batch statistic over the global batch: synchronized by construction
    return Distribution("DataParallel", len(devices), jax.process_count(), jax.process_index(), True, strategy)


def _torch(mode: str, sync_bn: bool) -> Distribution:
    """torch: Keras' ``fit`` has no DistributedDataParallel, so there is nothing of the engine's to run on."""
    if mode == "data-parallel":
        raise ValueError(
            "--distribute data-parallel is not supported on the torch backend: Keras' fit on torch trains on one "
            "device and has no DistributedDataParallel (torchrun) integration, and the package does not write its "
            "own gradient averaging. Use KERAS_BACKEND=jax (keras.distribution.DataParallel) or tensorflow "
            "(tf.distribute) for several devices; see docs/scaling.md"
        )
    return Distribution(sync_bn=sync_bn)


def _batchnorm_layers(model: keras.Model) -> list:
    import keras

    from ..batchnorm import _all_layers

    return [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def set_synchronized_batchnorm(model: keras.Model, distribution: Distribution) -> int:
    """With ``distribution.sync_bn`` on TensorFlow: every BatchNormalization layer of ``model`` takes its batch
    statistics over all replicas (Keras' ``synchronized=True``); returns the layers changed. JAX's DataParallel
    needs nothing (its statistics are global), and one device has nothing to synchronise."""
    import keras

    if not (distribution.sync_bn and distribution.active and keras.backend.backend() == "tensorflow"):
        return 0
    layers = _batchnorm_layers(model)
    for layer in layers:
        layer.synchronized = True  # read at every call (BatchNormalization._moments)
    return len(layers)


@contextlib.contextmanager
def portable_batchnorm(model: keras.Model) -> Iterator[None]:
    """Saved models record ``synchronized=False``: Keras refuses ``synchronized=True`` on other backends than
    TensorFlow, and it is a setting of the training, not of the model (a resumed run sets it again)."""
    layers = [layer for layer in _batchnorm_layers(model) if getattr(layer, "synchronized", False)]
    for layer in layers:
        layer.synchronized = False
    try:
        yield
    finally:
        for layer in layers:
            layer.synchronized = True


@contextlib.contextmanager
def lost_process_errors(distribution: Distribution, run_folder: os.PathLike | str) -> Iterator[None]:
    """In a run of several processes, an error while training (above all a collective that failed or timed out
    because a process died or stopped answering; the engines raise several types for it) becomes one
    `LostProcessError` naming this process, the run folder and ``--resume``."""
    if distribution.processes < 2:
        yield
        return
    try:
        yield
    except KeyboardInterrupt:
        raise
    except Exception as err:
        text = str(err).strip()
        first = text.splitlines()[0][:300] if text else ""
        raise LostProcessError(
            f"the data-parallel run stopped in process {distribution.process_index} of {distribution.processes} "
            f"({distribution.engine}: {type(err).__name__}: {first}); a process that stopped or did not answer "
            f"within the timeout ends the others so (see each process's log). The completed epochs are kept in "
            f"{run_folder}: start every process again with --resume"
        ) from err
