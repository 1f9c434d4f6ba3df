/**
 * What a careless or hostile request must not get through the submitter: credentials rendered into the TrainJob,
 * `$(VAR)` expanded by the kubelet in env values, a user_id label dropped silently, Secret keys colliding.
 */
import { describe, expect, it } from "vitest";
import { isSecretLookingName, isSecretLookingValue } from "../../src/config/index.ts";
import { isAgentError } from "../../src/errors/index.ts";
import { expandKubernetes, normalizeJobRequest, renderJob, type K8sObject } from "../../src/submitter/index.ts";
import { MAX_REQUEST_DEPTH } from "../../src/submitter/request/index.ts";

const now = () => new Date("2025-11-05T13:00:00Z");
const BASE = { name: "demo", framework: "pytorch", command: ["python3", "t.py"] };

type Env = Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
const envOf = (tj: K8sObject): Env => (tj.spec as { trainer: { env?: Env } }).trainer.env ?? [];

function render(request: Record<string, unknown>) {
  return renderJob(normalizeJobRequest({ ...BASE, ...request }, { now }));
}

function problems(request: Record<string, unknown>): Array<{ field: string; message: string }> {
  try {
    normalizeJobRequest({ ...BASE, ...request }, { now });
  } catch (error) {
    if (!isAgentError(error, "SPEC_INVALID")) throw error;
    return (error.details?.problems ?? []) as Array<{ field: string; message: string }>;
  }
  throw new Error("expected SPEC_INVALID");
}

const SECRET_NAMES = [
  "MINIO_SECRET_KEY",
  "MINIO_ROOT_PASSWORD",
  "DB_PASS",
  "DB_PASSWD",
  "GITHUB_PAT",
  "OPENAI_KEY",
  "OPENAI_API_KEY",
  "AWS_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "HF_TOKEN",
  "GOOGLE_APPLICATION_CREDENTIALS",
  "DOCKER_CREDS",
  "SSH_PRIVATE_KEY_FILE",
  "BASIC_AUTH",
  "AUTH_HEADER",
  "SECRET",
  "MYAPP_SECRET_SALT",
  "DBPASSWORD",
  "APIKEY",
  "wandbApiKey",
  "SIGNING_KEYS",
  "SESSION_COOKIE",
];

