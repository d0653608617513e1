// Service discovery: for each target, the labels discovery produced and
// what relabeling made of them; targets relabeling dropped.
import { useState } from 'preact/hooks';
import { DroppedTarget, Target, TargetsData } from '../api';
import { Empty, Filter, Labels, Loader, useApi } from '../components';

interface Pool {
  active: Target[];
  dropped: DroppedTarget[];
}

function labelText(m: Record<string, string>) {
  return Object.entries(m)
    .map(([k, v]) => `${k}="${v}"`)
    .join(' ')
    .toLowerCase();
}

export function ServiceDiscoveryPage() {
  const state = useApi<TargetsData>('targets', { state: 'any' });
  const [text, setText] = useState('');
  const [showDropped, setShowDropped] = useState(true);
  return (
    <main class="page">
      <div class="page-head">
        <h1>Service discovery</h1>
        <div class="toolbar">
          <label class="check">
            <input type="checkbox" checked={showDropped} onChange={(e) => setShowDropped((e.target as HTMLInputElement).checked)} />
            Show dropped targets
          </label>
          <Filter value={text} onInput={setText} placeholder="Filter by labels" />
          <button type="button" class="btn" onClick={state.reload}>
            Refresh
          </button>
        </div>
      </div>
      <Loader state={state}>
        {(data) => {
          const pools = new Map<string, Pool>();
          const pool = (name: string) => {
            if (!pools.has(name)) pools.set(name, { active: [], dropped: [] });
            return pools.get(name)!;
          };
          for (const t of data.activeTargets) pool(t.scrapePool).active.push(t);
          for (const t of data.droppedTargets) pool(t.scrapePool ?? t.discoveredLabels.job ?? '(unknown)').dropped.push(t);
          if (!pools.size)
            return <Empty title="Nothing discovered">No scrape configuration has produced targets yet.</Empty>;
          const q = text.toLowerCase();
          return (
            <>
              <nav class="pool-index" aria-label="Scrape pools">
                {[...pools.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, p]) => (
                  <a href={`#sd-${encodeURIComponent(name)}`}>
                    {name} <span class="muted">({p.active.length} active, {p.dropped.length} dropped)</span>
                  </a>
                ))}
              </nav>
              {[...pools.entries()]
                .sort(([a], [b]) => a.localeCompare(b))
                .map(([name, p]) => {
                  const rows: [Record<string, string>, Record<string, string> | null][] = [
                    ...p.active.map((t) => [t.discoveredLabels, t.labels] as [Record<string, string>, Record<string, string>]),
                    ...(showDropped ? p.dropped.map((t) => [t.discoveredLabels, null] as [Record<string, string>, null]) : []),
                  ].filter(([d, l]) => !q || labelText(d).includes(q) || (l && labelText(l).includes(q)));
                  return (
                    <section class="pool" id={`sd-${encodeURIComponent(name)}`} data-testid="sd-pool">
                      <h2>
                        {name}{' '}
                        <span class="muted small">
                          {p.active.length} active, {p.dropped.length} dropped
                        </span>
                      </h2>
                      {rows.length ? (
                        <div class="table-wrap">
                          <table class="data sd">
                            <thead>
                              <tr>
                                <th>Discovered labels</th>
                                <th>Target labels (after relabeling)</th>
                              </tr>
                            </thead>
                            <tbody>
                              {rows.map(([d, l]) => (
                                <tr class={l ? '' : 'dropped'}>
                                  <td>
                                    <Labels labels={d} />
                                  </td>
                                  <td>{l ? <Labels labels={l} /> : <span class="badge bad">Dropped</span>}</td>
                                </tr>
                              ))}
                            </tbody>
                          </table>
                        </div>
                      ) : (
                        <p class="muted">No targets match.</p>
                      )}
                    </section>
                  );
                })}
            </>
          );
        }}
      </Loader>
    </main>
  );
}
