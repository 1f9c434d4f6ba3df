import { describe, expect, it } from "vitest";
import { JOB_STATES, canTransition, isTerminal } from "../../src/contract/job-state.ts";

describe("isTerminal", () => {
  it("is true exactly for the states a job cannot leave", () => {
    for (const state of JOB_STATES)
      expect(isTerminal(state), state).toBe(JOB_STATES.every((to) => !canTransition(state, to)));
    expect(JOB_STATES.filter(isTerminal)).toEqual(["SUCCEEDED", "FAILED", "CANCELLED"]);
  });

  it("reads a backend's state as given: an unknown or lower-case one has not ended", () => {
    expect(isTerminal("succeeded")).toBe(false);
    expect(isTerminal("")).toBe(false);
  });
});
