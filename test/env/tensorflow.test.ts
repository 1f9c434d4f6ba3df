import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { isAgentError } from "../../src/errors/index.ts";
import { buildTfConfig, tensorflowEnv, type TfInput } from "../../src/env/tensorflow.ts";

const input = (i: Partial<TfInput> = {}): TfInput => ({
  nnodes: 2,
  nodeRank: 0,
  masterAddr: "localhost",
  masterAddrExplicit: false,
  hostname: undefined,
  tfPort: 2222,
  tfConfig: undefined,
  ...i,
});

describe("TF_CONFIG worker hosts", () => {
  it.each<[string, Partial<TfInput>, string[]]>([
    [
      "from Trainer's PET_MASTER_ADDR",
      { nnodes: 3, masterAddr: "mnist-node-0-0.mnist", masterAddrExplicit: true },
      ["mnist-node-0-0.mnist:2222", "mnist-node-0-1.mnist:2222", "mnist-node-0-2.mnist:2222"],
    ],
    [
      "from a fully qualified master",
      { masterAddr: "tj-node-0-0.tj.team-a.svc.cluster.local", masterAddrExplicit: true, tfPort: 5000 },
      ["tj-node-0-0.tj.team-a.svc.cluster.local:5000", "tj-node-0-1.tj.team-a.svc.cluster.local:5000"],
    ],
    [
      "trainjob name with digits and dashes",
      { masterAddr: "run-2-node-0-0.run-2", masterAddrExplicit: true },
      ["run-2-node-0-0.run-2:2222", "run-2-node-0-1.run-2:2222"],
    ],
    [
      "from the pod hostname when PET_MASTER_ADDR is unset",
      { nnodes: 3, nodeRank: 2, hostname: "mnist-node-0-2" },
      ["mnist-node-0-0.mnist:2222", "mnist-node-0-1.mnist:2222", "mnist-node-0-2.mnist:2222"],
    ],
    [
      "from the pod hostname when PET_MASTER_ADDR is not a pod name",
      { masterAddr: "trainer-master", masterAddrExplicit: true, hostname: "x-node-0-1" },
      ["x-node-0-0.x:2222", "x-node-0-1.x:2222"],
    ],
    ["local run on localhost (default)", { nnodes: 3 }, ["localhost:2222", "localhost:2223", "localhost:2224"]],
    [
      "local run on 127.0.0.1",
      { masterAddr: "127.0.0.1", masterAddrExplicit: true, tfPort: 40000 },
      ["127.0.0.1:40000", "127.0.0.1:40001"],
    ],
    [
      "local run on an IP wins over a pod-like hostname",
      { masterAddr: "10.0.0.7", masterAddrExplicit: true, hostname: "y-node-0-1" },
      ["10.0.0.7:2222", "10.0.0.7:2223"],
    ],
    ["IPv6 in brackets", { masterAddr: "::1", masterAddrExplicit: true }, ["[::1]:2222", "[::1]:2223"]],
  ])("%s", (_name, i, hosts) => {
    const cfg = buildTfConfig(input(i));
    expect(cfg.cluster.worker).toEqual(hosts);
    expect(cfg.task).toEqual({ type: "worker", index: i.nodeRank ?? 0 });
  });

  it("writes the documented JSON shape", () => {
    const env = tensorflowEnv(
      input({ nnodes: 2, nodeRank: 1, masterAddr: "tf-node-0-0.tf", masterAddrExplicit: true }),
    );
    expect(env.TF_CONFIG).toBe(
      '{"cluster":{"worker":["tf-node-0-0.tf:2222","tf-node-0-1.tf:2222"]},"task":{"type":"worker","index":1}}',
    );
  });

  it("leaves an existing TF_CONFIG untouched (sets nothing)", () => {
    expect(tensorflowEnv(input({ tfConfig: '{"cluster":{}}' }))).toEqual({});
  });

  it("sets no TF_CONFIG for a single worker, like training-operator (issue #1078)", () => {
    expect(tensorflowEnv(input({ nnodes: 1 }))).toEqual({});
  });

  it.each<[string, Partial<TfInput>, RegExp]>([
    [
      "a master name that is no pod name, no IP",
      { masterAddr: "master.example.com", masterAddrExplicit: true },
      /PET_MASTER_ADDR must be <trainjob>-node-0-0.<trainjob> .* got "master.example.com"/,
    ],
    ["node rank >= nnodes", { nodeRank: 2 }, /PET_NODE_RANK must be from 0 to 1, got "2"/],
    ["zero workers", { nnodes: 0 }, /PET_NNODES must be a positive integer, got "0"/],
    ["TF_PORT 0", { tfPort: 0 }, /TF_PORT must be a port from 1 to 65535, got "0"/],
    [
      "local ports past 65535",
      { nnodes: 4, tfPort: 65534 },
      /TF_PORT must leave room for 4 local workers .* got "65534"/,
    ],
  ])("rejects %s (ENV_INVALID)", (_name, i, message) => {
    let caught: unknown;
    try {
      buildTfConfig(input(i));
    } catch (error) {
      caught = error;
    }
    expect(isAgentError(caught, "ENV_INVALID")).toBe(true);
    expect((caught as Error).message).toMatch(message);
  });
});

