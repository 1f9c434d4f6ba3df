/** What `render` prints: the objects in apply order, as kubectl prints them, Secret values hidden by default. */
import type { K8sObject, RenderedJob } from "../../submitter/render.ts";
import type { TrainJobStatus } from "../../submitter/status.ts";

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

/** A duration as kubectl prints ages: 45s, 12m, 3h20m, 5d. */
export function shortDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 120) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 36_000)
    return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60) > 0 ? `${Math.floor((s % 3600) / 60)}m` : ""}`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** Columns in kubectl's style: upper-case headers, left-aligned, three spaces apart. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("   ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

/** `trainjob list` / `get`: state, pods, the Trainer's progress, ETA and latest metrics (status.trainerStatus). */
export function statusTable(statuses: readonly TrainJobStatus[], now: Date, withNamespace: boolean): string {
  const rows = statuses.map((st) => {
    const p = st.progress;
    const age = st.created_at === undefined ? "" : shortDuration((now.getTime() - Date.parse(st.created_at)) / 1000);
    return [
      ...(withNamespace ? [st.namespace] : []),
      st.trainjob_name,
      st.state,
      `${st.pods.ready}/${st.pods.active}`,
      p?.percentage === undefined ? "-" : `${p.percentage}%`,
      p?.eta_seconds === undefined ? "-" : shortDuration(p.eta_seconds),
      p === undefined || p.metrics.length === 0 ? "-" : p.metrics.map((m) => `${m.name}=${m.value}`).join(","),
      age,
    ];
  });
  return table(
    [...(withNamespace ? ["NAMESPACE"] : []), "NAME", "STATE", "READY", "PROGRESS", "ETA", "METRICS", "AGE"],
    rows,
  );
}