describe("credential-looking env values go to the Secret", () => {
  it.each(SECRET_NAMES)("-e %s=... reaches the pod by secretKeyRef only, with a warning naming it", (name) => {
    const value = "s3cr3t-value-9f8e7d";
    const r = render({ env: { [name]: value } });
    expect(JSON.stringify(r.trainJob)).not.toContain(value);
    const entry = envOf(r.trainJob).find((e) => e.name === name);
    expect(entry?.valueFrom?.secretKeyRef?.name).toBe("demo-trainer-secrets");
    expect(r.secret?.stringData).toMatchObject({ [entry!.valueFrom!.secretKeyRef!.key]: value });
    expect(r.warnings.join("\n")).toContain(`env ${name}: its name looks like a credential`);
    expect(r.warnings.join("\n")).not.toContain(value);
  });

  it.each([
    ["DATABASE_URL", "postgres://app:hunter2@db.internal:5432/train"],
    ["REDIS", "redis://:hunter2@redis:6379/0"],
    ["DEPLOY", "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"],
    ["UPSTREAM", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"],
    ["CLIENT", "AKIAIOSFODNN7EXAMPLE"],
    ["BEARER", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"],
  ])("%s whose value looks like a credential goes to the Secret", (name, value) => {
    const r = render({ env: { [name]: value } });
    expect(JSON.stringify(r.trainJob)).not.toContain(value);
    expect(envOf(r.trainJob).find((e) => e.name === name)?.valueFrom?.secretKeyRef).toBeDefined();
    expect(r.warnings.join("\n")).toContain(`env ${name}: its value looks like a credential`);
    expect(r.warnings.join("\n")).not.toContain(value);
  });

  it.each([
    "TOKENIZERS_PARALLELISM",
    "PYTHONPATH",
    "PATH",
    "MASTER_PORT",
    "KEYCLOAK_URL",
    "AUTHOR",
    "PASSES",
    "PWD",
    "EPOCHS",
  ])("%s stays a plain value", (name) => {
    expect(isSecretLookingName(name)).toBe(false);
  });

  it.each(["http://user@host/x", "https://example.com/a:b@c", "plain", "s3://bucket/key"])(
    "value %s is not taken for a credential",
    (value) => {
      expect(isSecretLookingValue(value)).toBe(false);
    },
  );

  it("names that differ only by case or _/- get their own Secret keys, and none reads the callback token", () => {
    const r = render({
      env: [
        { name: "DB_PASS", value: "first" },
        { name: "db-pass", value: "second" },
        { name: "callback_token", value: "mine" },
      ],
      callback: { base_url: "http://backend:8000", job_id: "demo", token: "the-callback-jwt" },
    });
    const data = r.secret!.stringData as Record<string, string>;
    const valueOf = (name: string): string => {
      const key = envOf(r.trainJob).find((e) => e.name === name)!.valueFrom!.secretKeyRef!.key;
      return data[key]!;
    };
    expect(valueOf("DB_PASS")).toBe("first");
    expect(valueOf("db-pass")).toBe("second");
    expect(valueOf("callback_token")).toBe("mine");
    expect(valueOf("CALLBACK_TOKEN")).toBe("the-callback-jwt");
  });
});

describe("env values are literal", () => {
  it("$(VAR) in an -e value is escaped so the kubelet's expansion gives the text back unchanged", () => {
    const given = { GREETING: "hi $(USER) and $$(HOME), cost $5", PYTHONPATH: "/x/$(P)" };
    const r = render({ env: given });
    const env = envOf(r.trainJob);
    const kubeletEnv = { USER: "root", HOME: "/root", P: "p" };
    for (const [name, value] of Object.entries(given)) {
      const rendered = env.find((e) => e.name === name)!.value!;
      expect(expandKubernetes(rendered, kubeletEnv)).toBe(name === "PYTHONPATH" ? `${value}:/opt/agent` : value);
    }
  });
});

describe("user_id", () => {
  it("is refused with a clear error naming the field when it is not a label value, with or without --name", () => {
    for (const bad of ["alice@example.com", "-lead", "a".repeat(64), "x y"]) {
      const found = problems({ user_id: bad });
      expect(found.map((p) => p.field)).toContain("user_id");
      expect(found.find((p) => p.field === "user_id")!.message).toMatch(/label value/);
    }
  });

  it("is the user-id label of every object when valid", () => {
    const r = render({ user_id: "Alice_01", env: { API_KEY: "k" } });
    for (const obj of [r.trainJob, r.secret!])
      expect(obj.metadata.labels?.["trainer.astrago.io/user-id"]).toBe("Alice_01");
  });
});

describe("names", () => {
  it.each(["Demo", "demo_1", "1demo", "demo-", "a.b", "x".repeat(64)])("TrainJob name %s is refused", (name) => {
    expect(problems({ name }).map((p) => p.field)).toContain("name");
  });

  it.each(["Team_A", "-ns", "a".repeat(64)])("namespace %s is refused", (namespace) => {
    expect(problems({ namespace }).map((p) => p.field)).toContain("namespace");
  });
});

describe("request shape", () => {
  it("a request nested 100,000 levels deep is SPEC_INVALID naming where, not a stack overflow", () => {
    const deep = JSON.parse(`{"a":${"[".repeat(100_000)}1${"]".repeat(100_000)}}`) as unknown;
    const found = problems({ node_selector: deep });
    expect(found).toHaveLength(1);
    expect(found[0]!.field).toMatch(/^node_selector\.a(\[0\])+$/);
    expect(found[0]!.message).toContain(`deeper than ${MAX_REQUEST_DEPTH} levels`);
  });

  it("a __proto__ key (as JSON.parse makes it: an own key) is refused naming it", () => {
    const request = JSON.parse('{"podTemplateOverrides":[{"metadata":{"labels":{"__proto__":{"x":"y"}}}}]}');
    expect(problems(request)).toEqual([
      expect.objectContaining({ field: "podTemplateOverrides[0].metadata.labels.__proto__" }),
    ]);
  });
});
