// The query page (`/graph`): several panels, each with an expression,
// Table / Graph / Explain tabs and time controls. The URL holds the state in
// Prometheus's scheme (`g0.expr`, `g0.tab`, `g0.range_input`, ...), so links
// and alert generator URLs open the same view.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, formatSeries, MatrixSeries, QueryData } from '../api';
import { createEditor, EditorHandle } from '../editor';
import { Chart, formatValue } from '../chart';
import { defaultStep, formatDuration, formatTime, parseDuration, parseTime } from '../util';
import { Tabs } from '../components';

export type Tab = 'graph' | 'table' | 'explain';

export interface PanelState {
  id: number;
  expr: string;
  tab: Tab;
  rangeMs: number;
  endMs: number | null; // null: now
  stepS: number | null; // null: automatic
  stacked: boolean;
}

const DEFAULT_RANGE = 3600_000;
const LAST_KEY = 'ember.query.last';
let nextId = 0;

function newPanel(expr = ''): PanelState {
  return { id: nextId++, expr, tab: 'table', rangeMs: DEFAULT_RANGE, endMs: null, stepS: null, stacked: false };
}

function parseTab(v: string | null): Tab {
  // Prometheus 2 writes 0 (graph) and 1 (table); Prometheus 3 writes names.
  if (v === '0' || v === 'graph') return 'graph';
  if (v === 'explain') return 'explain';
  return 'table';
}

export function panelsFromSearch(search: string): PanelState[] {
  const q = new URLSearchParams(search);
  const out: PanelState[] = [];
  for (let i = 0; q.has(`g${i}.expr`) || q.has(`g${i}.tab`); i++) {
    const p = newPanel(q.get(`g${i}.expr`) ?? '');
    p.tab = parseTab(q.get(`g${i}.tab`));
    p.rangeMs = parseDuration(q.get(`g${i}.range_input`) ?? '') ?? DEFAULT_RANGE;
    const end = q.get(`g${i}.end_input`) ?? q.get(`g${i}.moment_input`);
    p.endMs = end ? parseTime(end) : null;
    const step = parseFloat(q.get(`g${i}.step_input`) ?? '');
    p.stepS = Number.isFinite(step) && step > 0 ? step : null;
    p.stacked = q.get(`g${i}.stacked`) === '1';
    out.push(p);
  }
  return out.length ? out : [newPanel()];
}

export function panelsToSearch(panels: PanelState[]): string {
  const q = new URLSearchParams();
  panels.forEach((p, i) => {
    q.set(`g${i}.expr`, p.expr);
    q.set(`g${i}.tab`, p.tab === 'graph' ? '0' : p.tab === 'table' ? '1' : 'explain');
    q.set(`g${i}.stacked`, p.stacked ? '1' : '0');
    q.set(`g${i}.range_input`, formatDuration(p.rangeMs));
    if (p.endMs !== null) {
      q.set(`g${i}.end_input`, formatTime(p.endMs));
      q.set(`g${i}.moment_input`, formatTime(p.endMs));
    }
    if (p.stepS !== null) q.set(`g${i}.step_input`, String(p.stepS));
  });
  return '?' + q.toString();
}

export function QueryPage() {
  // A bare /graph (the navigation link) brings back this tab's last queries.
  const [panels, setPanels] = useState(() =>
    panelsFromSearch(/[?&]g0\./.test(location.search) ? location.search : (sessionStorage.getItem(LAST_KEY) ?? '')),
  );
  useEffect(() => {
    const search = panelsToSearch(panels);
    const url = location.pathname + search;
    if (url !== location.pathname + location.search) history.replaceState(null, '', url);
    sessionStorage.setItem(LAST_KEY, search);
  }, [panels]);
  const update = (id: number, change: Partial<PanelState>) =>
    setPanels((ps) => ps.map((p) => (p.id === id ? { ...p, ...change } : p)));
  return (
    <main class="page query-page">
      <h1 class="sr-only">Query</h1>
      {panels.map((p, i) => (
        <Panel
          key={p.id}
          index={i}
          state={p}
          onChange={(c) => update(p.id, c)}
          onRemove={panels.length > 1 ? () => setPanels((ps) => ps.filter((x) => x.id !== p.id)) : undefined}
        />
      ))}
      <button type="button" class="btn" onClick={() => setPanels((ps) => [...ps, newPanel()])}>
        + Add query
      </button>
    </main>
  );
}

