"""Example PyTorch training for the `pytorch-simple` runtime (Astrago Trainer).

Runs under trainer-agent, which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT from Kubeflow
Trainer's PET_* variables (or launches torchrun when numProcPerNode > 1), restores the latest checkpoint into
RESUME_FROM, and uploads what this script writes to CHECKPOINT_DIR. Progress goes to the agent through
`::trainer::` report lines (the `trainer_agent` helper, or the fallback below when it is not installed).

A small synthetic classification task: seconds on a CPU with the gloo backend (torch 1.13 or newer), a GPU with
NCCL when one is visible. Settings: EPOCHS (3), BATCH_SIZE (64), LEARNING_RATE (0.05), SAMPLES (2048), SEED (0).
"""

import json
import os
import signal
import sys
import time

stop_requested = False


def request_stop(signum, frame):
    # The agent forwards SIGTERM (pod deletion, preemption): finish the epoch, save, and exit.
    global stop_requested
    stop_requested = True


# Installed before the slow torch import, so an early SIGTERM is not lost either.
signal.signal(signal.SIGTERM, request_stop)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

try:
    import trainer_agent
except ImportError:  # helper not on the path: write the protocol lines ourselves, one write per line

    class trainer_agent:  # noqa: N801 - stands in for the module
        @staticmethod
        def _emit(payload):
            if os.environ.get("RANK") not in (None, ""):
                payload["rank"] = int(os.environ["RANK"])
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

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 64)
        self.fc2 = nn.Linear(64, 4)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def synthetic_data(rank, world_size):
    # Every rank builds the same dataset from the seed and trains on its own shard.
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(SAMPLES, 20, generator=g)
    w = torch.randn(20, 4, generator=g)
    y = (x @ w).argmax(dim=1)
    return x[rank::world_size], y[rank::world_size]


def latest_checkpoint():
    """RESUME_FROM (restored by the agent) or the newest epoch-N.pt already in CHECKPOINT_DIR."""
    resume = os.environ.get("RESUME_FROM", "").strip()
    candidates = []
    for folder in [resume if os.path.isdir(resume) else "", CHECKPOINT_DIR]:
        if folder and os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith("epoch-") and name.endswith(".pt"):
                    candidates.append(os.path.join(folder, name))
    if resume and os.path.isfile(resume):
        return resume
    if not candidates:
        return None
    return max(candidates, key=lambda p: int(os.path.basename(p)[len("epoch-") : -len(".pt")]))


def save_checkpoint(model, optimizer, epoch):
    os.makedirs(CHECKPOINT_DIR, exist_ok=True)
    path = os.path.join(CHECKPOINT_DIR, "epoch-%d.pt" % epoch)
    tmp = path + ".tmp"
    state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
    torch.save(state, tmp)
    os.replace(tmp, path)  # the agent never sees a half-written file
    trainer_agent.checkpoint(path)
    return path


def main():
    rank = env_int("RANK", 0)
    world_size = env_int("WORLD_SIZE", 1)
    local_rank = env_int("LOCAL_RANK", 0)
    torch.manual_seed(SEED)

    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda:%d" % local_rank if use_cuda else "cpu")
    if world_size > 1:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    print("rank %d/%d on %s, torch %s" % (rank, world_size, device, torch.__version__), flush=True)

    model = Net().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    start_epoch = 1
    found = latest_checkpoint()
    if found is not None:
        state = torch.load(found, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"]) + 1
        print("resumed from %s (epoch %d)" % (found, state["epoch"]), flush=True)
    if world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)

    x, y = synthetic_data(rank, world_size)
    x, y = x.to(device), y.to(device)
    stopping = False
    for epoch in range(start_epoch, EPOCHS + 1):
        started = time.time()
        model.train()
        total_loss, correct = 0.0, 0
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED + epoch))
        for i in range(0, len(x), BATCH_SIZE):
            idx = order[i : i + BATCH_SIZE]
            optimizer.zero_grad()
            out = model(x[idx])
            loss = F.cross_entropy(out, y[idx])
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
            correct += (out.argmax(dim=1) == y[idx]).sum().item()
        # The stop flag travels with the metrics: every rank stops after the same epoch (one rank leaving
        # early would leave the others waiting in the next all_reduce).
        stats = torch.tensor([total_loss, correct, len(x), float(stop_requested)], dtype=torch.float64, device=device)
        if world_size > 1:
            dist.all_reduce(stats)
        loss_avg, accuracy = (stats[0] / stats[2]).item(), (stats[1] / stats[2]).item()
        stopping = stats[3].item() > 0
        trainer_agent.report(epoch=epoch, total_epochs=EPOCHS, loss=round(loss_avg, 5), accuracy=round(accuracy, 4))
        print("epoch %d/%d loss %.4f accuracy %.4f (%.2fs)" % (epoch, EPOCHS, loss_avg, accuracy, time.time() - started), flush=True)
        if rank == 0:
            net = model.module if world_size > 1 else model
            save_checkpoint(net, optimizer, epoch)
        if stopping:
            print("SIGTERM: checkpoint of epoch %d saved, stopping" % epoch, flush=True)
            break
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 143 if stopping else 0


if __name__ == "__main__":
    sys.exit(main())
