// Status: runtime and build information, WAL replay, plugins (/status),
// TSDB statistics (/tsdb-status), command-line flags (/flags) and the
// loaded configuration (/config).
import { useState } from 'preact/hooks';
import { path } from '../api';
import { Empty, Filter, Health, Loader, useApi } from '../components';
import { onLinkClick } from '../router';
import { ago, formatSeconds, formatTime } from '../util';

export type StatusSection = 'runtime' | 'tsdb' | 'flags' | 'config';

const SECTIONS: [StatusSection, string, string][] = [
  ['runtime', '/status', 'Runtime & build'],
  ['tsdb', '/tsdb-status', 'TSDB'],
  ['flags', '/flags', 'Command-line flags'],
  ['config', '/config', 'Configuration'],
];

export function StatusPage({ section }: { section: StatusSection }) {
  return (
    <main class="page">
      <h1>Status</h1>
      <nav class="subnav" aria-label="Status sections">
        {SECTIONS.map(([key, route, label]) => (
          <a
            href={path(route)}
            class={key === section ? 'active' : ''}
            aria-current={key === section ? 'page' : undefined}
            onClick={(e) => onLinkClick(e, route)}
          >
            {label}
          </a>
        ))}
      </nav>
      {section === 'runtime' && <Runtime />}
      {section === 'tsdb' && <Tsdb />}
      {section === 'flags' && <Flags />}
      {section === 'config' && <Config />}
    </main>
  );
}