interface Result {
  data: QueryData;
  warnings: string[];
  infos: string[];
  tookMs: number;
  // The range actually queried (graph).
  startMs: number;
  endMs: number;
  stepMs: number;
}

interface ExplainData {
  plan: string;
  analyzed: boolean;
}

function Panel({
  index,
  state,
  onChange,
  onRemove,
}: {
  index: number;
  state: PanelState;
  onChange: (c: Partial<PanelState>) => void;
  onRemove?: () => void;
}) {
  const editorBox = useRef<HTMLDivElement>(null);
  const editor = useRef<EditorHandle | null>(null);
  const exprRef = useRef(state.expr);
  exprRef.current = state.expr;
  const [runs, setRuns] = useState(0); // bumped by Execute
  const [result, setResult] = useState<Result | null>(null);
  const [explain, setExplain] = useState<{ data: ExplainData; warnings: string[] } | null>(null);
  const [analyze, setAnalyze] = useState(false);
  const [explainRange, setExplainRange] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(false);
  const run = () => setRuns((n) => n + 1);

  useEffect(() => {
    editor.current = createEditor(
      editorBox.current!,
      state.expr,
      (v) => onChangeRef.current({ expr: v }),
      () => setRuns((n) => n + 1),
      `Expression ${index + 1}`,
    );
    if (index === 0) editor.current.view.focus();
    return () => editor.current?.view.destroy();
  }, []);
  const onChangeRef = useRef(onChange);
  onChangeRef.current = onChange;

  // Run on Execute, on tab changes and on time-control changes, once an
  // expression has been run (or came with the URL).
  useEffect(() => {
    if (state.expr.trim() && runs === 0) run();
  }, []);
  const { tab, rangeMs, endMs, stepS } = state;
  useEffect(() => {
    if (runs === 0) return;
    const expr = exprRef.current.trim();
    if (!expr) {
      setResult(null);
      setExplain(null);
      setError(null);
      return;
    }
    const ctl = new AbortController();
    const end = endMs ?? Date.now();
    const start = end - rangeMs;
    const stepMs = stepS !== null ? stepS * 1000 : defaultStep(rangeMs);
    const t0 = performance.now();
    setLoading(true);
    setError(null);
    let req: Promise<void>;
    if (tab === 'explain') {
      const params: Record<string, string> = explainRange
          ? { query: expr, start: String(start / 1000), end: String(end / 1000), step: String(stepMs / 1000) }
          : { query: expr, time: String(end / 1000) };
      if (analyze) params.analyze = 'true';
      req = api<ExplainData>('explain', params, { signal: ctl.signal }).then((r) =>
        setExplain({ data: r.data, warnings: r.warnings }),
      );
    } else {
      const params: Record<string, string> =
        tab === 'graph'
          ? { query: expr, start: String(start / 1000), end: String(end / 1000), step: String(stepMs / 1000) }
          : { query: expr, time: String(end / 1000) };
      req = api<QueryData>(tab === 'graph' ? 'query_range' : 'query', params, {
        method: 'POST',
        signal: ctl.signal,
      }).then((r) =>
        setResult({
          data: r.data,
          warnings: r.warnings,
          infos: r.infos,
          tookMs: performance.now() - t0,
          startMs: start,
          endMs: end,
          stepMs,
        }),
      );
    }
    req
      .catch((e) => {
        if ((e as Error).name === 'AbortError') return;
        setError(e instanceof ApiError ? e : new ApiError(String(e), 'error', 0));
        if (tab === 'explain') setExplain(null);
        else setResult(null);
      })
      .finally(() => {
        if (!ctl.signal.aborted) setLoading(false);
      });
    return () => ctl.abort();
  }, [runs, tab, rangeMs, endMs, stepS, analyze, explainRange]);

  const autoStep = defaultStep(rangeMs) / 1000;
  return (
    <section class="panel" aria-label={`Query ${index + 1}`} data-testid="panel">
      <div class="expr-row">
        <div class="editor" ref={editorBox} />
        <button type="button" class="btn primary" onClick={run} disabled={loading} data-testid="execute">
          {loading ? 'Running…' : 'Execute'}
        </button>
        {onRemove && (
          <button type="button" class="btn icon" onClick={onRemove} aria-label={`Remove query ${index + 1}`} title="Remove query">
            ×
          </button>
        )}
      </div>
      <Tabs
        label={`Result view ${index + 1}`}
        tabs={[
          ['table', 'Table'],
          ['graph', 'Graph'],
          ['explain', 'Explain'],
        ]}
        active={tab}
        onSelect={(t) => {
          onChange({ tab: t as Tab });
          if (state.expr.trim()) run();
        }}
      />
      <div class="tab-body" role="tabpanel" aria-label={tab}>
        <div class="controls">
          {(tab === 'graph' || (tab === 'explain' && explainRange)) && (
            <RangeInput value={rangeMs} onChange={(v) => onChange({ rangeMs: v })} />
          )}
          <EndInput value={endMs} rangeMs={tab === 'graph' ? rangeMs : 60_000} label={tab === 'graph' ? 'End' : 'Evaluation time'} onChange={(v) => onChange({ endMs: v })} />
          {tab === 'graph' && (
            <>
              <label class="field">
                <span>Resolution (s)</span>
                <input
                  type="number"
                  min="0.001"
                  step="any"
                  class="step-input"
                  placeholder={String(autoStep)}
                  value={stepS ?? ''}
                  onChange={(e) => {
                    const v = parseFloat((e.target as HTMLInputElement).value);
                    onChange({ stepS: Number.isFinite(v) && v > 0 ? v : null });
                  }}
                />
              </label>
              <label class="check">
                <input type="checkbox" checked={state.stacked} onChange={(e) => onChange({ stacked: (e.target as HTMLInputElement).checked })} />
                Stacked
              </label>
            </>
          )}
          {tab === 'explain' && (
            <label class="check">
              <input type="checkbox" checked={explainRange} onChange={(e) => setExplainRange((e.target as HTMLInputElement).checked)} />
              Range query
            </label>
          )}
          {tab === 'explain' && (
            <label class="check">
              <input type="checkbox" checked={analyze} onChange={(e) => setAnalyze((e.target as HTMLInputElement).checked)} />
              Analyze (runs the query, shows rows and time per operator)
            </label>
          )}
        </div>
        {error && (
          <div class="alert error" role="alert">
            <strong>Error{error.errorType && error.errorType !== 'error' ? ` (${error.errorType})` : ''}:</strong> {error.message}
          </div>
        )}
        {tab !== 'explain' && result && <Messages warnings={result.warnings} infos={result.infos} />}
        {runs === 0 || !state.expr.trim() ? (
          <p class="muted empty">Enter an expression and press Enter or Execute.</p>
        ) : tab === 'explain' ? (
          explain && (
            <>
              <Messages warnings={explain.warnings} infos={[]} />
              <p class="muted small">
                {explain.data.analyzed ? 'Plan after running the query, with per-operator metrics.' : 'Logical and physical plan (the query was not run).'}
              </p>
              <pre class="plan" data-testid="explain-plan">{explain.data.plan}</pre>
            </>
          )
        ) : (
          result &&
          !error && (
            <>
              <ResultStats result={result} />
              {tab === 'graph' ? <GraphView result={result} stacked={state.stacked} /> : <TableView data={result.data} />}
            </>
          )
        )}
      </div>
    </section>
  );
}

