import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { path } from './api';
import { navigate, onLinkClick, useRoute } from './router';
import { QueryPage } from './pages/Query';
import { TargetsPage } from './pages/Targets';
import { ServiceDiscoveryPage } from './pages/ServiceDiscovery';
import { RulesPage, AlertsPage } from './pages/Rules';
import { StatusPage, StatusSection } from './pages/Status';

const NAV: [string, string][] = [
  ['/graph', 'Query'],
  ['/alerts', 'Alerts'],
  ['/rules', 'Rules'],
  ['/targets', 'Targets'],
  ['/service-discovery', 'Service discovery'],
  ['/status', 'Status'],
];

const STATUS_ROUTES: Record<string, StatusSection> = {
  '/status': 'runtime',
  '/tsdb-status': 'tsdb',
  '/flags': 'flags',
  '/config': 'config',
};

function Page({ route }: { route: string }) {
  if (route === '/graph' || route === '/query') return <QueryPage />;
  if (route === '/targets') return <TargetsPage />;
  if (route === '/service-discovery') return <ServiceDiscoveryPage />;
  if (route === '/rules') return <RulesPage />;
  if (route === '/alerts') return <AlertsPage />;
  if (route in STATUS_ROUTES) return <StatusPage section={STATUS_ROUTES[route]} />;
  return (
    <main class="page">
      <h1>Page not found</h1>
      <p>
        There is no page at <code>{route}</code>. Go to the{' '}
        <a href={path('/graph')} onClick={(e) => onLinkClick(e, '/graph')}>
          query page
        </a>
        .
      </p>
    </main>
  );
}

function App() {
  const { route } = useRoute();
  useEffect(() => {
    if (route === '/') navigate('/graph', true);
  }, [route]);
  const active = route in STATUS_ROUTES ? '/status' : route === '/query' ? '/graph' : route;
  const title = NAV.find(([r]) => r === active)?.[1];
  useEffect(() => {
    document.title = title ? `${title} · Ember` : 'Ember';
  }, [title]);
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <a class="brand" href={path('/graph')} onClick={(e) => onLinkClick(e, '/graph')}>
          <span class="flame" aria-hidden="true" />
          Ember
        </a>
        <nav aria-label="Main">
          {NAV.map(([r, label]) => (
            <a
              key={r}
              href={path(r)}
              class={active === r ? 'active' : ''}
              aria-current={active === r ? 'page' : undefined}
              onClick={(e) => onLinkClick(e, r)}
            >
              {label}
            </a>
          ))}
        </nav>
      </header>
      <div id="main">{route === '/' ? null : <Page route={route} />}</div>
    </>
  );
}

render(<App />, document.getElementById('app')!);
