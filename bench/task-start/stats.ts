// Percentiles and plain-text tables.

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** The nearest-rank percentile (p in 0..100) of `sorted`, which must be ascending and non-empty. */
function percentile(sorted: readonly number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] as number;
}

/** p50, p99 (nearest rank), mean, min and max; undefined when there is nothing to summarise. */
export function summarize(values: readonly number[]): Summary | undefined {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return undefined;
  const sorted = [...finite].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    mean: sorted.reduce((sum, v) => sum + v, 0) / sorted.length,
    min: sorted[0] as number,
    max: sorted[sorted.length - 1] as number,
  };
}

/** Rounds to one decimal for printing and for the JSON result. */
export function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

export function roundSummary(summary: Summary | undefined): Summary | undefined {
  if (summary === undefined) return undefined;
  return {
    n: summary.n,
    p50: round1(summary.p50),
    p99: round1(summary.p99),
    mean: round1(summary.mean),
    min: round1(summary.min),
    max: round1(summary.max),
  };
}

/** A fixed-width table: the first column left-aligned, the others right-aligned. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(header), rule, ...rows.map(line)].join("\n");
}

/** "12.3" or "–" for a missing value. */
export function ms(value: number | undefined): string {
  return value === undefined ? "–" : round1(value).toFixed(1);
}
