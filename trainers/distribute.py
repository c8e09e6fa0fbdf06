"""Distribution strategies, worker roles and mixed precision for training.

The train command calls `make_strategy(flags.strategy)` and builds and
compiles the model inside `strategy.scope()`; the batch size the user sets is
the *global* batch (Keras splits it over the replicas). Under
`MultiWorkerMirroredStrategy` every worker runs the same program: only the
chief may write checkpoints and exports to the real paths, the other workers
write to a private temporary path (`write_path`) that is removed afterwards.

Example:
>>> import numpy as np
>>> import zoo
>>> from trainers import distribute
>>> images = np.random.rand(64, 28, 28, 1).astype("float32")  # in [0, 1]
>>> strategy = distribute.make_strategy("auto")
>>> with strategy.scope():
...     model = zoo.VQVAE()
...     model.compile(optimizer="adam")
>>> history = model.fit(images, batch_size=32 * strategy.num_replicas_in_sync, verbose=0)
"""

import contextlib
import json
import os
import shutil
import signal
import sys
import threading

import keras
import numpy as np
import tensorflow as tf

from trainers import machine
from zoo.atomic import atomic_path, write_text

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic that oneDNN uses."""


class BackupError(ValueError):
    """A run's backup cannot be resumed as asked: the user's to fix, reported in one line."""


WORKER_TIMEOUT_VAR = "ZOO_WORKER_TIMEOUT"
"""Environment variable: seconds a multi-worker job waits for all its workers (default 600)."""
WORKER_TIMEOUT = 600.0


def make_strategy(name: str = "auto",
                  worker_timeout: float | None = None) -> tf.distribute.Strategy:
    """Creates the `tf.distribute` strategy named by the `--strategy` flag.

    Must be called before any other TensorFlow op when `name` is
    `"multi_worker"` (the collective runtime is configured at creation).
    A multi-worker strategy is created once every worker of `TF_CONFIG` has
    connected; a worker that waits longer than `worker_timeout` seconds for
    the others raises a `ValueError` naming them (TensorFlow alone waits
    silently, without a limit).

    Args:
        name: str. One of:
            - `"auto"`: `MirroredStrategy` over all GPUs when there are
              several, else `OneDeviceStrategy` on the GPU or the CPU.
            - `"one_device"`: `OneDeviceStrategy` on the first GPU, else CPU.
            - `"mirrored"`: `MirroredStrategy` over all local GPUs (over the
              logical CPUs when there is no GPU, see `split_cpu`).
            - `"multi_worker"`: `MultiWorkerMirroredStrategy` configured from
              the `TF_CONFIG` environment variable (see docs/DISTRIBUTED.md).
            Defaults to `"auto"`.
        worker_timeout: float or `None`. Seconds a `"multi_worker"` strategy
            waits for the other workers. Defaults to `None`: the
            `ZOO_WORKER_TIMEOUT` environment variable, else 600.

    Returns:
        A `tf.distribute.Strategy`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {list(STRATEGIES)}. Received: {name!r}")
    if name == "multi_worker":
        tf_config = os.environ.get("TF_CONFIG", "")
        if not tf_config.strip():
            raise ValueError(
                "strategy='multi_worker' needs the TF_CONFIG environment variable, e.g. "
                '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
                '"task": {"type": "worker", "index": 0}}. Received: TF_CONFIG unset or empty.'
            )
        try:
            config = json.loads(tf_config)
            workers = config["cluster"]["worker"]
            task = config["task"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                "TF_CONFIG must be JSON with `cluster.worker` (a list of host:port) and "
                f"`task` (type and index). Received: TF_CONFIG={tf_config!r} ({error})"
            ) from None
        if not isinstance(workers, list) or not workers or not isinstance(task, dict):
            raise ValueError(f"TF_CONFIG has no worker list or task. Received: {tf_config!r}")
        with _sigterm_kept():
            return _multi_worker_strategy(config, _worker_timeout(worker_timeout))
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def _worker_timeout(worker_timeout: float | None) -> float:
    if worker_timeout is None:
        text = os.environ.get(WORKER_TIMEOUT_VAR, "").strip()
        try:
            worker_timeout = float(text) if text else WORKER_TIMEOUT
        except ValueError:
            raise ValueError(f"{WORKER_TIMEOUT_VAR} must be a number of seconds. "
                             f"Received: {text!r}") from None
    if isinstance(worker_timeout, bool) or not worker_timeout > 0:
        raise ValueError(f"`worker_timeout` must be a number of seconds > 0. "
                         f"Received: {worker_timeout!r}")
    return float(worker_timeout)


