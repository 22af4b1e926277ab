// A wd tagger's two files from a Hugging Face repository, through the same browser cache as base models (model/hub-cache.ts).
import { HubError, openHubRepo, type HubLoadReport, type HubRef, type HubRepoOptions } from '../model/hub-cache.js';
import { TAGGER_FILES, TaggerError } from './tagger.js';
import type { TaggerFiles } from './tagger-session.js';

/** A missing file in words that fit a tagger (the hub layer's 404 text speaks of diffusers layouts). */
function missing(repo: string, path: string): TaggerError {
  return new TaggerError(`${repo} has no ${path}: a WD14 tagger repository holds ${TAGGER_FILES.model} and ${TAGGER_FILES.tags} at its top level (SmilingWolf/wd-vit-tagger-v3, wd-swinv2-tagger-v3, wd-convnext-tagger-v3, wd-v1-4-moat-tagger-v2, …). Check the repository id and revision.`);
}

/**
 * selected_tags.csv, then model.onnx (hundreds of MB, downloaded once with progress and kept in the
 * hub cache): the small file first, so that a wrong repository fails before the big download.
 */
export async function taggerFromHub(ref: HubRef, o: HubRepoOptions = {}): Promise<TaggerFiles & { report: HubLoadReport }> {
  const repo = await openHubRepo(ref, o);
  const read = async <T>(path: string, get: () => Promise<T>): Promise<T> => {
    try {
      return await get();
    } catch (e) {
      if (e instanceof HubError && e.code === 'not-found') throw missing(repo.name, path);
      throw e;
    }
  };
  const tags = await read(TAGGER_FILES.tags, () => repo.text(TAGGER_FILES.tags));
  const model = await read(TAGGER_FILES.model, async () => {
    const src = await repo.open(TAGGER_FILES.model);
    try {
      return await src.read(0, src.size);
    } finally {
      await src.close?.();
    }
  });
  return { tags, model, from: repo.name, report: repo.report() };
}
