// Byte counts in words: the one formatter every layer uses (engine errors, hub downloads, the page, the CLI).

/** Binary units; a size is shown in the largest one it reaches. */
const UNITS = [
  ['GiB', 2 ** 30, 2],
  ['MiB', 2 ** 20, 1],
  ['KiB', 2 ** 10, 0],
] as const;

export type ByteUnit = (typeof UNITS)[number][0];

/**
 * `bytes` as "1.50 GiB", "12.3 MiB", "640 KiB" or "12 B": the largest unit it reaches, with 2, 1 or 0
 * decimals. `unit` fixes the unit (progress that counts up in MiB), `digits` the decimals.
 */
export function formatBytes(bytes: number, o: { unit?: ByteUnit; digits?: number } = {}): string {
  const [name, size, digits] = UNITS.find(([n, s]) => (o.unit ? n === o.unit : Math.abs(bytes) >= s)) ?? ['B', 1, 0];
  return `${(bytes / size).toFixed(o.digits ?? digits)} ${name}`;
}
