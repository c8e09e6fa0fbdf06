"""Small helpers for code that runs inside a `tf.distribute` replica context.

Every model computes its losses and batch statistics over the *global* batch:
per-example values are summed locally and divided by the global batch size,
and histograms (code usage) are summed over all replicas. Outside a strategy
(or with one replica) the helpers are the identity.
"""

import tensorflow as tf


def _replica_context():
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def is_replica_shard() -> bool:
    """True inside the replica context of a strategy with several replicas.

    There a batch is this replica's shard of the global batch, and a shard
    may be empty (a last global batch smaller than the number of replicas).
    """
    return _replica_context() is not None


def on_shard(fn, batch: tf.Tensor):
    """`fn(batch)`, also for an empty replica shard.

    Under a strategy with several replicas a replica's shard of the last
    global batch may be empty, and some TensorFlow kernels fail on an empty
    batch (the oneDNN convolution: "input depth must be evenly divisible by
    filter depth"; TFP's relaxed one-hot sampler: an integer division by zero).
    An empty shard runs `fn` on one zero example, sliced off again; a full
    shard (and any batch outside such a replica context) is unchanged. `fn`
    must treat examples independently and return tensors (any nest of them)
    with the batch first.
    """
    if not is_replica_shard():
        return fn(batch)
    size = tf.shape(batch)[0]
    empty = tf.cast(tf.equal(size, 0), tf.int32)
    padding = tf.zeros(tf.concat([[empty], tf.shape(batch)[1:]], 0), batch.dtype)
    outputs = fn(tf.concat([batch, padding], 0))
    return tf.nest.map_structure(lambda output: output[:size], outputs)


def global_sum(value: tf.Tensor) -> tf.Tensor:
    """Sums `value` over all replicas (all-reduce); identity on one replica."""
    context = _replica_context()
    return value if context is None else context.all_reduce("SUM", value)


def global_concat(value: tf.Tensor) -> tf.Tensor:
    """Concatenates `value` along axis 0 over all replicas, in replica order."""
    context = _replica_context()
    return value if context is None else context.all_gather(value, axis=0)


def replica_id() -> tf.Tensor:
    """The global index of this replica (0 outside a strategy), as int32."""
    context = tf.distribute.get_replica_context()
    if context is None:
        return tf.constant(0, tf.int32)
    return tf.cast(context.replica_id_in_sync_group, tf.int32)


def mean_over_global_batch(per_example: tf.Tensor) -> tf.Tensor:
    """This replica's share of the global-batch mean of `per_example`.

    Returns `sum(local values) / global batch size`. Summed over replicas (as
    the optimizer does with gradients) this is exactly the mean over the
    global batch, also when replicas hold batches of different sizes.
    """
    per_example = tf.cast(per_example, tf.float32)
    local_count = tf.cast(tf.shape(per_example)[0], tf.float32)
    global_count = global_sum(local_count)
    return tf.reduce_sum(per_example) / tf.maximum(global_count, 1.0)


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True for a `MultiWorkerMirroredStrategy` that spans several workers."""
    return isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ) and strategy.extended._in_multi_worker_mode()  # noqa: SLF001


def replica_seed(seed_generator) -> tf.Tensor:
    """A fresh stateless seed (int32, shape (2,)) that differs per replica.

    Draws the next seed from a `keras.random.SeedGenerator` (whose state is
    the same on every replica) and, on replicas other than the first, folds
    in the replica id, so each replica draws different noise and no stateful
    random op runs in a replica context. Replica 0 (and a single device) uses
    the generator's seed as it is.

    The generator's seeds are `[seed, step]`: adding the replica id to the
    step instead would give replica r at step n replica 0's seed of step
    n + r, the same noise drawn twice.
    """
    seed = tf.cast(seed_generator.next(), tf.int32)
    replica = replica_id()
    return tf.where(replica == 0, seed, tf.random.experimental.stateless_fold_in(seed, replica))
