/*
 * Statistics of timed samples, the one summary every benchmark, the
 * contention experiment and the demo use: summarize(samplesNs) gives the
 * count, mean, min, max, the p10/p50/p90/p99 quantiles (linear
 * interpolation between order statistics) and the 95% relative margin of
 * error of the mean (Student t). Charts draw p50 with a p10..p90 bar.
 * median(values) is the same p50 of figures that are not samples (the
 * medians of a benchmark's rounds).
 * Pure functions; samples are nanoseconds per operation.
 */

/** Statistics of per-operation times, in nanoseconds. */
export interface SampleStats {
  samples: number;
  meanNs: number;
  minNs: number;
  p10Ns: number;
  p50Ns: number;
  p90Ns: number;
  p99Ns: number;
  maxNs: number;
  /** 95% relative margin of error of the mean, in percent. */
  rme: number;
}

/** The q-quantile of sorted samples, interpolated linearly. */
export const quantile = (sorted: readonly number[], q: number): number => {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  return lo + 1 < sorted.length ? sorted[lo] + (pos - lo) * (sorted[lo + 1] - sorted[lo]) : sorted[lo];
};

/** The median of unsorted values (summarize()'s p50: the mean of the middle two for an even count). */
export const median = (values: readonly number[]): number => quantile([...values].sort((a, b) => a - b), 0.5);

/** Two-sided 95% Student t, df 1..30; 1.96 + 2.4/df beyond (within 0.5%). */
const T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145,
  2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];

/** Summarises per-operation times (ns); the same code for JavaScript, native and cross-thread samples. */
export function summarize(samplesNs: readonly number[]): SampleStats {
  const s = [...samplesNs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) {
    return { samples: 0, meanNs: NaN, minNs: NaN, p10Ns: NaN, p50Ns: NaN, p90Ns: NaN, p99Ns: NaN, maxNs: NaN, rme: NaN };
  }
  const mean = s.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? s.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1) : 0;
  const df = n - 1;
  const t = df === 0 ? 0 : df <= 30 ? T95[df - 1] : 1.96 + 2.4 / df;
  return {
    samples: n, meanNs: mean, minNs: s[0], p10Ns: quantile(s, 0.1), p50Ns: quantile(s, 0.5), p90Ns: quantile(s, 0.9),
    p99Ns: quantile(s, 0.99), maxNs: s[n - 1], rme: mean > 0 ? (100 * t * Math.sqrt(variance / n)) / mean : 0,
  };
}
