// The run's saved LoRAs kept on the page within a storage budget: the last and the best (by validation loss) always stay, the others thin out evenly.

/** One saved LoRA of the run: the step it was saved at and its `.safetensors` bytes. */
export interface KeptSave {
  step: number;
  bytes: Uint8Array;
}

/** The page's default budget for the run's saves [MB]: a rank-16 SD 1.5 LoRA in fp16 is about 18 MB, so about 14 of them. */
export const DEFAULT_SAVES_BUDGET_MB = 256;
/** The budget's allowed range [MB]: at least one SD 1.5 LoRA, at most what a tab can sensibly hold in memory. */
export const SAVES_BUDGET_RANGE = { min: 16, max: 4096 } as const;

const MB = 1024 * 1024;

/** Bytes the saves take together. */
export function savesBytes(saves: readonly KeptSave[]): number {
  return saves.reduce((a, s) => a + s.bytes.byteLength, 0);
}

/**
 * The saves that fit `budgetBytes`, in step order. The last save and the one at `bestStep` are never
 * dropped (they may exceed the budget alone). Others go one at a time, each time the one whose removal
 * leaves the smallest gap between its neighbours (steps from the previous kept save, or from 0, to the
 * next), earliest first on ties: what stays is spread as evenly over the run as the budget allows.
 */
export function fitSaves(saves: readonly KeptSave[], budgetBytes: number, bestStep?: number): KeptSave[] {
  const kept = [...saves].sort((a, b) => a.step - b.step);
  let total = savesBytes(kept);
  while (total > budgetBytes) {
    let drop = -1;
    let gap = Infinity;
    for (let i = 0; i < kept.length - 1; i++) {
      if (kept[i]!.step === bestStep) continue;
      const span = kept[i + 1]!.step - (i > 0 ? kept[i - 1]!.step : 0);
      if (span < gap) [drop, gap] = [i, span];
    }
    if (drop < 0) break; // only the last and the best are left
    total -= kept[drop]!.bytes.byteLength;
    kept.splice(drop, 1);
  }
  return kept;
}

/** `saves` with `save` added (replacing one at the same step), fitted to a budget of `budgetMB` megabytes (`fitSaves`). */
export function keepSave(saves: readonly KeptSave[], save: KeptSave, budgetMB: number, bestStep?: number): KeptSave[] {
  return fitSaves([...saves.filter((s) => s.step !== save.step), save], budgetMB * MB, bestStep);
}

/** "3 saves kept, 54 MB of the 256 MB budget" (and when the last and best alone exceed it, that they are kept anyway). */
export function savesLine(saves: readonly KeptSave[], budgetMB: number): string {
  const used = savesBytes(saves) / MB;
  const n = `${saves.length} ${saves.length === 1 ? 'save' : 'saves'} kept`;
  const over = used > budgetMB ? ' (over it: the last and the best save are always kept)' : '';
  return `${n}, ${used.toFixed(1)} MB of the ${budgetMB} MB budget${over}`;
}
