/**
 * Built-in `python`: the command runs once per pod, unchanged, with RANK/WORLD_SIZE/LOCAL_RANK/... of local
 * rank 0. With nproc_per_node > 1 the program starts the node's other workers itself (or use `pytorch`).
 */
import { definePlugin } from "../define.ts";
import type { TrainerPlugin } from "../types.ts";
import { plainPythonEnv, resolveNprocPerNode, systemProbe, torchWorld } from "../../env/index.ts";
import type { BuiltinOptions } from "./pytorch.ts";

export function pythonPlugin(options: BuiltinOptions = {}): TrainerPlugin {
  const probe = options.probe ?? systemProbe();
  return definePlugin({
    name: "python",
    description: "Plain process per pod with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ... set",
    env(ctx) {
      const d = ctx.config.distributed;
      const host =
        typeof d.nprocPerNode === "number"
          ? { gpus: 0, cpus: 1 }
          : probe.resources({ ...ctx.config.baseEnv, ...ctx.env });
      return plainPythonEnv(torchWorld(d, resolveNprocPerNode(d.nprocPerNode, host)));
    },
  });
}
