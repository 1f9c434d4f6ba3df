/** What `render` prints: the objects in apply order, as kubectl prints them, Secret values hidden by default. */
import type { K8sObject, RenderedJob } from "../render.ts";

function redactSecret(secret: K8sObject): K8sObject {
  const data = (secret.stringData ?? {}) as Record<string, string>;
  return {
    ...secret,
    stringData: Object.fromEntries(Object.keys(data).map((k) => [k, "<redacted: render --show-secrets>"])),
  };
}

/** The objects of a rendered job in apply order: TrainJob first (the others get its uid as owner on submit). */
export function renderedObjects(rendered: RenderedJob, showSecrets: boolean): K8sObject[] {
  const out: K8sObject[] = [rendered.trainJob];
  if (rendered.configMap) out.push(rendered.configMap);
  if (rendered.secret) out.push(showSecrets ? rendered.secret : redactSecret(rendered.secret));
  return out;
}

export async function formatObjects(objects: K8sObject[], format: string): Promise<string> {
  if (format === "json") {
    return (
      JSON.stringify(objects.length === 1 ? objects[0] : { apiVersion: "v1", kind: "List", items: objects }, null, 2) +
      "\n"
    );
  }
  const YAML = await import("yaml");
  return objects.map((o) => YAML.stringify(o, { lineWidth: 0 })).join("---\n");
}
