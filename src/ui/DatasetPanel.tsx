// Step 2: the images — dropped files, folders or zips (or the bundled sample photos), captions edited in place, skipped files and buckets.
import { useEffect, useMemo, useState } from 'react';
import { useShallow } from 'zustand/react/shallow';
import { folderLine, folderSummary, mergeSkips, REASON, stemPath, type BucketSettings, type DatasetReport, type Skip } from '../protocol/index.js';
import { CaptionPanel } from './CaptionPanel.js';
import { filesFrom, samplePhotos, sortFiles, type Picked } from './dataset.js';
import { KeptImages } from './RecoveryPanel.js';
import { ImageStats } from './ImageStats.js';
import { useApp, type DatasetEntry } from './store.js';
import { trainer } from './worker.js';

const asSkip = (x: { name: string; reason: string }): Skip => ({ path: x.name, reason: x.reason });
const toFile = (e: DatasetEntry) => ({ name: e.name, bytes: e.bytes.slice(0), caption: e.caption, ...(e.repeats !== undefined ? { repeats: e.repeats } : {}), ...(e.validation ? { validation: true } : {}) });
const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** "512x512: 3, 576x448: 1" for the images the worker decoded (asked again when `report` changes) under `settings`; '' while the settings make no grid (the form says why). */
function useBucketLine(report: DatasetReport | null, settings: BucketSettings): string {
  const [line, setLine] = useState('');
  useEffect(() => {
    let current = true;
    trainer()
      .bucketCounts(settings)
      .then((b) => current && setLine(b ? b.map((x) => `${x.width}x${x.height}: ${x.images}`).join(', ') : ''), () => current && setLine(''));
    return () => void (current = false);
  }, [report, settings]);
  return line;
}

