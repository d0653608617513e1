// Small shared pieces: accessible tabs, data loading, labels, states.
import { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, Metric } from './api';

/** A tab list with roving focus: arrows, Home and End move between tabs. */
export function Tabs({
  tabs,
  active,
  onSelect,
  label,
}: {
  tabs: [string, string][];
  active: string;
  onSelect: (key: string) => void;
  label: string;
}) {
  const refs = useRef<(HTMLButtonElement | null)[]>([]);
  const onKey = (e: KeyboardEvent, i: number) => {
    let next = -1;
    if (e.key === 'ArrowRight') next = (i + 1) % tabs.length;
    else if (e.key === 'ArrowLeft') next = (i - 1 + tabs.length) % tabs.length;
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = tabs.length - 1;
    if (next < 0) return;
    e.preventDefault();
    onSelect(tabs[next][0]);
    refs.current[next]?.focus();
  };
  return (
    <div class="tabs" role="tablist" aria-label={label}>
      {tabs.map(([key, text], i) => (
        <button
          type="button"
          role="tab"
          ref={(el) => {
            refs.current[i] = el;
          }}
          aria-selected={key === active}
          tabIndex={key === active ? 0 : -1}
          class={key === active ? 'tab active' : 'tab'}
          onClick={() => onSelect(key)}
          onKeyDown={(e) => onKey(e, i)}
          data-tab={key}
        >
          {text}
        </button>
      ))}
    </div>
  );
}

export interface Loaded<T> {
  data: T | null;
  error: ApiError | null;
  loading: boolean;
  reload: () => void;
}

/** Loads one API endpoint when the component mounts (and on reload). */
export function useApi<T>(endpoint: string, params: Record<string, string> = {}): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const [n, setN] = useState(0);
  const key = endpoint + JSON.stringify(params);
  useEffect(() => {
    const ctl = new AbortController();
    setLoading(true);
    api<T>(endpoint, params, { signal: ctl.signal })
      .then((r) => {
        setData(r.data);
        setError(null);
      })
      .catch((e) => {
        if ((e as Error).name !== 'AbortError') setError(e instanceof ApiError ? e : new ApiError(String(e), 'error', 0));
      })
      .finally(() => {
        if (!ctl.signal.aborted) setLoading(false);
      });
    return () => ctl.abort();
  }, [key, n]);
  const reload = useCallback(() => setN((x) => x + 1), []);
  return { data, error, loading, reload };
}

/** Loading, error or the content. */
export function Loader<T>({ state, children }: { state: Loaded<T>; children: (data: T) => ComponentChildren }) {
  if (state.error)
    return (
      <div class="alert error" role="alert">
        <strong>Error loading data:</strong> {state.error.message}
      </div>
    );
  if (state.data === null) return <p class="muted">Loading…</p>;
  return <>{children(state.data)}</>;
}

export function Labels({ labels, hideName = false }: { labels: Metric; hideName?: boolean }) {
  const entries = Object.entries(labels).filter(([k]) => !(hideName && k === '__name__'));
  if (!entries.length) return <span class="muted">none</span>;
  return (
    <span class="labels">
      {entries.map(([k, v]) => (
        <span class="label" title={`${k}="${v}"`}>
          <span class="k">{k}</span>=<span class="v">{v}</span>
        </span>
      ))}
    </span>
  );
}

export function Empty({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty-state" data-testid="empty-state">
      <strong>{title}</strong>
      {children && <div>{children}</div>}
    </div>
  );
}

export function Health({ health }: { health: string }) {
  const cls =
    health === 'up' || health === 'ok'
      ? 'ok'
      : health === 'down' || health === 'err' || health === 'failing' || health === 'broken'
        ? 'bad'
        : 'unknown';
  const text = health === 'up' ? 'UP' : health === 'down' ? 'DOWN' : health.toUpperCase();
  return <span class={`badge ${cls}`}>{text}</span>;
}

/** A text filter box. */
export function Filter({ value, onInput, placeholder }: { value: string; onInput: (v: string) => void; placeholder: string }) {
  return (
    <input
      type="search"
      class="filter"
      aria-label={placeholder}
      placeholder={placeholder}
      value={value}
      onInput={(e) => onInput((e.target as HTMLInputElement).value)}
    />
  );
}
