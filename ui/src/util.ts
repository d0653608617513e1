// Durations and times as Prometheus's UI writes them.

const UNITS: [string, number][] = [
  ['y', 365 * 24 * 3600 * 1000],
  ['w', 7 * 24 * 3600 * 1000],
  ['d', 24 * 3600 * 1000],
  ['h', 3600 * 1000],
  ['m', 60 * 1000],
  ['s', 1000],
  ['ms', 1],
];

/** Parses `1h30m`, `5m`, `90s`, `250ms`; null when invalid or zero. */
export function parseDuration(s: string): number | null {
  const text = s.trim();
  if (!text) return null;
  const re = /(\d+(?:\.\d+)?)(ms|y|w|d|h|m|s)/gy;
  let total = 0;
  let consumed = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    const unit = UNITS.find(([u]) => u === m![2]);
    if (!unit) return null;
    total += parseFloat(m[1]) * unit[1];
    consumed = re.lastIndex;
  }
  if (consumed !== text.length || total <= 0) return null;
  return total;
}

/** Milliseconds as the largest whole units (`1h30m`, `15s`). */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  let rest = Math.round(ms);
  let out = '';
  for (const [u, size] of UNITS) {
    if (rest >= size) {
      out += Math.floor(rest / size) + u;
      rest %= size;
    }
  }
  return out;
}

/** `2024-05-01 12:34:56` in UTC (what the end-time field shows and takes). */
export function formatTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
}

/** Parses `YYYY-MM-DD HH:MM[:SS]` (UTC), an RFC 3339 time or Unix seconds. */
export function parseTime(s: string): number | null {
  const t = s.trim();
  if (!t) return null;
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(parseFloat(t) * 1000);
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?$/.exec(t);
  if (!m) return null;
  if (m[8] && m[8] !== 'Z') {
    const v = Date.parse(t.replace(' ', 'T'));
    return Number.isNaN(v) ? null : v;
  }
  const ms = m[7] ? Math.round(parseFloat('0.' + m[7]) * 1000) : 0;
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], m[6] ? +m[6] : 0, ms);
}

/** "3.2s ago" style age of an RFC 3339 time. */
export function ago(iso: string, now = Date.now()): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t) || t <= 0 || iso.startsWith('0001-')) return 'never';
  const d = now - t;
  if (d < 0) return 'just now';
  if (d < 1000) return `${d}ms ago`;
  if (d < 60_000) return `${(d / 1000).toFixed(1)}s ago`;
  return `${formatDuration(Math.floor(d / 1000) * 1000)} ago`;
}

/** Seconds as `123ms` / `1.234s`. */
export function formatSeconds(s: number): string {
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)}ms`;
  return `${s.toFixed(3)}s`;
}

/** Step Prometheus's UI picks for a range: about 250 points, at least 1s. */
export function defaultStep(rangeMs: number): number {
  return Math.max(Math.floor(rangeMs / 250 / 1000), 1) * 1000;
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}
