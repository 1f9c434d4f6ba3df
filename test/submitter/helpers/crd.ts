/**
 * Validates objects against the Kubeflow Trainer v2.3 CRDs' OpenAPI schemas (the schema-only copies in
 * test/fixtures/kubeflow-trainer, see its README). Strict like `kubectl apply --validate=strict`: an unknown field is an
 * error, not silently pruned, so a leftover `podTemplateOverrides` fails. CEL rules (x-kubernetes-validations)
 * cannot run here; the TrainJob name rules are checked by hand.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { Ajv, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import YAML from "yaml";

export const repoRoot = path.resolve(import.meta.dirname, "../../..");
export const trainerFixtures = path.join(repoRoot, "test/fixtures/kubeflow-trainer");
export const crdDir = path.join(trainerFixtures, "crds");

type Schema = Record<string, unknown>;

function strict(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(strict);
  if (schema === null || typeof schema !== "object") return schema;
  const s = { ...(schema as Schema) };
  for (const key of ["properties", "patternProperties"]) {
    if (s[key] && typeof s[key] === "object") {
      s[key] = Object.fromEntries(Object.entries(s[key] as Schema).map(([k, v]) => [k, strict(v)]));
    }
  }
  for (const key of ["items", "additionalProperties", "not"])
    if (s[key] && typeof s[key] === "object") s[key] = strict(s[key]);
  for (const key of ["allOf", "anyOf", "oneOf"]) if (Array.isArray(s[key])) s[key] = (s[key] as unknown[]).map(strict);
  if (s["x-kubernetes-int-or-string"] === true && s.type === undefined && s.anyOf === undefined) {
    s.anyOf = [{ type: "integer" }, { type: "string" }];
  }
  if (
    s.properties !== undefined &&
    s.additionalProperties === undefined &&
    s["x-kubernetes-preserve-unknown-fields"] !== true
  ) {
    s.additionalProperties = false;
  }
  return s;
}

export interface CrdValidator {
  readonly kind: string;
  validate(doc: unknown): string[];
}

/** Loads one CRD file (a few hundred kB: call once per test file) and compiles its v1alpha1 schema. */
export function loadCrd(file: string): CrdValidator {
  const crd = YAML.parse(readFileSync(path.join(crdDir, file), "utf8")) as {
    spec: { names: { kind: string }; versions: Array<{ name: string; schema: { openAPIV3Schema: Schema } }> };
  };
  const version = crd.spec.versions.find((v) => v.name === "v1alpha1");
  if (version === undefined) throw new Error(`${file}: no v1alpha1 version`);
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: true });
  addFormats.default(ajv);
  for (const f of ["int32", "int64", "double", "float", "byte"]) ajv.addFormat(f, true);
  const fn: ValidateFunction = ajv.compile(strict(version.schema.openAPIV3Schema) as Schema);
  const kind = crd.spec.names.kind;
  return {
    kind,
    validate(doc) {
      const errors: string[] = [];
      if (!fn(doc))
        for (const e of fn.errors ?? [])
          errors.push(
            `${e.instancePath || "/"} ${e.message}${e.params && "additionalProperty" in e.params ? `: ${String(e.params.additionalProperty)}` : ""}`,
          );
      const d = doc as { apiVersion?: string; kind?: string; metadata?: { name?: string } };
      if (d.apiVersion !== "trainer.kubeflow.org/v1alpha1") errors.push(`apiVersion is ${String(d.apiVersion)}`);
      if (d.kind !== kind) errors.push(`kind is ${String(d.kind)}, expected ${kind}`);
      const name = d.metadata?.name ?? "";
      // The CRDs' CEL rules on metadata.name (TrainJob) and the apiserver's DNS-1123 subdomain rule (runtimes).
      if (kind === "TrainJob" && (!/^[a-z]([-a-z0-9]*[a-z0-9])?$/.test(name) || name.length > 63))
        errors.push(`metadata.name ${name} breaks the CEL name rules`);
      if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name))
        errors.push(`metadata.name ${name} is not a DNS-1123 subdomain`);
      return errors;
    },
  };
}
