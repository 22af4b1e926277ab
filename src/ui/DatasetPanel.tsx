// Step 2: the images — dropped files, folders or zips (or the bundled samples), captions edited in place, skipped files and buckets.
import { useMemo, useState } from 'react';
import { assignBucket, makeBuckets, type Bucket } from '../training/buckets.js';
import { filesFrom, sampleFiles, sortFiles, stem } from './dataset.js';
import { useApp } from './store.js';
import { trainer } from './worker.js';

export function DatasetPanel() {
  const { dataset, report, nonImages, set } = useApp();
  const [over, setOver] = useState(false);
  const [samples, setSamples] = useState<{ busy: boolean; error?: string }>({ busy: false });
  const addSamples = async () => {
    setSamples({ busy: true });
    try {
      await add(await sampleFiles(new URL('samples/', document.baseURI).href));
      setSamples({ busy: false });
    } catch (e) {
      setSamples({ busy: false, error: `Could not add the sample photos: ${e instanceof Error ? e.message : String(e)}` });
    }
  };
  const add = async (files: File[]) => {
    const d = await sortFiles(files);
    const fresh = new Set(d.images.map((i) => i.name));
    for (const e of useApp.getState().dataset) if (fresh.has(e.name)) URL.revokeObjectURL(e.url);
    // A file added again (same name) replaces the earlier copy.
    const entries = [...useApp.getState().dataset.filter((e) => !fresh.has(e.name)), ...d.images.map((i) => ({ name: i.name, bytes: i.bytes, url: URL.createObjectURL(new Blob([i.bytes])), caption: d.captions.get(stem(i.name)) ?? '' }))];
    const rep = await trainer().setDataset(entries.map((e) => ({ name: e.name, bytes: e.bytes.slice(0), caption: e.caption })));
    const bad = new Set(rep.skipped.map((x) => x.name));
    set({ dataset: entries.filter((e) => !bad.has(e.name)), report: rep, nonImages: [...useApp.getState().nonImages, ...d.skipped] });
  };
  const remove = async (keep: (name: string) => boolean) => {
    const ds = useApp.getState().dataset;
    for (const d of ds) if (!keep(d.name)) URL.revokeObjectURL(d.url);
    const left = ds.filter((d) => keep(d.name));
    const rep = await trainer().setDataset(left.map((e) => ({ name: e.name, bytes: e.bytes.slice(0), caption: e.caption })));
    set({ dataset: left, report: rep, ...(left.length ? {} : { nonImages: [] }) });
  };
  const setCaption = (i: number, caption: string) => {
    const ds = dataset.map((d, j) => (j === i ? { ...d, caption } : d));
    set({ dataset: ds });
    void trainer().setCaption(ds[i]!.name, caption);
  };
  // The bucket each image will train in, with the current settings.
  const { resolution, bucketStep, minBucket, maxBucket, maxAspect, enableBuckets } = useApp((st) => st.config);
  const buckets = useMemo(() => {
    const m = new Map<string, number>();
    let grid: Bucket[] = [];
    try {
      grid = enableBuckets ? makeBuckets({ resolution, step: bucketStep, min: Math.min(minBucket, resolution), max: Math.max(maxBucket, resolution), maxAspect }) : [{ width: resolution, height: resolution }];
    } catch {
      return ''; // settings mid-edit; the settings form shows the error
    }
    for (const i of report?.images ?? []) {
      const b = assignBucket(i.width, i.height, grid);
      const k = `${b.width}x${b.height}`;
      m.set(k, (m.get(k) ?? 0) + 1);
    }
    return [...m].map(([b, n]) => `${b}: ${n}`).join(', ');
  }, [report, resolution, bucketStep, minBucket, maxBucket, maxAspect, enableBuckets]);
  const skipped = [...nonImages, ...(report?.skipped ?? [])];
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
        No images at hand? <button onClick={addSamples} disabled={samples.busy}>Use the sample photos</button> (public-domain pictures from scikit-image, with captions)
        {samples.busy && <span role="status"> Fetching…</span>}
        {samples.error && <span role="alert" className="error"> {samples.error}</span>}
      </p>
      <p data-testid="dataset-count">
        {dataset.length} {dataset.length === 1 ? 'image' : 'images'}{skipped.length ? `, ${skipped.length} skipped` : ''}{buckets ? ` — buckets: ${buckets}` : ''}
        {dataset.length > 0 && <button className="link" onClick={() => remove(() => false)}>Clear all</button>}
      </p>
      {skipped.length > 0 && (
        <ul className="skipped" data-testid="skipped">
          {skipped.map((k) => <li key={k.name}>{k.name}: {k.reason}</li>)}
        </ul>
      )}
      <div className="grid">
        {dataset.map((d, i) => (
          <figure key={d.name}>
            <img src={d.url} alt={d.name} />
            <figcaption>
              <input aria-label={`caption of ${d.name}`} value={d.caption} onChange={(e) => setCaption(i, e.target.value)} />
              <button className="remove" aria-label={`remove ${d.name}`} title="Remove from the dataset" onClick={() => remove((n) => n !== d.name)}>×</button>
            </figcaption>
          </figure>
        ))}
      </div>
    </section>
  );
}
