// Small formatting helpers shared by the panels.
export const fmtBytes = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** Bytes in the unit that reads best: GiB from 1 GiB, else MiB (KiB below 1 MiB). */
export const fmtSize = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${Math.ceil(b / 1024)} KiB`);