def _multi_worker_strategy(tf_config: dict, timeout: float) -> tf.distribute.Strategy:
    """`MultiWorkerMirroredStrategy()`, refused with a message when its workers do not connect.

    TensorFlow's constructor waits until every task of the cluster has
    connected, silently and for as long as it takes (a worker not started, a
    wrong host or port), and its preemption handler swallows `SIGTERM`
    meanwhile. Here the coordination service TensorFlow would configure is
    configured first, with its registration barrier bounded by `timeout`.
    """
    try:  # TensorFlow internals (2.21); without them, TensorFlow's own unbounded wait
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.distribute import multi_worker_util
        from tensorflow.python.eager import context
    except ImportError:
        return tf.distribute.MultiWorkerMirroredStrategy()

    task, cluster = tf_config["task"], tf_config["cluster"]
    me = f"{task.get('type')} {task.get('index')}"
    try:
        address = cluster[task.get("type")][task.get("index")]
    except (KeyError, IndexError, TypeError):
        address = "?"
    others = ", ".join(f"{job} {i} ({a})" for job, addresses in cluster.items()
                       for i, a in enumerate(addresses) if a != address)
    if task.get("type") in ("chief", "worker") and context.context().coordination_service is None:
        cluster_spec = tf.train.ClusterSpec(cluster)
        context.context().configure_coordination_service(
            service_type="standalone",
            service_leader=multi_worker_util.coordination_leader(cluster_spec),
            cluster_register_timeout_in_ms=int(timeout * 1000),
            coordinated_jobs=[
                coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster[job]))
                for job in ("chief", "worker") if job in cluster
            ],
        )
        context.context().coordination_service.cluster_register_with_barrier = True
        print(f"{me} ({address}): waiting for the other workers of TF_CONFIG to connect "
              f"(up to {timeout:.0f} s, {WORKER_TIMEOUT_VAR}).", file=sys.stderr, flush=True)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except tf.errors.DeadlineExceededError:
        raise ValueError(
            f"{me} ({address}) waited {timeout:.0f} s and the other workers of TF_CONFIG did "
            f"not all connect: {others}. Start every worker with the same `cluster` and its "
            "own `task.index`, and check that these host:port addresses are right and "
            f"reachable; or wait longer with {WORKER_TIMEOUT_VAR}=<seconds>."
        ) from None
    except tf.errors.UnknownError as error:
        if "Could not start gRPC server" not in str(error):
            raise
        raise ValueError(
            f"{me} of TF_CONFIG could not listen on {address}: the port is taken, by another "
            "worker started with the same `task.index` or another program. Give each worker "
            f"its own `task.index`, or free the port. Received: {error.message}"
        ) from None