export function DatasetPanel() {
  const { dataset, report, nonImages, set } = useApp(useShallow((st) => ({ dataset: st.dataset, report: st.report, nonImages: st.nonImages, set: st.set })));
  const repeats = useApp((st) => st.config.repeats);
  const [over, setOver] = useState(false);
  const [photos, setPhotos] = useState<{ busy: boolean; error?: string }>({ busy: false });
  /** What the last add did, in words (replaced copies, captions for images already here, folder notes); cleared by the next. */
  const [added, setAdded] = useState<string | null>(null);
  const addSamplePhotos = async () => {
    setPhotos({ busy: true });
    try {
      await add(await samplePhotos(new URL('samples/', document.baseURI).href));
      setPhotos({ busy: false });
    } catch (e) {
      setPhotos({ busy: false, error: `Could not add the sample photos: ${e instanceof Error ? e.message : String(e)}` });
    }
  };
  // An image's identity is its path in what was dropped: `10_cat/1.png` and `5_coffee/1.png` are two images.
  const add = async (files: Picked[]) => {
    setAdded(null);
    const d = await sortFiles(files);
    const fresh = new Set(d.images.map((i) => i.path));
    const before = useApp.getState().dataset;
    for (const e of before) if (fresh.has(e.name)) URL.revokeObjectURL(e.url);
    // A caption dropped without its image captions the image already here at that path.
    const late = new Map(d.orphanCaptions.map((c) => [stemPath(c.path), c]));
    const kept = before.filter((e) => !fresh.has(e.name)).map((e) => (late.has(stemPath(e.name)) ? { ...e, caption: late.get(stemPath(e.name))!.text, note: undefined } : e));
    const recaptioned = kept.filter((e) => late.has(stemPath(e.name))).length;
    const orphans = d.orphanCaptions.filter((c) => !kept.some((e) => stemPath(e.name) === stemPath(c.path)));
    const entries: DatasetEntry[] = [...kept, ...d.images.map((i) => ({ name: i.path, bytes: i.bytes, url: URL.createObjectURL(new Blob([i.bytes])), caption: i.caption, note: i.note, repeats: i.repeats }))];
    const rep = await trainer().setDataset(entries.map(toFile));
    const bad = new Set(rep.skipped.map((x) => x.name));
    const left = entries.filter((e) => !bad.has(e.name));
    const skips = mergeSkips([useApp.getState().nonImages.map(asSkip), d.skipped, orphans.map((c) => ({ path: c.path, reason: REASON.orphan })), rep.skipped.map(asSkip)], new Set(left.map((e) => e.name)));
    set({ dataset: left, report: rep, nonImages: skips.map((x) => ({ name: x.path, reason: x.reason })) });
    const replaced = before.length - kept.length;
    const parts = [`Added ${plural(d.images.length - d.images.filter((i) => bad.has(i.path)).length, 'image')}`, ...(replaced ? [`${plural(replaced, 'earlier copy', 'earlier copies')} of the same path replaced`] : []), ...(recaptioned ? [`captions for ${plural(recaptioned, 'image')} already here`] : [])];
    setAdded([parts.join(', ') + '.', ...d.notes].join(' '));
  };
  const remove = async (keep: (name: string) => boolean) => {
    setAdded(null);
    const ds = useApp.getState().dataset;
    for (const d of ds) if (!keep(d.name)) URL.revokeObjectURL(d.url);
    const left = ds.filter((d) => keep(d.name));
    const rep = await trainer().setDataset(left.map(toFile));
    set({ dataset: left, report: rep, ...(left.length ? {} : { nonImages: [] }) });
  };
  const setCaption = (i: number, caption: string) => {
    const ds = dataset.map((d, j) => (j === i ? { ...d, caption, note: undefined } : d));
    set({ dataset: ds });
    void trainer().setCaption(ds[i]!.name, caption);
  };
  // Per-folder repeats, when kohya folders set them: images × repeats = draws per epoch.
  const perEpoch = useMemo(() => {
    if (!dataset.some((d) => d.repeats !== undefined)) return null;
    const folders = folderSummary(dataset, repeats);
    return { lines: folders.map(folderLine), total: folders.reduce((a, f) => a + f.images * f.repeats, 0) };
  }, [dataset, repeats]);
  // The bucket each image will train in, with the current settings: the worker assigns them as the trainer will.
  const settings: BucketSettings = useApp(
    useShallow(({ config: c }) => ({ resolution: c.resolution, bucketStep: c.bucketStep, minBucket: c.minBucket, maxBucket: c.maxBucket, maxAspect: c.maxAspect, enableBuckets: c.enableBuckets })),
  );
  const buckets = useBucketLine(report, settings);
  const skipped = nonImages;
  return (
    <section aria-labelledby="data-h">
      <h2 id="data-h">2. Images</h2>
      <div
        className={`drop ${over ? 'over' : ''}`}
        data-testid="dropzone"
        tabIndex={0}
        onDragOver={(e) => (e.preventDefault(), setOver(true))}
        onDragLeave={() => setOver(false)}
        onDrop={async (e) => {
          e.preventDefault();
          setOver(false);
          await add(await filesFrom(e.dataTransfer));
        }}
      >
        Drop images with .txt captions, a folder or a zip here, or
        <label className="file"> choose files<input type="file" multiple onChange={async (e) => add(await filesFrom(null, e.target.files))} /></label>
      </div>
      <p>
        No images at hand? <button onClick={addSamplePhotos} disabled={photos.busy}>Use the sample photos</button> (public-domain pictures from scikit-image, with captions)
        {photos.busy && <span role="status"> Fetching…</span>}
        {photos.error && <span role="alert" className="error"> {photos.error}</span>}
      </p>
      <p data-testid="dataset-count">
        {dataset.length} {dataset.length === 1 ? 'image' : 'images'}{skipped.length ? `, ${skipped.length} skipped` : ''}{buckets ? ` — buckets: ${buckets}` : ''}
        {dataset.length > 0 && <button className="link" onClick={() => remove(() => false)}>Clear all</button>}
      </p>
      {added && <p className="note" role="status" data-testid="dataset-added">{added}</p>}
      {dataset.length > 0 && <CaptionPanel />}
      <KeptImages />
      {perEpoch && (
        <p className="note" data-testid="dataset-folders">
          Per epoch (a folder named N_concept is drawn N times; other images by the Repeats setting): {perEpoch.lines.join(' · ')} · {plural(perEpoch.total, 'image')} per epoch in all
        </p>
      )}
      {skipped.length > 0 && (
        <ul className="skipped" data-testid="skipped">
          {skipped.map((k) => <li key={k.name}>{k.name}: {k.reason}</li>)}
        </ul>
      )}
      <div className="grid">
        {dataset.map((d, i) => (
          <figure key={d.name} title={d.name}>
            <img src={d.url} alt={d.name} />
            <figcaption>
              {d.name.includes('/') && <small className="note">{d.name}</small>}
              {/* The whole caption in view: the box grows with its text (rows as a fallback where field-sizing is unknown). */}
              <textarea aria-label={`caption of ${d.name}`} value={d.caption} rows={Math.max(2, Math.ceil(d.caption.length / 18) + 1)} onChange={(e) => setCaption(i, e.target.value)} />
              <button className="remove" aria-label={`remove ${d.name}`} title="Remove from the dataset" onClick={() => remove((n) => n !== d.name)}>×</button>
              {d.note && <small className="note" data-testid="caption-note">{d.note}</small>}
              <ImageStats name={d.name} />
            </figcaption>
          </figure>
        ))}
      </div>
    </section>
  );
}
