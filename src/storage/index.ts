export { createStorage, type ClosableStorage, type StorageDeps } from "./create.ts";
export type { StorageTuning } from "./internal/context.ts";
export type { CheckpointManifest, ManifestFile } from "./checkpoint/layout.ts";
export type { DatasetMarker } from "./dataset/pull.ts";
export type * from "./types.ts";