@contextlib.contextmanager
def _sigterm_kept():
    """Gives `SIGTERM` back the handler it had before TensorFlow's preemption notifier.

    Creating a `MultiWorkerMirroredStrategy` starts TensorFlow's coordination
    agent, whose preemption notifier takes `SIGTERM` for a checkpoint handler
    the Keras `fit` loop never consults: `kill` or a cluster manager's
    stop then left the worker training to the end. With the handler restored
    (by default: terminate), a stopped worker stops, and the others end on
    the lost peer, keeping the last backup, as with any other lost worker.
    Only the main thread may set handlers; elsewhere nothing changes.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        yield
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def split_cpu(num_devices: int) -> list[str]:
    """Splits the physical CPU into `num_devices` logical devices.

    For tests of `MirroredStrategy` on machines without GPUs. Must run in a
    fresh process, before TensorFlow has initialised its devices.

    Args:
        num_devices: int. Number of logical CPU devices (>= 1).

    Returns:
        The names of the logical CPU devices.
    """
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"`num_devices` must be an integer >= 1. Received: {num_devices!r}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices
        )
    except RuntimeError as error:
        raise RuntimeError(
            "split_cpu must be called before TensorFlow initialises its devices "
            f"(in a fresh process, before any op). ({error})"
        ) from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def cpu_has_bf16() -> bool:
    """Whether the CPU reports native bfloat16 instructions (`BF16_CPU_FLAGS`)."""
    return bool(set(machine.cpu_flags(BF16_CPU_FLAGS)) & set(BF16_CPU_FLAGS))


def resolve_precision(policy: str = "auto") -> str:
    """The Keras dtype policy that `policy` names; `"auto"` detects the hardware.

    `"auto"` is `"mixed_bfloat16"` on a machine without GPUs whose CPU has
    bfloat16 instructions (AMX or AVX512_BF16: training 1.3-3x faster at the
    same test MSE, see `bench/layouts.py`), and `"float32"` elsewhere (GPUs:
    not measured here; CPUs without bf16 hardware emulate it slowly).

    Args:
        policy: str. One of `PRECISIONS`. Defaults to `"auto"`.

    Returns:
        `"float32"`, `"mixed_float16"` or `"mixed_bfloat16"`.
    """
    if policy not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {list(PRECISIONS)}. Received: {policy!r}")
    if policy != "auto":
        return policy
    if tf.config.list_physical_devices("GPU") or not cpu_has_bf16():
        return "float32"
    return "mixed_bfloat16"


def set_precision(policy: str = "auto") -> str:
    """Sets the global Keras dtype policy for the models built afterwards.

    `"mixed_float16"` computes in float16 with float32 variables (GPUs with
    tensor cores); Keras's optimizer then scales the loss dynamically, and the
    zoo's losses, quantizer distances, softmaxes and statistics stay float32.
    `"mixed_bfloat16"` computes in bfloat16 with float32 variables and needs no
    loss scaling; `"auto"` picks it on CPUs with bfloat16 instructions (see
    `resolve_precision`). Call it before building the model (inside or
    outside the strategy scope). Saved models do not store the policy: a
    model loaded later computes in the policy in force at loading time.

    Args:
        policy: str. `"auto"`, `"float32"`, `"mixed_float16"` or
            `"mixed_bfloat16"`. Defaults to `"auto"`.

    Returns:
        The policy set (what `"auto"` resolved to).
    """
    resolved = resolve_precision(policy)
    keras.mixed_precision.set_global_policy(resolved)
    return resolved


@contextlib.contextmanager
def precision(policy: str = "auto"):
    """Builds models inside under `policy`, then restores the previous global policy.

    The models built (or loaded) inside keep the policy in their layers, so
    training them afterwards computes in it; code that runs after the block
    (the caller's own models) sees the global policy it had before.

    Args:
        policy: str. As for `set_precision`.

    Yields:
        The policy set (what `"auto"` resolved to).
    """
    previous = keras.mixed_precision.global_policy()
    try:
        yield set_precision(policy)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process should write checkpoints, exports and summaries.

    True outside multi-worker training; under `MultiWorkerMirroredStrategy`,
    true only on the chief (worker 0 when the cluster has no `chief` task).
    """
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )


