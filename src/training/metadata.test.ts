// The kohya metadata of a run over N_concept folders: ss_dataset_dirs and ss_tag_frequency per folder.
import { describe, expect, it } from 'vitest';
import { planRun } from './arithmetic.js';
import { DEFAULT_CONFIG } from './config.js';
import { loraMetadata } from './metadata.js';

describe('kohya dataset metadata', () => {
  it('records each folder’s repeats and image count, tags nested per folder, images per epoch with repeats', () => {
    const config = { ...DEFAULT_CONFIG, repeats: 2 };
    const images = [
      { name: 'train/10_cat/1.png', caption: 'cat, sofa', repeats: 10 },
      { name: 'train/10_cat/2.png', caption: 'cat', repeats: 10 },
      { name: 'train/5_coffee/1.png', caption: 'coffee, cup', repeats: 5 },
      { name: 'loose.png', caption: 'cat' },
    ];
    const m = loraMetadata({ config, plan: planRun(config, images), numImages: 4, step: 1, epoch: 0, modelName: 'm', sessionId: 's', startedAt: 0, images, bucketInfo: {} });
    expect(JSON.parse(m.ss_dataset_dirs!)).toEqual({ '10_cat': { n_repeats: 10, img_count: 2 }, '5_coffee': { n_repeats: 5, img_count: 1 }, dataset: { n_repeats: 2, img_count: 1 } });
    expect(JSON.parse(m.ss_tag_frequency!)).toEqual({ '10_cat': { cat: 2, sofa: 1 }, '5_coffee': { coffee: 1, cup: 1 }, dataset: { cat: 1 } });
    expect(m.ss_num_train_images).toBe('27'); // 2 × 10 + 5 + 2
  });
});
