/** Body validation through the shared zod schemas, as a 400 that names the field at fault. */
import type { z } from "zod";
import { HttpError } from "../../../src/http/index.ts";

export function validateBody<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.slice(0, 5).map((issue) => {
    const field = issue.path.length === 0 ? "(body)" : issue.path.map(String).join(".");
    return { field, message: issue.message };
  });
  const first = issues[0] ?? { field: "(body)", message: "invalid" };
  const more =
    result.error.issues.length > 1
      ? ` (and ${result.error.issues.length - 1} more: ${issues
          .slice(1)
          .map((i) => i.field)
          .join(", ")})`
      : "";
  return fail(
    new HttpError(400, "invalid_body", `invalid ${what} body: ${first.field}: ${first.message}${more}`, {
      field: first.field,
    }),
  );
}

function fail(error: HttpError): never {
  throw error;
}
