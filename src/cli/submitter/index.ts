/**
 * The `trainjob` command line: render, submit, status, logs, delete, serve. The entry (../trainjob.ts)
 * hands it process.env; Kubernetes and HTTP code load only for the commands that need them.
 */
import { randomBytes } from "node:crypto";
import { Command, Option } from "commander";
import { AgentError } from "../../errors/index.ts";
import { isLoopbackHost } from "../../http/listen.ts";
import type { Env } from "../../config/index.ts";
import { loadSubmitterConfig, normalizeOptionsFrom, type SubmitterConfig } from "../../submitter/config.ts";
import { renderJob } from "../../submitter/render.ts";
import {
  buildSpec,
  kubeOptions,
  specOptions,
  type CliIo,
  type Connected,
  type KubeOpts,
  type SpecOpts,
} from "./flags.ts";
import { formatObjects, renderedObjects, shortDuration, statusTable } from "./output.ts";
import type { TrainJobStatus } from "../../submitter/status.ts";

export { formatObjects, renderedObjects } from "./output.ts";
export type { CliIo, Connected } from "./flags.ts";

/** `status`'s text line: the Trainer's progress, ETA and metrics when rank 0 reported them. */
function progressText(status: TrainJobStatus): string {
  const p = status.progress;
  if (p === undefined) return "";
  const parts = [
    ...(p.percentage === undefined ? [] : [`progress ${p.percentage}%`]),
    ...(p.eta_seconds === undefined ? [] : [`ETA ${shortDuration(p.eta_seconds)}`]),
    ...p.metrics.map((m) => `${m.name}=${m.value}`),
  ];
  return parts.length === 0 ? "" : `\t${parts.join(" ")}`;
}

function warn(io: CliIo, warnings: readonly string[]): void {
  for (const w of warnings) io.stderr.write(`trainjob: warning: ${w}\n`);
}

/**
 * The API creates pods (with hostPath volumes): without a token it may listen on loopback only, unless the
 * operator says `--insecure-no-auth`, which is then announced on every start.
 */
function checkServeExposure(host: string, hasToken: boolean, insecureNoAuth: boolean, io: CliIo): void {
  if (hasToken || isLoopbackHost(host)) return;
  if (!insecureNoAuth) {
    throw new AgentError(
      "CONFIG_INVALID",
      `refusing to serve on ${JSON.stringify(host)} without TRAINJOB_API_TOKEN: anyone who reaches the port could create pods; set TRAINJOB_API_TOKEN, bind 127.0.0.1 (--host), or pass --insecure-no-auth`,
    );
  }
  io.stderr.write(
    `trainjob: WARNING: --insecure-no-auth: serving on ${JSON.stringify(host)} WITHOUT AUTHENTICATION; anyone who reaches the port can create and delete TrainJobs (and pods with hostPath volumes)\n`,
  );
}

async function defaultSubmitter(opts: KubeOpts, config: SubmitterConfig): Promise<Connected> {
  const { createKubeClient } = await import("../../submitter/kube/client.ts");
  const { createSubmitter } = await import("../../submitter/submitter.ts");
  const { createBackendClient } = await import("../../submitter/backend.ts");
  const kube = await createKubeClient({
    ...(opts.kubeconfig === undefined ? {} : { kubeconfig: opts.kubeconfig }),
    ...(opts.context === undefined ? {} : { context: opts.context }),
  });
  const submitter = createSubmitter({
    kube,
    ...(config.backendUrl === undefined
      ? {}
      : {
          backend: createBackendClient({
            url: config.backendUrl,
            ...(config.backendAdminToken ? { adminToken: config.backendAdminToken } : {}),
          }),
        }),
    ...(opts.runtimeCheck === false ? { checkRuntime: false } : {}),
  });
  return { submitter, currentNamespace: kube.currentNamespace };
}

function namespaceOf(opts: KubeOpts, config: SubmitterConfig, connected: Connected): string {
  return opts.namespace ?? config.namespace ?? connected.currentNamespace;
}

