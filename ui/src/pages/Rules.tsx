// Rules and Alerts, from /api/v1/rules (Prometheus's shapes).
import { useState } from 'preact/hooks';
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
    </main>
  );
}
