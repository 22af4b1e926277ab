// Small formatting helpers shared by the panels.
export const fmtBytes = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
