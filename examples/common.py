"""Shared bits of the example trainings: arguments, the dataset, the progress helper."""

import argparse
import csv
import os
import sys


def helper():
    """`import trainer_agent`: on PYTHONPATH under trainer-agent local, else from this checkout's python/ folder."""
    try:
        import trainer_agent
    except ImportError:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
        import trainer_agent
    return trainer_agent


def arguments(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=int(os.environ.get("EPOCHS", "5")))
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--fail-at-epoch", type=int, default=0, help="raise an error at this epoch (to see a failed job)")
    p.add_argument("--epoch-seconds", type=float, default=0.0, help="extra time per epoch, to watch the dashboard")
    return p.parse_args()


def load_points(rank, world_size):
    """This rank's shard of DATASET_DIR/regression.csv, as (x, y) floats."""
    dataset_dir = os.environ.get("DATASET_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    path = os.path.join(dataset_dir, "regression.csv")
    if not os.path.exists(path):
        raise FileNotFoundError("dataset file %s not found (is DATASET_DIR right?)" % path)
    with open(path, newline="") as f:
        rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(f)]
    return rows[rank::world_size]


def latest_checkpoint(resume_from, suffix):
    """RESUME_FROM is a file or a folder of checkpoints; the newest `epoch-N<suffix>` in it, or None."""
    if not resume_from or not os.path.exists(resume_from):
        return None
    if os.path.isfile(resume_from):
        return resume_from
    found = []
    for root, _dirs, files in os.walk(resume_from):
        for name in files:
            if name.startswith("epoch-") and name.endswith(suffix):
                try:
                    found.append((int(name[len("epoch-") : -len(suffix)]), os.path.join(root, name)))
                except ValueError:
                    pass
    return max(found)[1] if found else None
