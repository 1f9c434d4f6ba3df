"""Example TensorFlow batch prediction for the `tensorflow-distributed` runtime: the predict job of train.py.

Runs under `trainer-agent run --mode predict`, which restores the model (MODEL_JOB_ID: a finished training job's
newest checkpoint folder epoch-N, or MODEL_URI) into MODEL_PATH, pulls the dataset (if any) into DATASET_DIR, and
uploads what this script writes to PREDICTIONS_DIR under predictions/job-{JOB_ID}/ once it exits 0.

Inputs: DATASET_DIR/inputs.csv (20 numeric columns, no header) when the job has a dataset, else SAMPLES fresh
samples of train.py's synthetic task (SEED + 1), whose true class is known, so the accuracy is reported too.
Writes predictions.csv: row, class, confidence (and label for the synthetic inputs). Settings: SAMPLES (2048),
SEED (0), BATCH_SIZE (256).
"""

import csv
import json
import os
import sys

try:
    import trainer_agent
except ImportError:  # helper not on the path: write the protocol lines ourselves, one write per line

    class trainer_agent:  # noqa: N801 - stands in for the module
        @staticmethod
        def report(epoch, total_epochs=None, step=None, **metrics):
            payload = {"epoch": epoch, "total_epochs": total_epochs, "metrics": metrics}
            if step is not None:
                payload["step"] = step
            os.write(1, ("::trainer::" + json.dumps(payload, separators=(",", ":")) + "\n").encode())


def env_int(name, default):
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        sys.exit("%s must be an integer, got %r" % (name, value))


SAMPLES = env_int("SAMPLES", 2048)
SEED = env_int("SEED", 0)
BATCH_SIZE = env_int("BATCH_SIZE", 256)


def main():
    import numpy as np
    import tensorflow as tf

    model_path = os.environ.get("MODEL_PATH", "").strip()
    if not model_path:
        sys.exit("MODEL_PATH is not set: run under `trainer-agent run --mode predict` (it restores the model)")
    # The same network as train.py: the checkpoint's weights must fit it.
    model = tf.keras.Sequential(
        [tf.keras.layers.Input(shape=(20,)), tf.keras.layers.Dense(64, activation="relu"), tf.keras.layers.Dense(4)]
    )
    model.load_weights(os.path.join(model_path, "weights") if os.path.isdir(model_path) else model_path)

    dataset = os.environ.get("DATASET_DIR", "").strip()
    given = os.path.join(dataset, "inputs.csv") if dataset else ""
    if given and os.path.isfile(given):
        x, labels, source = np.loadtxt(given, delimiter=",", ndmin=2).astype("float32"), None, given
    else:
        # train.py's task: the same hidden weights (drawn after SAMPLES inputs from SEED), new inputs from SEED + 1.
        rng = np.random.default_rng(SEED)
        rng.standard_normal((SAMPLES, 20))
        w = rng.standard_normal((20, 4))
        x = np.random.default_rng(SEED + 1).standard_normal((SAMPLES, 20)).astype("float32")
        labels, source = (x @ w).argmax(axis=1), "synthetic samples (SEED + 1)"
    print("predicting %d rows of %s with %s" % (len(x), source, model_path), flush=True)

    out_dir = os.environ.get("PREDICTIONS_DIR", "/workspace/predictions")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "predictions.csv")
    batches = (len(x) + BATCH_SIZE - 1) // BATCH_SIZE
    correct = 0
    with open(out + ".tmp", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["row", "class", "confidence"] + ([] if labels is None else ["label"]))
        for b in range(batches):
            lo = b * BATCH_SIZE
            probs = tf.nn.softmax(model(x[lo : lo + BATCH_SIZE], training=False)).numpy()
            for i, p in enumerate(probs):
                row = [lo + i, int(p.argmax()), "%.4f" % float(p.max())]
                if labels is not None:
                    row.append(int(labels[lo + i]))
                    correct += int(p.argmax() == labels[lo + i])
                writer.writerow(row)
            trainer_agent.report(epoch=1, total_epochs=1, step=b + 1, rows=min(lo + BATCH_SIZE, len(x)))
    os.replace(out + ".tmp", out)  # the agent uploads what is in PREDICTIONS_DIR: only whole files
    metrics = {"rows": len(x)}
    if labels is not None:
        metrics["accuracy"] = round(correct / max(1, len(x)), 4)
    trainer_agent.report(epoch=1, total_epochs=1, step=batches, **metrics)
    print("wrote %s: %s" % (out, ", ".join("%s %s" % kv for kv in sorted(metrics.items()))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
