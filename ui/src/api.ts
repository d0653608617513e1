// Talking to Ember's Prometheus-compatible HTTP API.

/** The route prefix, without a trailing slash ("" at the root). */
export const PREFIX: string = (() => {
  const base = document.querySelector('base')?.getAttribute('href') ?? '/';
  return base.replace(/\/+$/, '');
})();

/** An absolute path under the route prefix. */
export function path(p: string): string {
  return PREFIX + p;
}

export interface ApiSuccess<T> {
  data: T;
  warnings: string[];
  infos: string[];
}

export class ApiError extends Error {
  constructor(
    message: string,
    public errorType: string,
    public status: number,
  ) {
    super(message);
  }
}

/** GETs (or POSTs, form-encoded) an /api/v1 endpoint and unwraps the envelope. */
export async function api<T>(
  endpoint: string,
  params: Record<string, string | undefined> = {},
  opts: { method?: 'GET' | 'POST'; signal?: AbortSignal } = {},
): Promise<ApiSuccess<T>> {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) search.set(k, v);
  const method = opts.method ?? 'GET';
  const url = path('/api/v1/' + endpoint) + (method === 'GET' && [...search].length ? '?' + search : '');
  let resp: Response;
  try {
    resp = await fetch(url, {
      method,
      signal: opts.signal,
      headers: method === 'POST' ? { 'Content-Type': 'application/x-www-form-urlencoded' } : {},
      body: method === 'POST' ? search.toString() : undefined,
      cache: 'no-store',
    });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError(`cannot reach the server: ${(e as Error).message}`, 'network', 0);
  }
  const text = await resp.text();
  let body: { status?: string; data?: T; error?: string; errorType?: string; warnings?: string[]; infos?: string[] };
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(`HTTP ${resp.status}: ${text.slice(0, 300) || resp.statusText}`, 'http', resp.status);
  }
  if (body.status !== 'success') {
    throw new ApiError(body.error ?? `HTTP ${resp.status}`, body.errorType ?? 'error', resp.status);
  }
  return { data: body.data as T, warnings: body.warnings ?? [], infos: body.infos ?? [] };
}

export type Metric = Record<string, string>;
export type SamplePair = [number, string];

export interface VectorSample {
  metric: Metric;
  value: SamplePair;
}
export interface MatrixSeries {
  metric: Metric;
  values: SamplePair[];
}

export type QueryData =
  | { resultType: 'vector'; result: VectorSample[] }
  | { resultType: 'matrix'; result: MatrixSeries[] }
  | { resultType: 'scalar'; result: SamplePair }
  | { resultType: 'string'; result: SamplePair };

export interface Target {
  discoveredLabels: Metric;
  labels: Metric;
  scrapePool: string;
  scrapeUrl: string;
  globalUrl: string;
  lastError: string;
  lastScrape: string;
  lastScrapeDuration: number;
  health: 'up' | 'down' | 'unknown';
  scrapeInterval: string;
  scrapeTimeout: string;
}

export interface DroppedTarget {
  discoveredLabels: Metric;
  scrapePool?: string;
}

export interface TargetsData {
  activeTargets: Target[];
  droppedTargets: DroppedTarget[];
  droppedTargetCounts?: Record<string, number>;
}

/** `{__name__="x", a="b"}` as Prometheus prints a series. */
export function formatSeries(m: Metric): string {
  const name = m.__name__ ?? '';
  const labels = Object.entries(m)
    .filter(([k]) => k !== '__name__')
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  if (!labels.length) return name || '{}';
  return `${name}{${labels.join(', ')}}`;
}
