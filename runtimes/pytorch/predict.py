"""Example PyTorch batch prediction for the `pytorch-simple` runtime (Astrago Trainer): the predict job of train.py.

Runs under `trainer-agent run --mode predict`, which restores the model (MODEL_JOB_ID: a finished training job's
newest checkpoint, or MODEL_URI) into MODEL_PATH, pulls the dataset (if any) into DATASET_DIR, and uploads what this
script writes to PREDICTIONS_DIR under predictions/job-{JOB_ID}/ once it exits 0.

Inputs: DATASET_DIR/inputs.csv (20 numeric columns, no header) when the job has a dataset, else SAMPLES fresh
samples of train.py's synthetic task (SEED + 1), whose true class is known, so the accuracy is reported too.
Writes predictions.csv: row, class, confidence (and label for the synthetic inputs). Settings: SAMPLES (2048),
SEED (0), BATCH_SIZE (256).
"""

import csv
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

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


class Net(nn.Module):
    # The same network as train.py: the checkpoint's state_dict must fit it.
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 64)
        self.fc2 = nn.Linear(64, 4)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def model_file(path):
    """MODEL_PATH is a checkpoint file, or a folder holding epoch-N.pt files (the newest is used)."""
    if os.path.isfile(path):
        return path
    found = [n for n in os.listdir(path) if n.startswith("epoch-") and n.endswith(".pt")] if os.path.isdir(path) else []
    if not found:
        sys.exit("MODEL_PATH %r is not a checkpoint file nor a folder with epoch-N.pt files" % path)
    return os.path.join(path, max(found, key=lambda n: int(n[len("epoch-") : -len(".pt")])))


def inputs():
    """(x, labels or None, source)."""
    dataset = os.environ.get("DATASET_DIR", "").strip()
    given = os.path.join(dataset, "inputs.csv") if dataset else ""
    if given and os.path.isfile(given):
        with open(given, newline="") as f:
            rows = [[float(v) for v in row] for row in csv.reader(f) if row]
        return torch.tensor(rows), None, given
    # train.py's task: the same hidden weights (drawn after SAMPLES inputs from SEED), new inputs from SEED + 1.
    g = torch.Generator().manual_seed(SEED)
    torch.randn(SAMPLES, 20, generator=g)
    w = torch.randn(20, 4, generator=g)
    x = torch.randn(SAMPLES, 20, generator=torch.Generator().manual_seed(SEED + 1))
    return x, (x @ w).argmax(dim=1), "synthetic samples (SEED + 1)"


def main():
    model_path = os.environ.get("MODEL_PATH", "").strip()
    if not model_path:
        sys.exit("MODEL_PATH is not set: run under `trainer-agent run --mode predict` (it restores the model)")
    found = model_file(model_path)
    state = torch.load(found, map_location="cpu")
    model = Net()
    model.load_state_dict(state["model"])
    model.eval()
    x, labels, source = inputs()
    print("predicting %d rows of %s with %s (epoch %s)" % (len(x), source, found, state.get("epoch")), flush=True)

    out_dir = os.environ.get("PREDICTIONS_DIR", "/workspace/predictions")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "predictions.csv")
    batches = (len(x) + BATCH_SIZE - 1) // BATCH_SIZE
    correct = 0
    with open(out + ".tmp", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["row", "class", "confidence"] + ([] if labels is None else ["label"]))
        with torch.no_grad():
            for b in range(batches):
                lo = b * BATCH_SIZE
                probs = F.softmax(model(x[lo : lo + BATCH_SIZE]), dim=1)
                confidence, predicted = probs.max(dim=1)
                for i in range(len(predicted)):
                    row = [lo + i, int(predicted[i]), "%.4f" % float(confidence[i])]
                    if labels is not None:
                        row.append(int(labels[lo + i]))
                        correct += int(predicted[i] == labels[lo + i])
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
