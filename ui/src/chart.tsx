// The Graph tab's time-series chart (uPlot).
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { MatrixSeries, formatSeries } from './api';
import { formatTime } from './util';

const PALETTE = [
  '#1f77b4', '#e6550d', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf',
  '#bcbd22', '#7f7f7f', '#3182bd', '#fd8d3c', '#31a354', '#ad494a', '#756bb1', '#636363',
];

export function parseValue(v: string): number | null {
  if (v === '+Inf' || v === '-Inf') return null; // cannot be drawn
  const n = parseFloat(v);
  return Number.isFinite(n) ? n : null;
}

/** Number formatting for axes and hover values. */
export function formatValue(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e15 || a < 1e-4)) return v.toExponential(3);
  return String(Math.round(v * 1e6) / 1e6);
}

interface Props {
  series: MatrixSeries[];
  startMs: number;
  endMs: number;
  stepMs: number;
  stacked: boolean;
}

/** Aligns every series on the query's step grid (null where a series has no point). */
function align(series: MatrixSeries[], startMs: number, endMs: number, stepMs: number) {
  const n = Math.floor((endMs - startMs) / stepMs) + 1;
  const xs = new Array<number>(n);
  for (let i = 0; i < n; i++) xs[i] = (startMs + i * stepMs) / 1000;
  const ys = series.map((s) => {
    const col = new Array<number | null>(n).fill(null);
    for (const [t, v] of s.values) {
      const i = Math.round((t * 1000 - startMs) / stepMs);
      if (i >= 0 && i < n) col[i] = parseValue(v);
    }
    return col;
  });
  return { xs, ys };
}

export function Chart({ series, startMs, endMs, stepMs, stacked }: Props) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const { xs, ys } = align(series, startMs, endMs, stepMs);
    let drawn = ys;
    if (stacked) {
      // Each series is drawn on top of the sum of the ones before it.
      const acc = new Array<number>(xs.length).fill(0);
      drawn = ys.map((col) =>
        col.map((v, i) => {
          if (v === null) return null;
          acc[i] += v;
          return acc[i];
        }),
      );
    }
    const opts: uPlot.Options = {
      width: Math.max(el.clientWidth, 200),
      height: 320,
      cursor: { drag: { x: true, y: false }, focus: { prox: 16 } },
      focus: { alpha: 0.35 },
      legend: { live: true },
      scales: { x: { time: true } },
      // UTC, like the End and Evaluation time fields.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      axes: [
        { stroke: '#555', grid: { stroke: '#eee' }, ticks: { stroke: '#ddd' } },
        {
          stroke: '#555',
          grid: { stroke: '#eee' },
          ticks: { stroke: '#ddd' },
          size: 64,
          values: (_u, vals) => vals.map((v) => formatValue(v)),
        },
      ],
      series: [
        { label: 'Time (UTC)', value: (_u, v) => (v == null ? '–' : formatTime(v * 1000)) },
        ...series.map((s, i) => {
          const color = PALETTE[i % PALETTE.length];
          return {
            label: formatSeries(s.metric),
            stroke: color,
            width: 1.5,
            fill: stacked ? color + '40' : undefined,
            points: { show: false },
            spanGaps: false,
            // Hover shows the series' own value, also when stacked.
            value: (_u: uPlot, _v: number | null, _si: number, idx: number | null) =>
              idx === null ? '–' : formatValue(ys[i][idx]),
          } as uPlot.Series;
        }),
      ],
      bands: stacked ? series.slice(1).map((_, i) => ({ series: [i + 2, i + 1] as [number, number] })) : undefined,
    };
    const plot = new uPlot(opts, [xs, ...drawn] as uPlot.AlignedData, el);
    const ro = new ResizeObserver(() => plot.setSize({ width: Math.max(el.clientWidth, 200), height: 320 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [series, startMs, endMs, stepMs, stacked]);
  return <div class="chart" ref={box} data-testid="chart" data-series-count={series.length} />;
}