function KV({ rows, testid }: { rows: [string, string | number | boolean][]; testid?: string }) {
  return (
    <table class="data kv" data-testid={testid}>
      <tbody>
        {rows.map(([k, v]) => (
          <tr>
            <th scope="row">{k}</th>
            <td>{String(v)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

interface RuntimeInfo {
  startTime: string;
  CWD: string;
  hostname: string;
  serverTime: string;
  reloadConfigSuccess: boolean;
  lastConfigTime: string;
  goroutineCount: number;
  GOMAXPROCS: number;
  storageRetention: string;
}

interface BuildInfo {
  version: string;
  emberVersion?: string;
  revision: string;
  goVersion: string;
}

function Runtime() {
  const rt = useApi<RuntimeInfo>('status/runtimeinfo');
  const build = useApi<BuildInfo>('status/buildinfo');
  const wal = useApi<{ min: number; max: number; current: number }>('status/walreplay');
  return (
    <div class="status-grid">
      <section class="card">
        <h2>Runtime information</h2>
        <Loader state={rt}>
          {(d) => (
            <KV
              testid="runtime-info"
              rows={[
                ['Start time', d.startTime],
                ['Working directory', d.CWD],
                ['Hostname', d.hostname],
                ['Configuration reload', d.reloadConfigSuccess ? 'Successful' : 'Unsuccessful'],
                ['Last successful configuration reload', d.lastConfigTime],
                ['Live tasks', d.goroutineCount],
                ['Worker threads', d.GOMAXPROCS],
                ['Storage retention', d.storageRetention],
              ]}
            />
          )}
        </Loader>
      </section>
      <section class="card">
        <h2>Build information</h2>
        <Loader state={build}>
          {(d) => (
            <KV
              testid="build-info"
              rows={[
                ['Ember version', d.emberVersion ?? d.version],
                ['Prometheus API version', d.version],
                ['Revision', d.revision],
                ['Rust compiler', d.goVersion],
              ]}
            />
          )}
        </Loader>
      </section>
      <section class="card">
        <h2>WAL replay</h2>
        <Loader state={wal}>
          {(d) => (
            <>
              <KV
                rows={[
                  ['State', d.max === 0 || d.current >= d.max ? 'Done' : 'Replaying'],
                  ['Segments replayed', `${d.current} of ${d.max}`],
                ]}
              />
              <progress max={Math.max(d.max, 1)} value={d.max === 0 ? 1 : d.current} aria-label="WAL replay progress" />
            </>
          )}
        </Loader>
      </section>
      <Plugins />
    </div>
  );
}

interface PluginStatus {
  name: string;
  file: string;
  version: string;
  world: string | null;
  description: string;
  health: string;
  lastError: string | null;
  lastErrorReason: string | null;
  lastCall: string | null;
  loadError: string | null;
  calls: number;
  errors: number;
  meanCallSeconds: number | null;
}

/** The WebAssembly plugins in the plugin directory, from /api/v1/status/plugins. */
function Plugins() {
  const st = useApi<PluginStatus[]>('status/plugins');
  return (
    <section class="card wide" data-testid="plugins">
      <h2>Plugins</h2>
      <Loader state={st}>
        {(list) =>
          list.length === 0 ? (
            <Empty title="No plugins loaded">
              Drop a <code>.wasm</code> plugin into the plugin directory (<code>--plugins.dir</code>) and reload the
              configuration; it is listed here with its world, version, health and calls.
            </Empty>
          ) : (
            <div class="table-wrap">
              <table class="data" data-testid="plugin-table">
                <thead>
                  <tr>
                    <th>Plugin</th>
                    <th>World</th>
                    <th>Version</th>
                    <th>Health</th>
                    <th class="num">Calls</th>
                    <th class="num">Errors</th>
                    <th class="num">Mean call</th>
                    <th>Last call</th>
                    <th>Last error</th>
                  </tr>
                </thead>
                <tbody>
                  {list.map((p) => (
                    <tr data-testid="plugin" data-plugin={p.name} data-health={p.health}>
                      <th scope="row" title={p.file}>
                        {p.name}
                        {p.description && <div class="muted small">{p.description}</div>}
                      </th>
                      <td>{p.world ?? '–'}</td>
                      <td>{p.version || '–'}</td>
                      <td>
                        <Health health={p.health} />
                      </td>
                      <td class="num">{p.calls}</td>
                      <td class="num">{p.errors}</td>
                      <td class="num">{p.meanCallSeconds === null ? '–' : formatSeconds(p.meanCallSeconds)}</td>
                      <td>{p.lastCall ? ago(p.lastCall) : 'never'}</td>
                      <td class="error-text" data-testid="plugin-error">
                        {p.lastError && (
                          <>
                            {p.lastErrorReason && <code>{p.lastErrorReason}</code>} {p.lastError}
                          </>
                        )}
                        {p.loadError && <div>Newer file does not load: {p.loadError}</div>}
                      </td>
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

interface TsdbStatus {
  headStats: { numSeries: number; numLabelPairs: number; chunkCount: number; minTime: number; maxTime: number };
  seriesCountByMetricName: { name: string; value: number }[];
  labelValueCountByLabelName: { name: string; value: number }[];
  memoryInBytesByLabelName: { name: string; value: number }[];
  seriesCountByLabelValuePair: { name: string; value: number }[];
}

function TopTable({ title, rows, unit }: { title: string; rows: { name: string; value: number }[]; unit: string }) {
  return (
    <section class="card">
      <h2>{title}</h2>
      {rows.length ? (
        <table class="data">
          <thead>
            <tr>
              <th>Name</th>
              <th class="num">{unit}</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr>
                <td class="series">{r.name}</td>
                <td class="num">{r.value}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p class="muted">No data in the head.</p>
      )}
    </section>
  );
}

function Tsdb() {
  const st = useApi<TsdbStatus>('status/tsdb');
  const time = (ms: number) => (Math.abs(ms) >= 8.64e15 || ms === 9223372036854776000 ? '–' : `${formatTime(ms)} UTC`);
  return (
    <Loader state={st}>
      {(d) => (
        <div class="status-grid">
          <section class="card">
            <h2>Head block</h2>
            <KV
              testid="head-stats"
              rows={[
                ['Number of series', d.headStats.numSeries],
                ['Number of chunks', d.headStats.chunkCount],
                ['Number of label pairs', d.headStats.numLabelPairs],
                ['Current min time', time(d.headStats.minTime)],
                ['Current max time', time(d.headStats.maxTime)],
              ]}
            />
          </section>
          <TopTable title="Top series count by metric name" rows={d.seriesCountByMetricName} unit="Series" />
          <TopTable title="Top label names with value count" rows={d.labelValueCountByLabelName} unit="Values" />
          <TopTable title="Top label names with memory usage" rows={d.memoryInBytesByLabelName} unit="Bytes" />
          <TopTable title="Top series count by label value pairs" rows={d.seriesCountByLabelValuePair} unit="Series" />
        </div>
      )}
    </Loader>
  );
}

function Flags() {
  const st = useApi<Record<string, string>>('status/flags');
  const [text, setText] = useState('');
  return (
    <section>
      <div class="toolbar">
        <Filter value={text} onInput={setText} placeholder="Filter flags" />
      </div>
      <Loader state={st}>
        {(d) => (
          <table class="data kv" data-testid="flags">
            <thead>
              <tr>
                <th>Flag</th>
                <th>Value</th>
              </tr>
            </thead>
            <tbody>
              {Object.entries(d)
                .filter(([k, v]) => !text || k.includes(text.toLowerCase()) || v.toLowerCase().includes(text.toLowerCase()))
                .map(([k, v]) => (
                  <tr>
                    <th scope="row">
                      <code>--{k}</code>
                    </th>
                    <td>
                      <code>{v}</code>
                    </td>
                  </tr>
                ))}
            </tbody>
          </table>
        )}
      </Loader>
    </section>
  );
}

function Config() {
  const st = useApi<{ yaml: string }>('status/config');
  const [copied, setCopied] = useState(false);
  return (
    <Loader state={st}>
      {(d) => (
        <section>
          <div class="toolbar">
            <button
              type="button"
              class="btn"
              onClick={() => {
                navigator.clipboard?.writeText(d.yaml).then(() => setCopied(true), () => setCopied(false));
              }}
            >
              {copied ? 'Copied' : 'Copy to clipboard'}
            </button>
          </div>
          <pre class="config" data-testid="config" tabIndex={0}>
            {d.yaml}
          </pre>
        </section>
      )}
    </Loader>
  );
}
