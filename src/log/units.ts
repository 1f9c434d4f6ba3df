/** Numbers as people read them: sizes in binary units, counts with the right noun, rates that never round to 0. */

/** 512 -> "512 B", 1395 -> "1.4 KiB", 15515 -> "15 KiB", 5 MiB -> "5.0 MiB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

/** count(1, "file") -> "1 file", count(2, "file") -> "2 files", count(2, "process", "processes"). */
export function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * A measured rate for a log field: three significant digits, so that a small transfer's 0.028 MB/s stays
 * 0.0276 rather than becoming 0 (which reads as "nothing moved").
 */
export function significant(x: number, digits = 3): number {
  return x === 0 || !Number.isFinite(x) ? x : Number(x.toPrecision(digits));
}
