// Streaming line chart on uPlot (raw and smoothed loss, or learning rate), redrawn in place as points arrive.
// The x axis counts steps: its ticks are whole numbers (listed in data-ticks, since uPlot draws them on a canvas).
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** Tick spacings for a step axis: whole numbers only (1, 2, 5, 10, 20, 50, ...). */
const STEP_INCRS = Array.from({ length: 8 }, (_, e) => [1, 2, 5].map((m) => m * 10 ** e)).flat();

export interface ChartProps {
  title: string;
  x: number[];
  series: { label: string; values: number[]; color: string }[];
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
        series: [{ label: 'step' }, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5 }))],
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
  return <div className="chart" ref={el} data-testid={testId} data-points={x.length} />;
}
