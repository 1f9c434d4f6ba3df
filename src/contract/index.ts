export * from "./callbacks.ts";
export * from "./job-state.ts";
export * from "./jobs.ts";
export * from "./report.ts";
export * from "./checkpoint-urls.ts";
export * from "./s3-text.ts";
