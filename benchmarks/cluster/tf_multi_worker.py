"""Does Keras 3 train with TensorFlow's ``MultiWorkerMirroredStrategy``? Two workers on localhost.

The pattern of TensorFlow's multi-worker Keras tutorial, shrunk: each worker sets ``TF_CONFIG``,
builds and compiles a small model in the strategy's scope and calls ``fit`` on a ``tf.data``
dataset. Run both workers at once::

    KERAS_BACKEND=tensorflow python benchmarks/cluster/tf_multi_worker.py 0 &
    KERAS_BACKEND=tensorflow python benchmarks/cluster/tf_multi_worker.py 1

With Keras 3.15.1 and TensorFlow 2.21.0 (2-core CPU machine, 2026-12-03) both workers fail in
``fit`` with ``ValueError: Attempt to convert a value (PerReplica:{…}) with an unsupported type
(<class 'tensorflow.python.distribute.values.PerReplica'>) to a Tensor.``; the open Keras issue
https://github.com/keras-team/keras/issues/20585 reports that the tutorial fails with Keras 3. This
is why the trainer trains several processes on JAX only (:mod:`dlnotes.training.multihost`).
"""

from __future__ import annotations

import json
import os
import sys

PORTS = (23461, 23462)


def main(index: int) -> None:
    """Run worker ``index`` (0 or 1) of the two-worker cluster on localhost."""
    cluster = {"worker": [f"localhost:{port}" for port in PORTS]}
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}
    )
    import keras
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    features = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    labels = (features[:, 0] > 0).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(64).repeat()
    with strategy.scope():
        model = keras.Sequential(
            [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)]
        )
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(dataset, epochs=2, steps_per_epoch=4, verbose=2)
    print(f"worker {index}: trained, losses {history.history['loss']}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
