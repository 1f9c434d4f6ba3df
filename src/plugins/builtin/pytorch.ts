/**
 * Built-in `pytorch`: one process per pod with RANK/WORLD_SIZE/... when nproc_per_node is 1; through torchrun
 * (explicit rendezvous flags, PET_* passed through) when nproc_per_node resolves to more than 1.
 */
import { definePlugin } from "../define.ts";
import type { PluginContext, TrainerPlugin } from "../types.ts";
import {
  isTorchrunArgv,
  plainPythonEnv,
  resolveNprocPerNode,
  systemProbe,
  torchrunArgv,
  torchrunEnv,
  torchrunFlags,
  torchrunNprocArg,
  torchWorld,
  type HostProbe,
} from "../../env/index.ts";

export interface BuiltinOptions {
  /** Machine facts (GPU/CPU counts, PATH lookups); the real system by default. */
  probe?: HostProbe;
}

interface Plan {
  /** Processes per node, resolved. */
  nproc: number;
  /** What torchrun gets for --nproc_per_node. */
  nprocArg: string;
  viaTorchrun: boolean;
  childEnv: Readonly<Record<string, string>>;
}

export function pytorchPlugin(options: BuiltinOptions = {}): TrainerPlugin {
  const probe = options.probe ?? systemProbe();
  const plan = (ctx: PluginContext): Plan => {
    const childEnv = { ...ctx.config.baseEnv, ...ctx.env };
    const d = ctx.config.distributed;
    const host = typeof d.nprocPerNode === "number" ? { gpus: 0, cpus: 1 } : probe.resources(childEnv);
    const nproc = resolveNprocPerNode(d.nprocPerNode, host);
    // A command that already is torchrun gets PET_* (torchrun reads them and sets the per-worker variables).
    const viaTorchrun = nproc > 1 || (ctx.argv !== undefined && isTorchrunArgv(ctx.argv));
    return { nproc, nprocArg: torchrunNprocArg(d.nprocPerNode, host), viaTorchrun, childEnv };
  };
  return definePlugin({
    name: "pytorch",
    description: "PyTorch: RANK/WORLD_SIZE for one process per pod, torchrun when nproc_per_node > 1",
    env(ctx) {
      const p = plan(ctx);
      const d = ctx.config.distributed;
      return p.viaTorchrun ? torchrunEnv(d, p.nprocArg) : plainPythonEnv(torchWorld(d, p.nproc));
    },
    command(argv, ctx) {
      if (isTorchrunArgv(argv)) return { argv };
      const p = plan(ctx);
      if (!p.viaTorchrun) return { argv };
      const flags = torchrunFlags(ctx.config.distributed, p.nprocArg);
      return {
        argv: torchrunArgv(argv, flags, {
          torchrun: probe.which("torchrun", p.childEnv),
          python: probe.which("python3", p.childEnv) ?? probe.which("python", p.childEnv),
        }),
      };
    },
  });
}
