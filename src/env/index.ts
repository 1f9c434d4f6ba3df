export * from "./nproc.ts";
export * from "./probe.ts";
export * from "./tensorflow.ts";
export * from "./torch.ts";
