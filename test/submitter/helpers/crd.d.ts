export declare const repoRoot: string;
export declare const sharedDir: string;
export declare const crdDir: string;
export interface CrdValidator {
  readonly kind: string;
  validate(doc: unknown): string[];
}
/** Loads one CRD file (about 1 MB: call once per test file) and compiles its v1alpha1 schema. */
export declare function loadCrd(file: string): CrdValidator;
