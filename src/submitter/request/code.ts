/** The training code: a string (train.py) or files, within what a ConfigMap holds. */
import { CONFIG_KEY } from "../names.ts";
import { describe, isRecord } from "../../internal/values.ts";
import type { Obj, Reader } from "./reader.ts";

/** ConfigMaps hold at most 1 MiB. */
const MAX_CODE_BYTES = 1024 * 1024;
export function readCode(r: Reader, req: Obj): Readonly<Record<string, string>> | undefined {
  const got = r.pick(req, ["training_code", "trainingCode", "code"]);
  if (got === undefined) return undefined;
  let files: Record<string, string>;
  if (typeof got.value === "string") {
    if (got.value.trim() === "") return undefined;
    files = { "train.py": got.value };
  } else if (isRecord(got.value) && Object.values(got.value).every((v) => typeof v === "string")) {
    files = got.value as Record<string, string>;
    for (const key of Object.keys(files)) {
      if (!CONFIG_KEY.test(key) || key.length > 253)
        r.problem(`${got.field}.${key}`, "file name must use only letters, digits, '-', '_' and '.'");
    }
    if (Object.keys(files).length === 0) return undefined;
  } else {
    r.problem(
      got.field,
      `must be the code of train.py as a string, or an object of file name to content, got ${describe(got.value)}`,
    );
    return undefined;
  }
  const bytes = Object.entries(files).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
  if (bytes > MAX_CODE_BYTES) {
    r.problem(
      got.field,
      `is ${bytes} bytes; a ConfigMap holds at most 1 MiB: put larger code in the image or on a volume`,
    );
  }
  return files;
}

/** The script a job without a command runs: predict.py for a predict job, else train.py, else the first file. */
export function defaultScript(files: readonly string[], predict: boolean): string {
  if (predict && files.includes("predict.py")) return "predict.py";
  return files.includes("train.py") ? "train.py" : files[0]!;
}
