"""Multi-worker training: only the chief writes the records, as Keras' TensorBoard callback arranges.

Every worker runs the same recording step (the records' totals are all-reduced across all replicas of all
workers, so every worker must compute them), but under `tf.distribute.MultiWorkerMirroredStrategy` a worker that
is not the chief writes to a temporary directory `<log_dir>/workertemp_<task id>`, removed at the end of
training (`tf_keras`' `distributed_file_utils.write_dirpath` / `remove_temp_dirpath`, which its TensorBoard and
ModelCheckpoint callbacks use). The chief is the worker whose strategy `should_checkpoint`.
"""

import os

import tensorflow as tf


def is_chief(strategy):
    """True unless `strategy` is a multi-worker strategy and this worker is not its chief."""
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def write_dir(log_dir, strategy):
    """The directory this worker writes its records to: `log_dir` on the chief (and without multi-worker
    training), else a temporary directory inside it."""
    if is_chief(strategy):
        return log_dir
    resolver = getattr(strategy, "cluster_resolver", None)
    task_id = getattr(resolver, "task_id", None)
    return os.path.join(log_dir, f"workertemp_{task_id if task_id is not None else 0}")


def remove_temp_dir(log_dir, written_dir):
    """Removes a non-chief worker's temporary directory (`written_dir` differs from `log_dir`)."""
    if os.fspath(written_dir) != os.fspath(log_dir) and tf.io.gfile.exists(written_dir):
        tf.io.gfile.rmtree(written_dir)