export function registerTrainjobCommands(program: Command, env: Env, io: CliIo): void {
  let config: SubmitterConfig | undefined;
  const cfg = (): SubmitterConfig => (config ??= loadSubmitterConfig(env));
  const connect = (opts: KubeOpts): Promise<Connected> => (io.submitter ?? defaultSubmitter)(opts, cfg());

  specOptions(program.command("render"))
    .description(
      "print the TrainJob, ConfigMap and Secret a submit would create (like kubectl --dry-run=client -o yaml)",
    )
    .argument("[argv...]", "training command after --, passed as an argv")
    .addOption(new Option("-o, --output <format>", "output format").choices(["yaml", "json"]).default("yaml"))
    .option("--show-secrets", "print Secret values instead of placeholders", false)
    .action(async (argv: string[], opts: SpecOpts & { output: string; showSecrets: boolean }) => {
      const spec = await buildSpec(opts, argv, cfg(), io);
      const rendered = renderJob(spec);
      warn(io, rendered.warnings);
      io.stdout.write(await formatObjects(renderedObjects(rendered, opts.showSecrets), opts.output));
    });

  kubeOptions(specOptions(program.command("submit")))
    .description("create the TrainJob with its ConfigMap and Secret (idempotent: the same spec again is fine)")
    .argument("[argv...]", "training command after --, passed as an argv")
    .addOption(new Option("-o, --output <format>", "output format").choices(["text", "json"]).default("text"))
    .option("--no-runtime-check", "do not check that the ClusterTrainingRuntime exists")
    .addOption(
      new Option(
        "--dry-run <mode>",
        "client: print what would be sent (as render); server: the API server validates and admits it, stores nothing",
      ).choices(["none", "client", "server"]),
    )
    .action(async (argv: string[], opts: SpecOpts & { output: string; dryRun?: string }) => {
      if (opts.dryRun === "client") {
        const rendered = renderJob(await buildSpec(opts, argv, cfg(), io));
        warn(io, rendered.warnings);
        io.stdout.write(
          await formatObjects(renderedObjects(rendered, false), opts.output === "json" ? "json" : "yaml"),
        );
        return;
      }
      const connected = await connect(opts);
      const spec = await buildSpec(opts, argv, cfg(), io, namespaceOf(opts, cfg(), connected));
      const result = await connected.submitter.submit(spec, { dryRun: opts.dryRun === "server" });
      warn(io, result.warnings);
      if (opts.output === "json") io.stdout.write(JSON.stringify(result, null, 2) + "\n");
      else
        io.stdout.write(
          `trainjob.trainer.kubeflow.org/${result.trainjob_name} ${result.created ? "created" : "unchanged"}${result.dry_run ? " (server dry run)" : ""} (namespace ${result.namespace})\n`,
        );
    });

  kubeOptions(program.command("status"))
    .description("state of a TrainJob: Pending, Running, Suspended, Complete or Failed")
    .argument("<name>", "TrainJob name")
    .option("-n, --namespace <ns>", "namespace")
    .addOption(new Option("-o, --output <format>", "output format").choices(["text", "json"]).default("text"))
    .option("-w, --wait", "wait until Complete or Failed; exit 0 on Complete, 1 on Failed", false)
    .option("--interval <seconds>", "poll interval with --wait", "5")
    .action(async (name: string, opts: KubeOpts & { output: string; wait: boolean; interval: string }) => {
      const connected = await connect(opts);
      const submitter = connected.submitter;
      const ns = namespaceOf(opts, cfg(), connected);
      let status = await submitter.status(ns, name);
      while (opts.wait && status.state !== "Complete" && status.state !== "Failed") {
        await new Promise((resolve) => setTimeout(resolve, Math.max(0.1, Number(opts.interval) || 5) * 1000));
        status = await submitter.status(ns, name);
      }
      if (opts.output === "json") io.stdout.write(JSON.stringify(status, null, 2) + "\n");
      else io.stdout.write(`${status.trainjob_name}\t${status.state}\t${status.message}${progressText(status)}\n`);
      if (opts.wait && status.state === "Failed") process.exitCode = 1;
    });

  const showTable = async (
    opts: KubeOpts & { output: string; allNamespaces?: boolean },
    read: (c: Connected, ns: string) => Promise<TrainJobStatus[]>,
  ): Promise<void> => {
    const connected = await connect(opts);
    const rows = await read(connected, namespaceOf(opts, cfg(), connected));
    if (opts.output === "json") io.stdout.write(JSON.stringify(rows, null, 2) + "\n");
    else if (rows.length === 0) io.stderr.write("No TrainJobs found.\n");
    else io.stdout.write(statusTable(rows, (io.now ?? (() => new Date()))(), opts.allNamespaces === true));
  };
  kubeOptions(program.command("list"))
    .description("TrainJobs of a namespace as a table: state, ready pods, progress, ETA, latest metrics, age")
    .option("-n, --namespace <ns>", "namespace")
    .option("-A, --all-namespaces", "every namespace", false)
    .addOption(new Option("-o, --output <format>", "output format").choices(["table", "json"]).default("table"))
    .action((opts: KubeOpts & { output: string; allNamespaces: boolean }) =>
      showTable(opts, (c, ns) => c.submitter.list(opts.allNamespaces ? undefined : ns)),
    );
  kubeOptions(program.command("get"))
    .description("one TrainJob as a table row (like list)")
    .argument("<name>", "TrainJob name")
    .option("-n, --namespace <ns>", "namespace")
    .addOption(new Option("-o, --output <format>", "output format").choices(["table", "json"]).default("table"))
    .action((name: string, opts: KubeOpts & { output: string }) =>
      showTable(opts, async (c, ns) => [await c.submitter.status(ns, name)]),
    );

  kubeOptions(program.command("logs"))
    .description("logs of one worker (node rank) of a TrainJob")
    .argument("<name>", "TrainJob name")
    .option("-n, --namespace <ns>", "namespace")
    .option("--worker <index>", "worker index (0 = master)", "0")
    .option("-f, --follow", "stream the log; waits for the pod to start", false)
    .option("--tail <lines>", "only the last N lines")
    .action(async (name: string, opts: KubeOpts & { worker: string; follow: boolean; tail?: string }) => {
      if (!/^\d+$/.test(opts.worker))
        throw new AgentError("USAGE", `--worker must be a non-negative integer, got ${JSON.stringify(opts.worker)}`);
      if (opts.tail !== undefined && !/^\d+$/.test(opts.tail))
        throw new AgentError("USAGE", `--tail must be a non-negative integer, got ${JSON.stringify(opts.tail)}`);
      const connected = await connect(opts);
      const abort = new AbortController();
      const stop = (): void => abort.abort();
      process.once("SIGINT", stop);
      try {
        const text = await connected.submitter.logs(namespaceOf(opts, cfg(), connected), name, Number(opts.worker), {
          follow: opts.follow,
          out: io.stdout as unknown as import("node:stream").Writable,
          signal: abort.signal,
          onWaiting: (reason) => io.stderr.write(`trainjob: waiting for worker ${opts.worker} to start (${reason})\n`),
          ...(opts.tail === undefined ? {} : { tailLines: Number(opts.tail) }),
        });
        io.stdout.write(text);
      } finally {
        process.off("SIGINT", stop);
      }
    });

  kubeOptions(program.command("delete"))
    .description("delete a TrainJob (its pods, ConfigMap and Secret go with it)")
    .argument("<name>", "TrainJob name")
    .option("-n, --namespace <ns>", "namespace")
    .action(async (name: string, opts: KubeOpts) => {
      const connected = await connect(opts);
      const result = await connected.submitter.delete(namespaceOf(opts, cfg(), connected), name);
      if (result.terminating !== undefined) {
        const f = result.terminating.finalizers;
        io.stdout.write(
          `trainjob/${name} deletion in progress (since ${result.terminating.since}${f.length > 0 ? `; waiting on finalizers ${f.join(", ")}` : ""})\n`,
        );
      }
      for (const what of result.deleted) io.stdout.write(`${what} deleted\n`);
    });

  kubeOptions(program.command("serve"))
    .description(
      "serve the seed backend's HTTP API: POST /api/trainjob/create, GET .../{name}/status, .../{name}/logs, DELETE /api/trainjob/{name}",
    )
    .option("--port <port>", "port (default TRAINJOB_PORT or 8080)")
    .option("--host <host>", "address to bind (default TRAINJOB_HOST or 127.0.0.1; 0.0.0.0 in a pod)")
    .option("-n, --namespace <ns>", "namespace when a request names none")
    .option("--no-runtime-check", "do not check that the ClusterTrainingRuntime exists")
    .option(
      "--insecure-no-auth",
      "listen beyond loopback without TRAINJOB_API_TOKEN: anyone who reaches the port can create pods",
      false,
    )
    .action(async (opts: KubeOpts & { port?: string; host?: string; insecureNoAuth: boolean }) => {
      const c = cfg();
      if (opts.port !== undefined && !/^\d+$/.test(opts.port))
        throw new AgentError("USAGE", `--port must be a number, got ${JSON.stringify(opts.port)}`);
      checkServeExposure(opts.host ?? c.host, c.apiToken !== undefined, opts.insecureNoAuth, io);
      const { createApiServer, listen } = await import("../../submitter/http/server.ts");
      const { createLogger } = await import("../../log/index.ts");
      // One JSON line per request on stderr (pretty on a terminal); never bodies, headers or tokens.
      const logger = await createLogger({ traceId: randomBytes(16).toString("hex"), base: { name: "trainjob" } });
      const connected = await connect(opts);
      const server = createApiServer({
        submitter: connected.submitter,
        ...(c.apiToken === undefined ? {} : { authToken: c.apiToken }),
        normalize: normalizeOptionsFrom(c, namespaceOf(opts, c, connected)),
        onRequest: (e) => logger.info({ method: e.method, path: e.path, status: e.status, ms: e.ms }, "request"),
      });
      const url = await listen(server, opts.port === undefined ? c.port : Number(opts.port), opts.host ?? c.host);
      logger.info(
        { url, auth: c.apiToken === undefined ? "none (set TRAINJOB_API_TOKEN)" : "bearer" },
        "serving the TrainJob API",
      );
      await new Promise<void>((resolve) => {
        const close = (): void => {
          server.close(() => resolve());
          server.closeAllConnections();
        };
        process.once("SIGTERM", close);
        process.once("SIGINT", close);
      });
    });
}