function Messages({ warnings, infos }: { warnings: string[]; infos: string[] }) {
  return (
    <>
      {warnings.map((w) => (
        <div class="alert warning" role="status">
          <strong>Warning:</strong> {w}
        </div>
      ))}
      {infos.map((w) => (
        <div class="alert info" role="status">
          <strong>Info:</strong> {w}
        </div>
      ))}
    </>
  );
}

function ResultStats({ result }: { result: Result }) {
  const d = result.data;
  const n = d.resultType === 'vector' || d.resultType === 'matrix' ? d.result.length : 1;
  return (
    <p class="muted small" data-testid="result-stats">
      Load time: {Math.round(result.tookMs)}ms · Result series: {n}
      {d.resultType === 'matrix' && result.data === d ? ` · Resolution: ${result.stepMs / 1000}s` : ''}
    </p>
  );
}

function GraphView({ result, stacked }: { result: Result; stacked: boolean }) {
  const d = result.data;
  if (d.resultType !== 'matrix') {
    return <p class="alert info">The Graph tab needs a range query result; this expression returned a {d.resultType}.</p>;
  }
  const withPoints = d.result.filter((s) => s.values.length > 0);
  if (!withPoints.length) {
    return (
      <div class="no-data" data-testid="no-data">
        <strong>No data</strong>
        <span>The query returned no series with samples between {formatTime(result.startMs)} and {formatTime(result.endMs)} UTC.</span>
      </div>
    );
  }
  return <Chart series={withPoints as MatrixSeries[]} startMs={result.startMs} endMs={result.endMs} stepMs={result.stepMs} stacked={stacked} />;
}

