"""Real PyTorch DistributedDataParallel on CPU (gloo): linear regression, one process per rank.

Works as launched by `trainer-agent run` (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment, one
process per node) and through torchrun (--nproc-per-node > 1). Gradients are all-reduced across every rank of every
node; rank 0 saves `epoch-N.pt` in CHECKPOINT_DIR and reports it; every epoch's loss is averaged over all ranks.

    trainer-agent local --nodes 2 --framework pytorch --dataset examples/data -- python3 examples/ddp_train.py
"""

import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from common import arguments, helper, latest_checkpoint, load_points

ta = helper()
args = arguments("PyTorch DDP linear regression (gloo)")
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
points = load_points(rank, world)
x = torch.tensor([[p[0]] for p in points])
y = torch.tensor([[p[1]] for p in points])
print("rank %d/%d: %d points, gloo process group up" % (rank, world, len(points)), flush=True)

torch.manual_seed(0)
model = DDP(torch.nn.Linear(1, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
start = 1
resume = latest_checkpoint(os.environ.get("RESUME_FROM"), ".pt")
if resume:
    state = torch.load(resume)
    model.module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    start = state["epoch"] + 1
    print("rank %d: resumed from %s (epoch %d)" % (rank, resume, state["epoch"]), flush=True)

checkpoint_dir = os.environ.get("CHECKPOINT_DIR", "checkpoints")
for epoch in range(start, args.epochs + 1):
    if epoch == args.fail_at_epoch:
        raise RuntimeError("loss diverged at epoch %d (--fail-at-epoch)" % epoch)
    for _ in range(20):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()  # DDP all-reduces the gradients here
        optimizer.step()
    with torch.no_grad():
        mean_loss = torch.nn.functional.mse_loss(model(x), y)
    dist.all_reduce(mean_loss)
    mean_loss = mean_loss.item() / world
    time.sleep(args.epoch_seconds)
    w, b = model.module.weight.item(), model.module.bias.item()
    if rank == 0:
        print("epoch %d/%d loss %.5f w %.3f b %.3f" % (epoch, args.epochs, mean_loss, w, b), flush=True)
        ta.report(epoch=epoch, total_epochs=args.epochs, loss=mean_loss, w=w, b=b)
        os.makedirs(checkpoint_dir, exist_ok=True)
        path = os.path.join(checkpoint_dir, "epoch-%d.pt" % epoch)
        torch.save({"epoch": epoch, "model": model.module.state_dict(), "optimizer": optimizer.state_dict()}, path + ".tmp")
        os.replace(path + ".tmp", path)  # complete before it is reported
        ta.checkpoint(path)
    dist.barrier()
dist.destroy_process_group()
print("rank %d: done" % rank, flush=True)
