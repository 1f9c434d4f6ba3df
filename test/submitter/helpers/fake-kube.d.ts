export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType: string | undefined;
  authorization: string | undefined;
  body: unknown;
}
type Obj = Record<string, any>;
export interface FakeKube {
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** namespace/name -> object, per collection (trainjobs, configmaps, secrets, pods). */
  readonly store: Map<string, Map<string, Obj>>;
  /** Cluster-scoped runtimes by name. */
  readonly runtimes: Map<string, Obj>;
  /** Answer the next requests matching (method, collection) with this status (403, 500...). */
  failNext(method: string, collection: string, status: number, message?: string): void;
  addPod(namespace: string, pod: Obj, log?: string): void;
  /** Append to a followed log; `end` closes the stream. */
  appendLog(namespace: string, pod: string, text: string, end?: boolean): void;
  close(): Promise<void>;
  kubeConfig(): Promise<unknown>;
}
export declare function startFakeKube(): Promise<FakeKube>;
/** A pod as the Job controller makes it for worker `index` of TrainJob `name`. */
export declare function workerPod(
  name: string,
  index: number,
  extra?: {
    phase?: string;
    created?: string;
    suffix?: string;
  },
): Obj;
export {};