/**
 * TensorFlow cannot be installed here, so this checker applies the rules TFConfigClusterResolver and
 * multi_worker_util._validate_cluster_spec apply (see shared notes section 4) to what we produce.
 */
const CHECKER = String.raw`
import json, sys
out = []
for raw in json.load(sys.stdin):
    c = json.loads(raw)                      # TFConfigClusterResolver: json.loads(os.environ["TF_CONFIG"])
    cluster = c.get("cluster", {})
    task_type = str(c["task"]["type"])
    task_id = int(c["task"]["index"])
    assert task_type in ("chief", "worker", "evaluator", "ps"), task_type
    assert task_type in cluster, "task type not in cluster"
    assert len(cluster.get("chief", [])) <= 1 and len(cluster.get("evaluator", [])) <= 1
    assert "master" not in cluster
    assert 0 <= task_id < len(cluster[task_type]), "task index out of range"
    for job, tasks in cluster.items():
        assert job == job.lower()
        assert isinstance(tasks, list), "job tasks must be a list"
        for addr in tasks:
            host, _, port = addr.rpartition(":")
            assert host and 1 <= int(port) <= 65535, addr
            assert ":" not in host or (host.startswith("[") and host.endswith("]")), addr
    assert len(set(cluster[task_type])) == len(cluster[task_type]), "duplicate addresses"
    is_chief = "chief" not in cluster and task_type == "worker" and task_id == 0
    out.append({"address": cluster[task_type][task_id], "workers": len(cluster.get("chief", [])) + len(cluster["worker"]), "chief": is_chief})
print(json.dumps(out))
`;
const python = ["/usr/bin/python3", "/usr/local/bin/python3"].find((p) => existsSync(p));

describe.skipIf(python === undefined)("TF_CONFIG read with TFConfigClusterResolver's rules (python)", () => {
  it("every worker of several layouts gets a valid, distinct task address", () => {
    const layouts: Partial<TfInput>[] = [
      { nnodes: 3, masterAddr: "mnist-node-0-0.mnist", masterAddrExplicit: true },
      { nnodes: 2, hostname: "job-node-0-1" },
      { nnodes: 4, masterAddr: "127.0.0.1", masterAddrExplicit: true },
      { nnodes: 2, masterAddr: "::1", masterAddrExplicit: true },
    ];
    const configs: string[] = [];
    const expected: { address: string; workers: number; chief: boolean }[] = [];
    for (const l of layouts)
      for (let rank = 0; rank < (l.nnodes ?? 2); rank++) {
        const tf = tensorflowEnv(input({ ...l, nodeRank: rank })).TF_CONFIG;
        expect(tf).toBeDefined();
        configs.push(tf!);
        const hosts = JSON.parse(tf!).cluster.worker as string[];
        expected.push({ address: hosts[rank]!, workers: l.nnodes ?? 2, chief: rank === 0 });
      }
    const out = execFileSync(python!, ["-c", CHECKER], { input: JSON.stringify(configs), encoding: "utf8" });
    expect(JSON.parse(out)).toEqual(expected);
  });

  it.each([
    ["index out of range", '{"cluster":{"worker":["a:1"]},"task":{"type":"worker","index":1}}'],
    ["v1-style master job", '{"cluster":{"master":["a:1"],"worker":["b:1"]},"task":{"type":"worker","index":0}}'],
    ["bare IPv6 host", '{"cluster":{"worker":["::1:2222"]},"task":{"type":"worker","index":0}}'],
    ["port out of range", '{"cluster":{"worker":["a:70000"]},"task":{"type":"worker","index":0}}'],
    ["not JSON", "{cluster"],
  ])("the checker rejects a broken TF_CONFIG: %s", (_name, tf) => {
    expect(() =>
      execFileSync(python!, ["-c", CHECKER], { input: JSON.stringify([tf]), encoding: "utf8", stdio: "pipe" }),
    ).toThrow();
  });
});
