"""A training with no framework at all: linear regression by gradient descent, standard library only.

Each node fits y = w*x + b on its shard of the dataset (no gradient exchange: this example shows the agent's
plumbing, not distributed math; see ddp_train.py for real DDP). Rank 0 writes a JSON checkpoint per epoch and every
rank reports through the trainer_agent helper.

    trainer-agent local --nodes 2 --dataset examples/data -- python3 examples/plain_train.py --epochs 5
"""

import json
import os
import time

from common import arguments, helper, latest_checkpoint, load_points

ta = helper()
args = arguments("plain-python linear regression")
rank = int(os.environ.get("RANK", "0"))
world = int(os.environ.get("WORLD_SIZE", "1"))
points = load_points(rank, world)
print("rank %d/%d: %d points from %s" % (rank, world, len(points), os.environ.get("DATASET_DIR", "examples/data")), flush=True)

w, b, start = 0.0, 0.0, 1
resume = latest_checkpoint(os.environ.get("RESUME_FROM"), ".json")
if resume:
    with open(resume) as f:
        state = json.load(f)
    w, b, start = state["w"], state["b"], state["epoch"] + 1
    print("rank %d: resumed from %s (epoch %d)" % (rank, resume, state["epoch"]), flush=True)

checkpoint_dir = os.environ.get("CHECKPOINT_DIR", "checkpoints")
for epoch in range(start, args.epochs + 1):
    if epoch == args.fail_at_epoch:
        raise RuntimeError("loss diverged at epoch %d (--fail-at-epoch)" % epoch)
    n = len(points)
    for _ in range(20):
        gw = sum(2 * (w * x + b - y) * x for x, y in points) / n
        gb = sum(2 * (w * x + b - y) for x, y in points) / n
        w, b = w - args.lr * gw, b - args.lr * gb
    loss = sum((w * x + b - y) ** 2 for x, y in points) / n
    time.sleep(args.epoch_seconds)
    print("rank %d epoch %d/%d loss %.5f w %.3f b %.3f" % (rank, epoch, args.epochs, loss, w, b), flush=True)
    ta.report(epoch=epoch, total_epochs=args.epochs, loss=loss, w=w, b=b)
    if rank == 0:
        os.makedirs(checkpoint_dir, exist_ok=True)
        path = os.path.join(checkpoint_dir, "epoch-%d.json" % epoch)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"epoch": epoch, "w": w, "b": b, "loss": loss}, f)
        os.replace(tmp, path)  # complete before it is reported
        ta.checkpoint(path)
print("rank %d: done, w=%.3f b=%.3f (true 3, 2)" % (rank, w, b), flush=True)