def write_path(path: str, strategy: tf.distribute.Strategy | None = None) -> str:
    """The path this worker writes `path` to: `path` itself on the chief.

    Every worker must run the same saving code (saving can involve
    collectives), so non-chief workers write into a private temporary
    directory next to `path`, which they delete with `remove_temporary`.
    This is the pattern of the TensorFlow multi-worker guide.

    Args:
        path: str. The real destination (file or directory).
        strategy: The strategy; defaults to the current one.

    Returns:
        `path` on the chief, `<dirname>/workertemp_<task_id>/<basename>` elsewhere.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if is_chief(strategy):
        return path
    task_id = strategy.cluster_resolver.task_id
    directory, base = os.path.split(os.path.normpath(path))
    return os.path.join(directory, f"workertemp_{task_id}", base)


def remove_temporary(path: str, strategy: tf.distribute.Strategy | None = None) -> None:
    """Deletes what a non-chief worker wrote for `path` (no-op on the chief)."""
    strategy = strategy or tf.distribute.get_strategy()
    if not is_chief(strategy):
        shutil.rmtree(os.path.dirname(write_path(path, strategy)), ignore_errors=True)


class WorkerBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` for any strategy, multi-worker included.

    Keras 3's callback knows nothing of workers: every worker would write the
    same files. Here every worker *restores* from the chief's backup in
    `backup_dir` (so all workers resume from one state and the same epoch,
    even if a worker died between the chief's save and its own), and *saves*
    to `write_path(backup_dir)`: the chief to `backup_dir`, the others to a
    private temporary directory. Across machines, `backup_dir` must be on a
    file system every worker can read (the usual requirement for resuming).

    The backup is the run's commit point: with `commit_last=True` its
    epoch-end save is left to `commit(epoch)`, which the train commands call
    from a callback placed after every other one (`trainers.run_layout.fit_run`),
    so a run killed while an epoch's checkpoints, history row or time are
    being written resumes at that epoch and writes them again, rather than
    skipping it. Its files are written under temporary names and renamed, so
    a kill mid-write leaves the previous backup, which `fit` can still read.

    The backup also holds the model's random state (the `SeedGenerator`s of
    the VAE's posterior noise, the dVAE's Gumbel noise, the VQ-VAE's code
    restarts and dropout), which Keras's weights files leave out: a resumed
    run draws the noise an uninterrupted run would, instead of replaying the
    noise of its first steps.

    Args:
        backup_dir: str. Directory of the chief's backup.
        strategy: The training strategy; defaults to the current one.
        commit_last: bool. Save only when `commit` is called. Defaults to `False`.
        **kwargs: `save_freq`, `double_checkpoint`, `delete_checkpoint` of
            `keras.callbacks.BackupAndRestore`.
    """

    def __init__(self, backup_dir: str, strategy: tf.distribute.Strategy | None = None,
                 commit_last: bool = False, **kwargs):
        strategy = strategy or tf.distribute.get_strategy()
        self._strategy = strategy
        self._read_dir = backup_dir
        self._write_dir = write_path(backup_dir, strategy)
        self.commit_last = commit_last
        super().__init__(backup_dir, **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        if not self.commit_last:
            super().on_epoch_end(epoch, logs)

    def commit(self, epoch, logs=None):
        """Saves the backup of the finished `epoch` (the `commit_last` save)."""
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        # Keras's own save writes both files in place: a kill mid-write left a truncated
        # latest.weights.h5 that stopped every later resume with an HDF5 error.
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._weights_path):
            shutil.copy(self._weights_path, self._prev_weights_path)
        if self.double_checkpoint and os.path.exists(self._training_metadata_path):
            shutil.copy(self._training_metadata_path, self._prev_training_metadata_path)
        with atomic_path(self._weights_path) as tmp:
            self.model.save_weights(filepath=str(tmp), overwrite=True)
        write_text(self._training_metadata_path, json.dumps({
            "epoch": self._current_epoch, "batch": self._last_batch_seen,
            "seed_states": [np.asarray(v).tolist() for v in seed_states(self.model)],
        }))

    def _use(self, directory: str) -> None:
        self.backup_dir = directory
        self._weights_path = os.path.join(directory, "latest.weights.h5")
        self._training_metadata_path = os.path.join(directory, "training_metadata.json")
        self._prev_weights_path = f"{self._weights_path}.bkp"
        self._prev_training_metadata_path = f"{self._training_metadata_path}.bkp"

    def on_train_begin(self, logs=None):
        self._use(self._read_dir)
        super().on_train_begin(logs)
        # Read after Keras's restore: its fallback to the `.bkp` copies may have replaced
        # the metadata.
        try:
            with open(self._training_metadata_path) as f:
                metadata = json.load(f)
        except FileNotFoundError:
            metadata = None
        self._check_workers_agree(-1 if metadata is None else metadata["epoch"])
        if metadata is not None:
            self._restore_seed_states(metadata.get("seed_states"))
        self._use(self._write_dir)

    def _check_workers_agree(self, restored_epoch: int) -> None:
        """Refuses to train when the workers restored different backups.

        Every worker reads `backup_dir` itself; a path that is not shared (a
        local disk on each machine, another `--model_dir` per worker) lets one
        worker resume and another start afresh, each with its own weights:
        the job would train replicas that disagree, silently.
        """
        strategy = self._strategy
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return
        epochs = strategy.gather(
            strategy.run(lambda: tf.constant([restored_epoch], tf.int64)), axis=0
        ).numpy().tolist()
        if len(set(epochs)) > 1:
            found = ", ".join(f"replica {i}: " + ("no backup" if e < 0 else f"{e} epochs done")
                              for i, e in enumerate(epochs))
            raise BackupError(
                f"The workers read different backups from {self._read_dir} ({found}): it is "
                "not the same folder on every machine. Give every worker the same "
                "`--model_dir` on a file system they all read (NFS, GCS), or resume with the "
                f"backup copied to each. Received: restored epochs {epochs}."
            )

    def _restore_seed_states(self, saved: list | None) -> None:
        # A backup of an older version has no seed states: nothing to restore.
        if saved is None:
            return
        variables = seed_states(self.model)
        if len(saved) != len(variables):
            raise BackupError(
                f"The backup in {self.backup_dir} holds {len(saved)} random seed states; "
                f"this model has {len(variables)}. It is another model's backup: resume "
                f"with the same config, or use a new folder. Received: {len(saved)} states."
            )
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(np.asarray(value, variable.dtype))


def seed_states(model: keras.Model) -> list:
    """The state variables of `model`'s `keras.random.SeedGenerator`s, in a fixed order.

    `model.variables` is `model.weights` plus these (Keras 3); weights files
    (`save_weights`, and so `BackupAndRestore`) store only the weights.
    """
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables
            if id(v) not in weights and v.path.endswith("seed_generator_state")]
