/**
 * The dashboard in real headless Chromium (Debian's /usr/bin/chromium through playwright-core): a job created
 * through the API appears in the list, and heartbeats sent by the test become chart points, events timeline rows
 * and the final state, all without a reload. Screenshots go to test-artifacts/ (gitignored).
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callbackPath } from "../../src/contract/index.ts";
import { call, doneBody, eventBody, heartbeatBody, startStub, type Running } from "./helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = path.resolve("test-artifacts");

describe.skipIf(!existsSync(CHROMIUM))("dashboard in headless Chromium", () => {
  let s: Running;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    s = await startStub();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("pageerror", (error) => pageErrors.push(error.message));
    page.on("console", (msg) => {
      if (msg.type() === "error") pageErrors.push(msg.text());
    });
    await mkdir(ARTIFACTS, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    await s?.stop();
  });

  it("a job created through the API appears in the list without reload", async () => {
    await page.goto(`${s.url}/`);
    await page.waitForSelector("#conn.on");
    await page.evaluate(() => ((globalThis as unknown as { __loadMarker: number }).__loadMarker = 42));

    const created = await call(s.url, "POST", "/v1/jobs", {
      body: { id: "resnet-demo", name: "resnet50 on imagenette" },
    });
    expect(created.status).toBe(201);
    const row = page.locator('tr[data-job-id="resnet-demo"]');
    await row.waitFor();
    await expect(row.locator("[data-state]").getAttribute("data-state")).resolves.toBe("PENDING");

    // The row follows the state live.
    const token = created.body.token as string;
    await call(s.url, "POST", callbackPath("resnet-demo", "heartbeat"), {
      token,
      body: heartbeatBody("resnet-demo", { epoch: 1, total_epochs: 8, metrics: { loss: 1.9, acc: 0.31 } }),
    });
    await page.locator('tr[data-job-id="resnet-demo"] [data-state="RUNNING"]').waitFor();
    const other = await s.stub.createJob({ name: "bert finetune" });
    await s.stub.queueJob(other.id);
    const done = await s.stub.createJob({ name: "mnist smoke test" });
    await call(s.url, "POST", callbackPath(done.id, "done"), { token: done.token, body: doneBody(done.id) });
    await page.locator(`tr[data-job-id="${done.id}"] [data-state="SUCCEEDED"]`).waitFor();
    expect(await page.evaluate(() => (globalThis as unknown as { __loadMarker?: number }).__loadMarker)).toBe(42);
    await page.screenshot({ path: path.join(ARTIFACTS, "dashboard-jobs.png") });
  });

  it("heartbeats sent by the test appear as chart points, events in the timeline, without reload", async () => {
    await page.click('tr[data-job-id="resnet-demo"] a.jobid');
    await page.waitForURL(/\/jobs\/resnet-demo$/);
    await page.waitForSelector('[data-metric="loss"]');
    await page.evaluate(() => ((globalThis as unknown as { __loadMarker: number }).__loadMarker = 7));
    const points = (name: string): Promise<number> =>
      page.evaluate(
        (n) => (globalThis as unknown as { __dashboard: { points(n: string): number } }).__dashboard.points(n),
        name,
      );
    expect(await points("loss")).toBe(1);

    const token = (await s.stub.issueToken("resnet-demo")).token;
    await call(s.url, "POST", callbackPath("resnet-demo", "event"), {
      token,
      body: eventBody("resnet-demo", "checkpoint_restored", { message: "resumed from epoch-1.pt" }),
    });
    const losses = [1.9, 1.42, 1.05, 0.81, 0.64, 0.52, 0.45, 0.41];
    for (let epoch = 2; epoch <= 6; epoch++) {
      await call(s.url, "POST", callbackPath("resnet-demo", "heartbeat"), {
        token,
        body: heartbeatBody("resnet-demo", {
          epoch,
          total_epochs: 8,
          progress: epoch / 8,
          eta_seconds: (8 - epoch) * 42,
          metrics: { loss: losses[epoch - 1], acc: 0.31 + epoch * 0.08, lr: 0.1 * 0.7 ** epoch },
        }),
      });
      await page.waitForFunction(
        (n) =>
          (globalThis as unknown as { __dashboard: { points(n: string): number } }).__dashboard.points("loss") === n,
        epoch,
      );
    }
    expect(await points("loss")).toBe(6);
    expect(await points("acc")).toBe(6);
    expect(await page.getAttribute('[data-metric="loss"]', "data-points")).toBe("6");
    // The chart holds the values sent, in epoch order.
    const lossData = await page.evaluate(
      () =>
        (
          globalThis as unknown as { __dashboard: { charts: Map<string, { data: number[][] }> } }
        ).__dashboard.charts.get("loss")!.data,
    );
    expect(lossData[0]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(lossData[1]).toEqual(losses.slice(0, 6));
    expect(await page.locator('[data-metric="loss"] canvas').count()).toBe(1);
    await page.locator(".tl", { hasText: "checkpoint_restored" }).waitFor();
    await call(s.url, "POST", callbackPath("resnet-demo", "event"), {
      token,
      body: eventBody("resnet-demo", "checkpoint_uploaded", { message: "checkpoints/job-resnet-demo/epoch-6.pt" }),
    });
    await page.locator(".tl", { hasText: "checkpoint_uploaded" }).waitFor();
    expect(await page.evaluate(() => (globalThis as unknown as { __loadMarker?: number }).__loadMarker)).toBe(7);
    expect(await page.textContent("#job-age")).toMatch(/s ago/);
    await page.screenshot({ path: path.join(ARTIFACTS, "dashboard.png"), fullPage: true });

    await call(s.url, "POST", callbackPath("resnet-demo", "done"), {
      token,
      body: doneBody("resnet-demo", "succeeded", {
        final_metrics: { loss: 0.41, acc: 0.93 },
        checkpoints: [{ key: "checkpoints/job-resnet-demo/epoch-6.pt", bytes: 98_000_000 }],
        log_tail: "epoch 6 loss 0.52\ntraining finished",
        duration_seconds: 312,
      }),
    });
    await page.locator('#job-state [data-state="SUCCEEDED"]').waitFor();
    await page.locator("#done .logtail", { hasText: "training finished" }).waitFor();
    expect(await page.evaluate(() => (globalThis as unknown as { __loadMarker?: number }).__loadMarker)).toBe(7);
    await page.screenshot({ path: path.join(ARTIFACTS, "dashboard-done.png"), fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it("a 2-node job shows node 1's done while it waits for node 0, then the result", async () => {
    const job = await s.stub.createJob({ id: "ddp-2-nodes", name: "2 nodes" });
    await page.goto(`${s.url}/jobs/ddp-2-nodes`);
    await page.waitForSelector("#conn.on");
    const node = (rank: number) =>
      doneBody("ddp-2-nodes", "succeeded", { node_rank: rank, nnodes: 2, duration_seconds: 60 + rank });
    await call(s.url, "POST", callbackPath("ddp-2-nodes", "done"), { token: job.token, body: node(1) });
    await page.locator("#done", { hasText: "Waiting for the other nodes (1 of 2 done)" }).waitFor();
    await page.locator(".tl", { hasText: "node 1 done: succeeded" }).waitFor();
    expect(await page.getAttribute("#job-state [data-state]", "data-state")).toBe("RUNNING");
    await call(s.url, "POST", callbackPath("ddp-2-nodes", "done"), { token: job.token, body: node(0) });
    await page.locator('#job-state [data-state="SUCCEEDED"]').waitFor();
    await page.locator("#done .nodes li", { hasText: "node 0" }).waitFor();
    expect(await page.locator("#done .nodes li").count()).toBe(2);
    expect(pageErrors).toEqual([]);
  });

  it("a job page shows the job without its live stream (server-rendered), then marks itself data-ready", async () => {
    const job = await s.stub.createJob({ id: "ssr-job", name: "<b>bold</b> name" });
    const hb = heartbeatBody("ssr-job", { epoch: 2, total_epochs: 5, metrics: { loss: 0.25 } });
    await call(s.url, "POST", callbackPath("ssr-job", "heartbeat"), { token: job.token, body: hb });
    const ckpt = { key: "checkpoints/job-ssr-job/epoch-2.pt", bytes: 1395 };
    const done = doneBody("ssr-job", "succeeded", { checkpoints: [ckpt] });
    await call(s.url, "POST", callbackPath("ssr-job", "done"), { token: job.token, body: done });

    // What a crawler or curl gets: the job is in the HTML, with its text escaped.
    const html = await (await fetch(`${s.url}/jobs/ssr-job`)).text();
    expect(html).toContain('data-state="SUCCEEDED"');
    expect(html).toContain("epoch 2/5, exit code 0");
    expect(html).toContain("<b>loss</b> 0.25");
    expect(html).toContain("&lt;b&gt;bold&lt;/b&gt; name");
    expect(html).not.toContain("<b>bold</b>");
    expect(html).not.toContain("Loading…");

    // A screenshot taken at the load event, before any stream data can arrive: the streams are held back.
    await page.route("**/stream", () => undefined);
    try {
      await page.goto(`${s.url}/jobs/ssr-job`, { waitUntil: "load" });
      expect(await page.textContent("#job-title")).toContain("ssr-job");
      expect(await page.getAttribute("#job-state [data-state]", "data-state")).toBe("SUCCEEDED");
      expect(await page.getAttribute("#app", "data-ready")).toBeNull();
      await page.screenshot({ path: path.join(ARTIFACTS, "dashboard-server-rendered.png") });
    } finally {
      await page.unroute("**/stream");
    }

    await page.goto(`${s.url}/jobs/ssr-job`);
    await page.locator('#app[data-ready="job"]').waitFor();
    // A 1,395-byte checkpoint is shown in a unit that does not round it to nothing.
    expect(await page.textContent("#done .ckpts li")).toContain("epoch-2.pt 1.4 KiB");
  });

  it("a restarted job shows its attempts on the timeline and one continuous loss curve", async () => {
    const job = await s.stub.createJob({ id: "restarted", name: "preempted", max_restarts: 3 });
    await page.goto(`${s.url}/jobs/restarted`);
    await page.waitForSelector("#conn.on");
    const beat = (epoch: number, attempt: number) =>
      call(s.url, "POST", callbackPath("restarted", "heartbeat"), {
        token: job.token,
        body: heartbeatBody("restarted", { epoch, total_epochs: 4, metrics: { loss: 1 / epoch }, attempt }),
      });
    await beat(1, 0);
    await beat(2, 0);
    await call(s.url, "POST", callbackPath("restarted", "done"), {
      token: job.token,
      body: doneBody("restarted", "failed", { reason: "node preempted", attempt: 0 }),
    });
    await page.locator(".tl.error", { hasText: "attempt 0 failed" }).filter({ hasText: "node preempted" }).waitFor();
    expect(await page.getAttribute("#job-state [data-state]", "data-state")).toBe("RUNNING");
    await beat(3, 1);
    await beat(4, 1);
    await page.locator(".tl", { hasText: "attempt 1 started" }).waitFor();
    await page.waitForFunction(
      () => (globalThis as unknown as { __dashboard: { points(n: string): number } }).__dashboard.points("loss") === 4,
    );
    const x = await page.evaluate(
      () =>
        (
          globalThis as unknown as { __dashboard: { charts: Map<string, { data: number[][] }> } }
        ).__dashboard.charts.get("loss")!.data[0],
    );
    expect(x).toEqual([1, 2, 3, 4]);
    await page.screenshot({ path: path.join(ARTIFACTS, "dashboard-attempts.png"), fullPage: true });
    expect(pageErrors).toEqual([]);
  });
});
