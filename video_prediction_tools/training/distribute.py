"""``tf.distribute`` helpers of the trainer: the strategy of this process, the chief worker, batch sharing.

One device → default strategy; several GPUs → ``MirroredStrategy``; several SLURM tasks or ``TF_CONFIG`` →
``MultiWorkerMirroredStrategy`` (``SlurmClusterResolver`` under SLURM). The batch size is the GLOBAL batch: every
worker reads the same global numpy batch and each replica takes its equal share.

Example::

    strategy = make_strategy()                 # before any other TensorFlow operation
    is_chief, task_index = worker_identity(strategy)
    images = distribute_batch(strategy, batch["images"])        # [B, T, H, W, C] numpy → per-replica tensors
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf


def make_strategy():
    """The ``tf.distribute`` strategy for this process (must run before any other TensorFlow operation)."""
    slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    if "TF_CONFIG" in os.environ:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if slurm_tasks > 1 and "SLURM_PROCID" in os.environ:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def worker_identity(strategy) -> tuple[bool, int]:
    """``(is_chief, task_index)``: the chief writes the run directory."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return True, 0
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
    return is_chief, task_id


def distribute_batch(strategy, values):
    """Per-replica tensors of a global numpy batch (an array or a dict of arrays, batch first): replica k of the
    ``num_replicas_in_sync`` (counted over all workers) takes the k-th equal share. Every worker reads the same
    global batch and keeps its replicas' shares, so a step sees what a single process would, whatever the number
    of workers."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return tf.nest.map_structure(tf.convert_to_tensor, values)

    def share(context):
        index = context.replica_id_in_sync_group
        return tf.nest.map_structure(
            lambda array: tf.convert_to_tensor(array[index * len(array) // replicas:(index + 1) * len(array) //
                                                     replicas]), values)

    return strategy.experimental_distribute_values_from_function(share)


def padded_batch(images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """A validation batch padded to the full global batch with zero-weight samples: every replica then gets a
    non-empty share of the same size (the last batch of a split is usually partial), and one trace suffices."""
    missing = batch_size - len(images)
    weights = np.concatenate([np.ones(len(images)), np.zeros(missing)])
    if missing:
        images = np.concatenate([images, np.zeros((missing, *images.shape[1:]), images.dtype)])
    return {"images": images, "weights": weights}