const MAX_ROWS = 10_000;

function TableView({ data }: { data: QueryData }) {
  if (data.resultType === 'scalar' || data.resultType === 'string') {
    return (
      <table class="data result-table" data-testid="result-table">
        <tbody>
          <tr>
            <td>{data.resultType}</td>
            <td class="num">{data.result[1]}</td>
          </tr>
        </tbody>
      </table>
    );
  }
  if (!data.result.length) return <p class="no-data" data-testid="no-data"><strong>Empty query result</strong></p>;
  const rows = data.result.slice(0, MAX_ROWS);
  return (
    <>
      {data.result.length > MAX_ROWS && (
        <div class="alert warning">Showing the first {MAX_ROWS} of {data.result.length} series.</div>
      )}
      <table class="data result-table" data-testid="result-table">
        <thead>
          <tr>
            <th>Series</th>
            <th class="num">Value</th>
          </tr>
        </thead>
        <tbody>
          {data.resultType === 'vector'
            ? data.result.map((s) => (
                <tr>
                  <td class="series">{formatSeries(s.metric)}</td>
                  <td class="num">{s.value[1]}</td>
                </tr>
              ))
            : rows.map((s) => (
                <tr>
                  <td class="series">{formatSeries((s as MatrixSeries).metric)}</td>
                  <td class="num">
                    {(s as MatrixSeries).values.map(([t, v]) => (
                      <div>
                        {v} @{t}
                      </div>
                    ))}
                  </td>
                </tr>
              ))}
        </tbody>
      </table>
    </>
  );
}

const STEPS = [
  '1s', '10s', '1m', '5m', '15m', '30m', '1h', '2h', '6h', '12h', '1d', '2d', '1w', '2w', '4w', '8w', '1y',
].map((s) => parseDuration(s)!);

function RangeInput({ value, onChange }: { value: number; onChange: (v: number) => void }) {
  const [text, setText] = useState(formatDuration(value));
  useEffect(() => setText(formatDuration(value)), [value]);
  const shift = (dir: 1 | -1) => {
    const next = dir > 0 ? STEPS.find((s) => s > value) : [...STEPS].reverse().find((s) => s < value);
    if (next) onChange(next);
  };
  return (
    <div class="field">
      <span>Range</span>
      <div class="group">
        <button type="button" class="btn small" aria-label="Shorter range" onClick={() => shift(-1)}>
          −
        </button>
        <input
          aria-label="Range"
          class="range-input"
          value={text}
          onInput={(e) => setText((e.target as HTMLInputElement).value)}
          onChange={() => {
            const v = parseDuration(text);
            if (v) onChange(v);
            else setText(formatDuration(value));
          }}
        />
        <button type="button" class="btn small" aria-label="Longer range" onClick={() => shift(1)}>
          +
        </button>
      </div>
    </div>
  );
}

function EndInput({
  value,
  rangeMs,
  label,
  onChange,
}: {
  value: number | null;
  rangeMs: number;
  label: string;
  onChange: (v: number | null) => void;
}) {
  const [text, setText] = useState(value === null ? '' : formatTime(value));
  useEffect(() => setText(value === null ? '' : formatTime(value)), [value]);
  const move = (dir: 1 | -1) => {
    const base = value ?? Date.now();
    const next = base + (dir * rangeMs) / 2;
    onChange(next >= Date.now() ? null : Math.round(next));
  };
  return (
    <div class="field">
      <span>{label} (UTC)</span>
      <div class="group">
        <button type="button" class="btn small" aria-label="Earlier" onClick={() => move(-1)}>
          ‹
        </button>
        <input
          aria-label={label}
          class="end-input"
          placeholder="now"
          value={text}
          onInput={(e) => setText((e.target as HTMLInputElement).value)}
          onChange={() => {
            if (!text.trim()) return onChange(null);
            const v = parseTime(text);
            if (v !== null) onChange(v);
            else setText(value === null ? '' : formatTime(value));
          }}
        />
        <button type="button" class="btn small" aria-label="Later" onClick={() => move(1)}>
          ›
        </button>
        {value !== null && (
          <button type="button" class="btn small" onClick={() => onChange(null)}>
            Now
          </button>
        )}
      </div>
    </div>
  );
}

export { formatValue };
