// Rules and Alerts, from /api/v1/rules (Prometheus's shapes); the Alerts
// page also shows the built-in Alertmanager's groups and delivery state
// (/api/v1/notifications) and silences (/api/v2/silences).
import { useCallback, useEffect, useState } from 'preact/hooks';
import { Metric, path } from '../api';
import { Empty, Health, Labels, Loader, useApi } from '../components';
import { ago, formatSeconds } from '../util';

interface Alert {
  labels: Metric;
  annotations: Metric;
  state: 'inactive' | 'pending' | 'firing';
  activeAt?: string;
  value?: string;
}

interface Rule {
  type: 'alerting' | 'recording';
  name: string;
  query: string;
  duration?: number;
  labels?: Metric;
  annotations?: Metric;
  alerts?: Alert[];
  health: string;
  lastError?: string;
  evaluationTime?: number;
  lastEvaluation?: string;
  state?: 'inactive' | 'pending' | 'firing';
}

interface Group {
  name: string;
  file: string;
  interval: number;
  rules: Rule[];
  evaluationTime?: number;
  lastEvaluation?: string;
}

function queryLink(expr: string) {
  return path('/graph') + '?' + new URLSearchParams({ 'g0.expr': expr, 'g0.tab': '1' });
}

function Expr({ expr }: { expr: string }) {
  return (
    <a class="expr" href={queryLink(expr)} title="Open in the query page">
      <code>{expr}</code>
    </a>
  );
}

