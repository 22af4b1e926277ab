// Streaming line chart on uPlot (raw and smoothed loss with the validation loss and its best step, or learning rate), redrawn in place as points arrive.
// The x axis counts steps: its ticks are whole numbers (listed in data-ticks, since uPlot draws them on a canvas).
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** Tick spacings for a step axis: whole numbers only (1, 2, 5, 10, 20, 50, ...). */
const STEP_INCRS = Array.from({ length: 8 }, (_, e) => [1, 2, 5].map((m) => m * 10 ** e)).flat();

/**
 * One line: `points` draws a marker at each value and joins them across the nulls (a sparse series);
 * `marker` draws the markers alone, larger, without a line (one step marked).
 */
export interface ChartSeries {
  label: string;
  values: (number | null)[];
  color: string;
  points?: boolean;
  marker?: boolean;
}

/** uPlot's options for one series. */
function seriesOptions(s: ChartSeries): uPlot.Series {
  if (s.marker) return { label: s.label, stroke: s.color, width: 0, points: { show: true, size: 12, fill: s.color } };
  if (s.points) return { label: s.label, stroke: s.color, width: 1.5, spanGaps: true, points: { show: true, size: 6, fill: s.color } };
  return { label: s.label, stroke: s.color, width: 1.5 };
}

export interface ChartProps {
  title: string;
  x: number[];
  /** `values` align with `x`; null where a series has no point (the validation loss, every N steps). */
  series: ChartSeries[];
  log?: boolean;
  /** Label the y axis in exponent notation (learning rates). */
  exponent?: boolean;
  testId?: string;
}

export function Chart({ title, x, series, log, exponent, testId }: ChartProps) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (!el.current) return;
    plot.current?.destroy();
    plot.current = new uPlot(
      {
        title,
        width: el.current.clientWidth || 600,
        height: 220,
        scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
        series: [{ label: 'step' }, ...series.map(seriesOptions)],
        axes: [
          {
            label: 'step',
            incrs: STEP_INCRS,
            values: (_u: uPlot, splits: number[]) => {
              if (el.current) el.current.dataset.ticks = splits.join(',');
              return splits.map(String);
            },
          },
          exponent ? { size: 70, values: (_u: uPlot, vals: number[]) => vals.map((v) => v.toExponential(1)) } : {}],
      },
      [x, ...series.map((s) => s.values)],
      el.current,
    );
    return () => plot.current?.destroy();
    // rebuild only when the shape of the chart changes
  }, [title, log, exponent, series.length]);
  useEffect(() => {
    plot.current?.setData([x, ...series.map((s) => s.values)]);
  }, [x, series]);
  return <div className="chart" ref={el} data-testid={testId} data-points={x.length} data-series={series.map((s) => s.label).join('|')} />;
}
