"""Example TensorFlow training for the `tensorflow-distributed` runtime (Astrago Trainer).

trainer-agent builds TF_CONFIG from Kubeflow Trainer's PET_* variables (the runtime declares `mlPolicy.torch`),
so `tf.distribute.MultiWorkerMirroredStrategy()` finds every worker with no setup here. The agent restores the
latest checkpoint into RESUME_FROM and uploads what this script writes to CHECKPOINT_DIR; progress goes to it as
`::trainer::` report lines (the `trainer_agent` helper, or the fallback below when it is not installed).

A small synthetic classification task. Settings: EPOCHS (3), BATCH_SIZE (64 per worker), LEARNING_RATE (0.05),
SAMPLES (2048), SEED (0).
"""

import json
import os
import sys

try:
    import trainer_agent
except ImportError:  # helper not on the path: write the protocol lines ourselves, one write per line

    class trainer_agent:  # noqa: N801 - stands in for the module
        @staticmethod
        def _emit(payload):
            os.write(1, ("::trainer::" + json.dumps(payload, separators=(",", ":")) + "\n").encode())

        @staticmethod
        def report(epoch, total_epochs=None, **metrics):
            trainer_agent._emit({"epoch": epoch, "total_epochs": total_epochs, "metrics": metrics})

        @staticmethod
        def checkpoint(path):
            trainer_agent._emit({"checkpoint": os.path.abspath(path)})


def env_int(name, default):
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        sys.exit("%s must be an integer, got %r" % (name, value))


def env_float(name, default):
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        sys.exit("%s must be a number, got %r" % (name, value))


EPOCHS = env_int("EPOCHS", 3)
BATCH_SIZE = env_int("BATCH_SIZE", 64)
LEARNING_RATE = env_float("LEARNING_RATE", 0.05)
SAMPLES = env_int("SAMPLES", 2048)
SEED = env_int("SEED", 0)
CHECKPOINT_DIR = os.environ.get("CHECKPOINT_DIR", "/workspace/checkpoints")


def task():
    """(type, index, worker count) from TF_CONFIG; a single local worker without it."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    workers = config.get("cluster", {}).get("worker", [])
    t = config.get("task", {})
    return t.get("type", "worker"), int(t.get("index", 0)), max(1, len(workers))


def main():
    import numpy as np
    import tensorflow as tf

    task_type, task_index, num_workers = task()
    is_chief = task_type == "chief" or (task_type == "worker" and task_index == 0)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    print("worker %d/%d, TensorFlow %s, replicas %d" % (task_index, num_workers, tf.__version__, strategy.num_replicas_in_sync), flush=True)

    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((SAMPLES, 20)).astype("float32")
    y = (x @ rng.standard_normal((20, 4))).argmax(axis=1).astype("int64")
    global_batch = BATCH_SIZE * num_workers
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(SAMPLES, seed=SEED).batch(global_batch).repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)

    with strategy.scope():
        model = tf.keras.Sequential(
            [tf.keras.layers.Input(shape=(20,)), tf.keras.layers.Dense(64, activation="relu"), tf.keras.layers.Dense(4)]
        )
        model.compile(
            optimizer=tf.keras.optimizers.SGD(learning_rate=LEARNING_RATE),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    # Resume: the agent restored the newest checkpoint (a folder epoch-N) into RESUME_FROM.
    initial_epoch = 0
    resume = os.environ.get("RESUME_FROM", "").strip()
    if resume and os.path.exists(resume):
        weights = os.path.join(resume, "weights") if os.path.isdir(resume) else resume
        model.load_weights(weights)
        name = os.path.basename(resume.rstrip("/"))
        if name.startswith("epoch-") and name[len("epoch-") :].split(".")[0].isdigit():
            initial_epoch = int(name[len("epoch-") :].split(".")[0])
        print("resumed from %s (epoch %d)" % (resume, initial_epoch), flush=True)

    class Report(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            done = epoch + 1
            trainer_agent.report(
                epoch=done, total_epochs=EPOCHS, loss=float(logs.get("loss", 0.0)), accuracy=float(logs.get("accuracy", 0.0))
            )
            # Every worker must take part in saving (collective ops); only the chief's copy is the checkpoint.
            folder = os.path.join(CHECKPOINT_DIR, "epoch-%d" % done)
            target = folder if is_chief else os.path.join(CHECKPOINT_DIR, ".worker-%d-tmp" % task_index)
            self.model.save_weights(os.path.join(target, "weights"))
            if is_chief:
                trainer_agent.checkpoint(folder)

    os.makedirs(CHECKPOINT_DIR, exist_ok=True)
    steps = max(1, SAMPLES // global_batch)
    model.fit(dataset, epochs=EPOCHS, initial_epoch=initial_epoch, steps_per_epoch=steps, callbacks=[Report()], verbose=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