export function RulesPage() {
  const state = useApi<{ groups: Group[] }>('rules');
  return (
    <main class="page">
      <div class="page-head">
        <h1>Rules</h1>
        <div class="toolbar">
          <button type="button" class="btn" onClick={state.reload}>
            Refresh
          </button>
        </div>
      </div>
      <Loader state={state}>
        {(data) =>
          !data.groups.length ? (
            <Empty title="No rule groups">
              No recording or alerting rules are loaded. List rule files under <code>rule_files</code> in the configuration
              file.
            </Empty>
          ) : (
            data.groups.map((g) => (
              <section class="pool" data-testid="rule-group">
                <h2>
                  {g.name} <span class="muted small">{g.file} · every {g.interval}s{g.lastEvaluation ? ` · evaluated ${ago(g.lastEvaluation)}` : ''}</span>
                </h2>
                <div class="table-wrap">
                  <table class="data">
                    <thead>
                      <tr>
                        <th>Rule</th>
                        <th>Health</th>
                        <th>Last evaluation</th>
                        <th>Evaluation time</th>
                      </tr>
                    </thead>
                    <tbody>
                      {g.rules.map((r) => (
                        <tr>
                          <td>
                            <div>
                              <span class="muted small">{r.type === 'alerting' ? 'alert: ' : 'record: '}</span>
                              <strong>{r.name}</strong>
                            </div>
                            <div>
                              <span class="muted small">expr: </span>
                              <Expr expr={r.query} />
                            </div>
                            {r.labels && Object.keys(r.labels).length > 0 && (
                              <div>
                                <Labels labels={r.labels} />
                              </div>
                            )}
                            {r.lastError && <div class="err">{r.lastError}</div>}
                          </td>
                          <td>
                            <Health health={r.health} />
                          </td>
                          <td class="nowrap">{r.lastEvaluation ? ago(r.lastEvaluation) : 'never'}</td>
                          <td class="nowrap num">{r.evaluationTime !== undefined ? formatSeconds(r.evaluationTime) : '–'}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              </section>
            ))
          )
        }
      </Loader>
    </main>
  );
}

const STATES = ['firing', 'pending', 'inactive'] as const;

export function AlertsPage() {
  const state = useApi<{ groups: Group[] }>('rules', { type: 'alert' });
  const [shown, setShown] = useState<Set<string>>(new Set(STATES));
  return (
    <main class="page">
      <div class="page-head">
        <h1>Alerts</h1>
        <div class="toolbar">
          {STATES.map((s) => (
            <label class="check">
              <input
                type="checkbox"
                checked={shown.has(s)}
                onChange={() =>
                  setShown((cur) => {
                    const n = new Set(cur);
                    if (n.has(s)) n.delete(s);
                    else n.add(s);
                    return n;
                  })
                }
              />
              {s[0].toUpperCase() + s.slice(1)}
            </label>
          ))}
          <button type="button" class="btn" onClick={state.reload}>
            Refresh
          </button>
        </div>
      </div>
      <Loader state={state}>
        {(data) => {
          const rules = data.groups.flatMap((g) => g.rules.filter((r) => r.type === 'alerting').map((r) => ({ g, r })));
          if (!rules.length)
            return (
              <Empty title="No alerting rules">
                Alerts appear here once rule files with alerting rules are loaded (<code>rule_files</code> in the
                configuration).
              </Empty>
            );
          const counts = Object.fromEntries(STATES.map((s) => [s, rules.filter(({ r }) => (r.state ?? 'inactive') === s).length]));
          return (
            <>
              <p class="muted">
                {counts.firing} firing · {counts.pending} pending · {counts.inactive} inactive
              </p>
              {rules
                .filter(({ r }) => shown.has(r.state ?? 'inactive'))
                .map(({ g, r }) => (
                  <details class={`alert-rule ${r.state ?? 'inactive'}`} open={r.state === 'firing'}>
                    <summary>
                      <span class={`badge state-${r.state ?? 'inactive'}`}>{(r.state ?? 'inactive').toUpperCase()}</span>{' '}
                      <strong>{r.name}</strong> <span class="muted small">({r.alerts?.length ?? 0} active) · {g.name}</span>
                    </summary>
                    <div class="rule-body">
                      <div>
                        <span class="muted small">expr: </span>
                        <Expr expr={r.query} />
                      </div>
                      {r.duration ? <div class="muted small">for: {r.duration}s</div> : null}
                      {r.alerts && r.alerts.length > 0 && (
                        <div class="table-wrap">
                          <table class="data">
                            <thead>
                              <tr>
                                <th>Labels</th>
                                <th>State</th>
                                <th>Active since</th>
                                <th>Value</th>
                                <th>Annotations</th>
                              </tr>
                            </thead>
                            <tbody>
                              {r.alerts.map((a) => (
                                <tr>
                                  <td>
                                    <Labels labels={a.labels} />
                                  </td>
                                  <td>
                                    <span class={`badge state-${a.state}`}>{a.state.toUpperCase()}</span>
                                  </td>
                                  <td class="nowrap">{a.activeAt ? ago(a.activeAt) : '–'}</td>
                                  <td class="num">{a.value ?? ''}</td>
                                  <td>
                                    {Object.entries(a.annotations).map(([k, v]) => (
                                      <div>
                                        <span class="muted small">{k}: </span>
                                        {v}
                                      </div>
                                    ))}
                                  </td>
                                </tr>
                              ))}
                            </tbody>
                          </table>
                        </div>
                      )}
                    </div>
                  </details>
                ))}
            </>
          );
        }}
      </Loader>
      <NotificationsSection />
      <SilencesSection />
    </main>
  );
}

interface RoutedAlert {
  labels: Metric;
  annotations: Metric;
  startsAt: string;
  endsAt: string;
  fingerprint: string;
  status: { state: 'active' | 'suppressed' | 'unprocessed'; silencedBy: string[]; inhibitedBy: string[] };
}

interface Integration {
  plugin: string;
  lastAttempt: string | null;
  lastSuccess: string | null;
  lastError: string | null;
  failedAttempts: number;
  lastNotified: string | null;
  notifiedFiring: number;
  notifiedResolved: number;
}

interface NotificationGroup {
  receiver: string;
  groupKey: string;
  labels: Metric;
  groupWait: number;
  groupInterval: number;
  repeatInterval: number;
  nextFlush: string;
  lastFlush: string | null;
  alerts: RoutedAlert[];
  integrations: Integration[];
}

function alertStateLabel(a: RoutedAlert): string {
  if (a.status.silencedBy.length) return 'silenced';
  if (a.status.inhibitedBy.length) return 'inhibited';
  return a.status.state === 'unprocessed' ? 'resolved' : 'active';
}

/** The built-in Alertmanager's aggregation groups and delivery state. */
function NotificationsSection() {
  const state = useApi<{ configured: boolean; groups: NotificationGroup[] }>('notifications');
  return (
    <section class="pool" data-testid="notifications">
      <h2>
        Notifications{' '}
        <button type="button" class="btn small" onClick={state.reload}>
          Refresh
        </button>
      </h2>
      <Loader state={state}>
        {(data) =>
          !data.configured ? (
            <p class="muted">
              Built-in routing is not configured: add a <code>notifications:</code> section (route, receivers) to the
              configuration to deliver alerts through notifier plugins.
            </p>
          ) : !data.groups.length ? (
            <p class="muted">No alert groups: nothing has fired since the last notification.</p>
          ) : (
            <div class="table-wrap">
              <table class="data">
                <thead>
                  <tr>
                    <th>Group</th>
                    <th>Receiver</th>
                    <th>Alerts</th>
                    <th>Delivery</th>
                    <th>Next flush</th>
                  </tr>
                </thead>
                <tbody>
                  {data.groups.map((g) => (
                    <tr data-testid="notification-group">
                      <td>
                        <Labels labels={g.labels} />
                        <div class="muted small">
                          wait {g.groupWait}s · interval {g.groupInterval}s · repeat {g.repeatInterval}s
                        </div>
                      </td>
                      <td>{g.receiver}</td>
                      <td>
                        {g.alerts.map((a) => (
                          <div>
                            <span class={`badge state-${alertStateLabel(a)}`}>{alertStateLabel(a).toUpperCase()}</span>{' '}
                            <Labels labels={a.labels} />
                          </div>
                        ))}
                      </td>
                      <td>
                        {g.integrations.map((i) => (
                          <div>
                            <strong>{i.plugin}</strong>:{' '}
                            {i.lastNotified ? `notified ${ago(i.lastNotified)} (${i.notifiedFiring} firing, ${i.notifiedResolved} resolved)` : 'not notified yet'}
                            {i.lastError && (
                              <div class="err">
                                last error: {i.lastError} ({i.failedAttempts} failed attempts)
                              </div>
                            )}
                          </div>
                        ))}
                      </td>
                      <td class="nowrap">{new Date(g.nextFlush).toLocaleTimeString()}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )
        }
      </Loader>
    </section>
  );
}

interface Silence {
  id: string;
  status: { state: 'active' | 'pending' | 'expired' };
  matchers: { name: string; value: string; isRegex: boolean; isEqual: boolean }[];
  startsAt: string;
  endsAt: string;
  createdBy: string;
  comment: string;
}

function matcherText(m: Silence['matchers'][number]): string {
  const op = m.isRegex ? (m.isEqual ? '=~' : '!~') : m.isEqual ? '=' : '!=';
  return `${m.name}${op}${JSON.stringify(m.value)}`;
}

/** Silences in Alertmanager's v2 API shape; expired ones on request. */
function SilencesSection() {
  const [silences, setSilences] = useState<Silence[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [showExpired, setShowExpired] = useState(false);
  const load = useCallback(() => {
    fetch(path('/api/v2/silences'), { cache: 'no-store' })
      .then(async (r) => {
        if (!r.ok) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
        return r.json() as Promise<Silence[]>;
      })
      .then((s) => {
        setSilences(s);
        setError(null);
      })
      .catch((e) => setError(String((e as Error).message ?? e)));
  }, []);
  useEffect(load, [load]);
  const expire = (id: string) => {
    fetch(path(`/api/v2/silence/${encodeURIComponent(id)}`), { method: 'DELETE' })
      .then(async (r) => {
        if (!r.ok) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
      })
      .catch((e) => setError(String((e as Error).message ?? e)))
      .finally(load);
  };
  const shown = (silences ?? []).filter((s) => showExpired || s.status.state !== 'expired');
  return (
    <section class="pool" data-testid="silences">
      <h2>
        Silences{' '}
        <label class="check small">
          <input type="checkbox" checked={showExpired} onChange={() => setShowExpired((x) => !x)} />
          Show expired
        </label>{' '}
        <button type="button" class="btn small" onClick={load}>
          Refresh
        </button>
      </h2>
      {error && (
        <div class="alert error" role="alert">
          <strong>Error loading silences:</strong> {error}
        </div>
      )}
      {silences === null && !error ? (
        <p class="muted">Loading…</p>
      ) : !shown.length ? (
        <p class="muted">
          No silences. Add one with <code>amtool --alertmanager.url={location.origin + path('')} silence add …</code>
        </p>
      ) : (
        <div class="table-wrap">
          <table class="data">
            <thead>
              <tr>
                <th>Matchers</th>
                <th>State</th>
                <th>Starts</th>
                <th>Ends</th>
                <th>Created by</th>
                <th>Comment</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {shown.map((s) => (
                <tr data-testid="silence">
                  <td>
                    <code>{s.matchers.map(matcherText).join(', ')}</code>
                    <div class="muted small">{s.id}</div>
                  </td>
                  <td>
                    <span class={`badge silence-${s.status.state}`}>{s.status.state.toUpperCase()}</span>
                  </td>
                  <td class="nowrap">{new Date(s.startsAt).toLocaleString()}</td>
                  <td class="nowrap">{new Date(s.endsAt).toLocaleString()}</td>
                  <td>{s.createdBy}</td>
                  <td>{s.comment}</td>
                  <td>
                    {s.status.state !== 'expired' && (
                      <button type="button" class="btn small" onClick={() => expire(s.id)}>
                        Expire
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
