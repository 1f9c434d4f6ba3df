/**
 * `/jobs/{id}` with the job already in the HTML: a crawler, `curl`, or a headless screenshot taken at the load
 * event sees the job's name, state and progress, not "Loading…". The dashboard script replaces this markup with
 * the live view once its stream delivers the first snapshot (and marks `#app` with `data-ready`).
 */
import type { JobSummary } from "../jobs/model.ts";

const PLACEHOLDER = '<main id="app">Loading…</main>';

function escapeHtml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string,
  );
}

function metricText(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(5)));
}

/** The index page with the job's summary in place of the placeholder; the page unchanged for an unknown job. */
export function jobPage(index: Buffer, job: JobSummary | undefined): Buffer {
  const html = index.toString("utf8");
  if (job === undefined || !html.includes(PLACEHOLDER)) return index;
  const e = escapeHtml;
  const epoch =
    job.epoch === null
      ? "no epoch reported"
      : `epoch ${job.epoch}${job.total_epochs === null ? "" : `/${job.total_epochs}`}`;
  const metrics = Object.entries(job.latest_metrics)
    .map(([k, v]) => `<span class="metric"><b>${e(k)}</b> ${e(metricText(v))}</span>`)
    .join(" ");
  const body =
    `<main id="app" data-rendered="server"><section class="card">` +
    `<a href="/" class="back">← all jobs</a>` +
    `<h1 id="job-title">${e(job.id)}${job.name === null ? "" : ` <span class="muted">${e(job.name)}</span>`}</h1>` +
    `<div id="job-state"><span class="badge s-${e(job.state.toLowerCase())}" data-state="${e(job.state)}">${e(job.state)}</span></div>` +
    `<p>${e(epoch)}${job.exit_code === null ? "" : `, exit code ${job.exit_code}`}</p>` +
    (metrics === "" ? "" : `<p class="metrics">${metrics}</p>`) +
    `</section></main>`;
  return Buffer.from(html.replace(PLACEHOLDER, body));
}
