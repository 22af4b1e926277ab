// Per-image training loss: the mean over the run so far of every loss an image's samples had, so a mislabelled or broken image stands out.

/** One image's training loss so far: the mean of its samples' losses and how many there were. */
export interface ImageLoss {
  name: string;
  mean: number;
  count: number;
}

/** Running per-image means, fed with each step's per-sample losses. */
export class ImageLosses {
  private readonly sums: Float64Array;
  private readonly counts: Uint32Array;

  constructor(private readonly names: readonly string[]) {
    this.sums = new Float64Array(names.length);
    this.counts = new Uint32Array(names.length);
  }

  /**
   * Add one step's losses: `items[k][j]` is the image of sample j of micro-batch k, `losses[k][j]` its
   * loss. Non-finite losses are left out. Returns the updated means of the images this step touched.
   */
  record(items: readonly (readonly number[])[], losses: readonly (readonly number[])[]): ImageLoss[] {
    const touched = new Set<number>();
    items.forEach((batch, k) =>
      batch.forEach((item, j) => {
        const loss = losses[k]?.[j];
        if (loss === undefined || !Number.isFinite(loss)) return;
        this.sums[item]! += loss;
        this.counts[item]!++;
        touched.add(item);
      }),
    );
    return [...touched].sort((a, b) => a - b).map((i) => this.of(i));
  }

  /** Every image that has a loss so far. */
  all(): ImageLoss[] {
    return this.names.map((_, i) => this.of(i)).filter((l) => l.count > 0);
  }

  /** What a run state keeps (JSON): per image, its loss sum and count. */
  snapshot(): { sums: number[]; counts: number[] } {
    return { sums: [...this.sums], counts: [...this.counts] };
  }

  /** Put back a `snapshot` of the same images. */
  restore(s: { sums: number[]; counts: number[] }): void {
    if (s.sums?.length !== this.names.length || s.counts?.length !== this.names.length) throw new Error(`The run state's per-image losses are for ${s.sums?.length ?? 0} images, not this run's ${this.names.length}`);
    this.sums.set(s.sums);
    this.counts.set(s.counts);
  }

  private of(i: number): ImageLoss {
    return { name: this.names[i]!, mean: this.sums[i]! / this.counts[i]!, count: this.counts[i]! };
  }
}
