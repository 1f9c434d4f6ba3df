/** Built-in `tensorflow`: TF_CONFIG for MultiWorkerMirroredStrategy (one worker per pod), argv unchanged. */
import { definePlugin } from "../define.ts";
import type { TrainerPlugin } from "../types.ts";
import { tensorflowEnv } from "../../env/index.ts";
import type { BuiltinOptions } from "./pytorch.ts";

export function tensorflowPlugin(_options: BuiltinOptions = {}): TrainerPlugin {
  return definePlugin({
    name: "tensorflow",
    description: "TensorFlow: TF_CONFIG with one worker per pod, hosts derived from the TrainJob's pod names",
    env(ctx) {
      const d = ctx.config.distributed;
      return tensorflowEnv({
        nnodes: d.nnodes,
        nodeRank: d.nodeRank,
        masterAddr: d.masterAddr,
        masterAddrExplicit: d.explicit.has("PET_MASTER_ADDR"),
        hostname: d.hostname,
        tfPort: d.tfPort,
        tfConfig: d.tfConfig,
      });
    },
  });
}
