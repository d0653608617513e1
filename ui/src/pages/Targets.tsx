// Targets: every active target by scrape pool, with health, labels, the
// last scrape and its error; filtered by health and free text.
import { useState } from 'preact/hooks';
import { Target, TargetsData } from '../api';
import { Empty, Filter, Health, Labels, Loader, useApi } from '../components';
import { ago, formatSeconds } from '../util';

const HEALTHS = ['up', 'down', 'unknown'] as const;

export function matchesText(t: Target, text: string): boolean {
  if (!text) return true;
  const hay = [t.scrapeUrl, t.scrapePool, t.lastError, ...Object.entries(t.labels).map(([k, v]) => `${k}="${v}"`)]
    .join(' ')
    .toLowerCase();
  return text
    .toLowerCase()
    .split(/\s+/)
    .every((w) => hay.includes(w));
}

export function TargetsPage() {
  const state = useApi<TargetsData>('targets', { state: 'active' });
  const [text, setText] = useState('');
  const [shown, setShown] = useState<Set<string>>(new Set(HEALTHS));
  const [collapsed, setCollapsed] = useState<Set<string>>(new Set());
  const toggle = (set: Set<string>, key: string) => {
    const next = new Set(set);
    if (next.has(key)) next.delete(key);
    else next.add(key);
    return next;
  };
  return (
    <main class="page">
      <div class="page-head">
        <h1>Targets</h1>
        <div class="toolbar">
          <fieldset class="health-filter">
            <legend class="sr-only">Show health</legend>
            {HEALTHS.map((h) => (
              <label class="check">
                <input type="checkbox" checked={shown.has(h)} onChange={() => setShown((s) => toggle(s, h))} data-health={h} />
                {h === 'up' ? 'Up' : h === 'down' ? 'Down' : 'Unknown'}
              </label>
            ))}
          </fieldset>
          <Filter value={text} onInput={setText} placeholder="Filter by endpoint or labels" />
          <button type="button" class="btn" onClick={state.reload}>
            Refresh
          </button>
        </div>
      </div>
      <Loader state={state}>
        {(data) => {
          if (!data.activeTargets.length)
            return (
              <Empty title="No targets">
                No scrape targets are configured. Add <code>scrape_configs</code> to the configuration file.
              </Empty>
            );
          const pools = new Map<string, Target[]>();
          for (const t of data.activeTargets) {
            if (!pools.has(t.scrapePool)) pools.set(t.scrapePool, []);
            pools.get(t.scrapePool)!.push(t);
          }
          const sections = [...pools.entries()]
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([pool, all]) => [pool, all, all.filter((t) => shown.has(t.health) && matchesText(t, text))] as const)
            .filter(([, , visible]) => visible.length > 0);
          if (!sections.length) return <Empty title="No targets match the filter" />;
          return sections.map(([pool, all, visible]) => {
            const up = all.filter((t) => t.health === 'up').length;
            const open = !collapsed.has(pool);
            return (
              <section class="pool" data-testid="pool" data-pool={pool}>
                <h2>
                  <button
                    type="button"
                    class="pool-toggle"
                    aria-expanded={open}
                    onClick={() => setCollapsed((c) => toggle(c, pool))}
                  >
                    <span class="chev" aria-hidden="true">{open ? '▾' : '▸'}</span>
                    {pool}
                  </button>
                  <span class={`count ${up === all.length ? 'ok' : 'bad'}`}>
                    {up}/{all.length} up
                  </span>
                </h2>
                {open && (
                  <div class="table-wrap">
                    <table class="data targets">
                      <thead>
                        <tr>
                          <th>Endpoint</th>
                          <th>State</th>
                          <th>Labels</th>
                          <th>Last scrape</th>
                          <th>Duration</th>
                          <th>Error</th>
                        </tr>
                      </thead>
                      <tbody>
                        {visible.map((t) => (
                          <tr data-testid="target" data-health={t.health}>
                            <td class="endpoint">
                              <a href={t.scrapeUrl} rel="noreferrer">
                                {t.scrapeUrl}
                              </a>
                            </td>
                            <td>
                              <Health health={t.health} />
                            </td>
                            <td>
                              <Labels labels={t.labels} />
                            </td>
                            <td class="nowrap" title={t.lastScrape} data-label="Last scrape">
                              {ago(t.lastScrape)}
                            </td>
                            <td class="nowrap num" data-label="Duration">{t.lastScrapeDuration ? formatSeconds(t.lastScrapeDuration) : '–'}</td>
                            <td class="error-cell">{t.lastError ? <span class="err">{t.lastError}</span> : ''}</td>
                          </tr>
                        ))}
                      </tbody>
                    </table>
                  </div>
                )}
              </section>
            );
          });
        }}
      </Loader>
    </main>
  );
}
