"""Batch prediction with the model examples/ddp_train.py (epoch-N.pt, real PyTorch) or plain_train.py (epoch-N.json)
trained: y = w*x + b for every row of DATASET_DIR/regression.csv, written to PREDICTIONS_DIR/predictions.csv.

Runs as a predict job: `trainer-agent run --mode predict` restores the model (MODEL_JOB_ID: a finished job's latest
checkpoint, or MODEL_URI) into MODEL_PATH, pulls the dataset into DATASET_DIR, and uploads what this script writes to
PREDICTIONS_DIR under predictions/job-{JOB_ID}/ once it exits 0. Progress and the error on the known labels go to
the agent as reports, like a training's epochs.

    trainer-agent local --predict JOB_ID --dataset examples/data -- python3 examples/predict.py
"""

import csv
import os
import sys

from common import helper, latest_checkpoint

ta = helper()
BATCH = 500


def load_model(path):
    """(w, b) from a checkpoint file, or from the newest epoch-N checkpoint in a restored folder."""
    found = latest_checkpoint(path, ".pt") or latest_checkpoint(path, ".json")
    if found is None:
        sys.exit("MODEL_PATH %r holds no epoch-N.pt or epoch-N.json checkpoint" % path)
    if found.endswith(".json"):
        import json

        with open(found) as f:
            state = json.load(f)
        return found, state["epoch"], lambda xs: [state["w"] * x + state["b"] for x in xs]
    import torch

    torch.set_num_threads(1)
    state = torch.load(found, map_location="cpu")
    model = torch.nn.Linear(1, 1)
    model.load_state_dict(state["model"])
    model.eval()

    def predict(xs):
        with torch.no_grad():
            return model(torch.tensor([[x] for x in xs])).squeeze(1).tolist()

    return found, state["epoch"], predict


model_path = os.environ.get("MODEL_PATH")
if not model_path:
    sys.exit("MODEL_PATH is not set: run under `trainer-agent run --mode predict` (it restores the model)")
found, trained_epochs, predict = load_model(model_path)
dataset_dir = os.environ.get("DATASET_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
with open(os.path.join(dataset_dir, "regression.csv"), newline="") as f:
    rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(f)]
print("predicting %d rows with %s (trained %d epochs)" % (len(rows), found, trained_epochs), flush=True)

out_dir = os.environ.get("PREDICTIONS_DIR", "predictions")
os.makedirs(out_dir, exist_ok=True)
out = os.path.join(out_dir, "predictions.csv")
batches = (len(rows) + BATCH - 1) // BATCH
squared = 0.0
with open(out + ".tmp", "w", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["x", "y", "y_pred"])
    for i in range(batches):
        batch = rows[i * BATCH : (i + 1) * BATCH]
        for (x, y), y_pred in zip(batch, predict([x for x, _ in batch])):
            writer.writerow([x, y, "%.5f" % y_pred])
            squared += (y_pred - y) ** 2
        ta.report(epoch=1, total_epochs=1, step=i + 1, rows=min((i + 1) * BATCH, len(rows)))
os.replace(out + ".tmp", out)  # the agent uploads what is in PREDICTIONS_DIR: only whole files
mse = squared / max(1, len(rows))
ta.report(epoch=1, total_epochs=1, step=batches, rows=len(rows), mse=mse)
print("wrote %s: %d predictions, mse %.5f" % (out, len(rows), mse), flush=True)
