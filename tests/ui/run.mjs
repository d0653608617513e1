// Browser tests of Ember's web UI: playwright-core (from ui/node_modules)
// driving Debian's Chromium against a running ember with data.
//
//   node tests/ui/run.mjs <base-url> <screenshot-dir> [--smoke]
//
// tests/ui_browser.rs starts ember (remote-written series
// ui_test_requests_total{instance="a|b|c"}, one healthy and one unhealthy
// scrape target; for the full run also a rule file with a recording rule and
// a firing alerting rule, and an exporter plugin as a third, healthy target)
// and runs this. --smoke: the query page, targets and the empty states of
// rules, alerts and plugins, for a run under --web.route-prefix without
// rules or plugins. Exit code 0 when every check passed.
import { createRequire } from 'node:module';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(new URL('../../ui/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [base, shots, mode] = process.argv.slice(2);
if (!base || !shots) {
  console.error('usage: node tests/ui/run.mjs <base-url> <screenshot-dir> [--smoke]');
  process.exit(2);
}
const smoke = mode === '--smoke';
const BASE = base.replace(/\/+$/, '');
const METRIC = 'ui_test_requests_total';
mkdirSync(shots, { recursive: true });

const watchdog = setTimeout(() => {
  console.error('FAIL: the browser tests took longer than 240s');
  process.exit(1);
}, 240_000);

let failures = 0;
let step = '';
function check(cond, what) {
  if (cond) console.log(`  ok: ${what}`);
  else {
    failures++;
    console.log(`  FAIL: ${what}`);
  }
}

const userDataDir = mkdtempSync(join(tmpdir(), 'ember-ui-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-quic',
  ],
  viewport: { width: 1280, height: 800 },
});
context.setDefaultTimeout(30_000);
const page = context.pages()[0] ?? (await context.newPage());

// Everything must come from ember itself: no CDN, no fonts, no other host.
const origin = new URL(BASE).origin;
const foreign = [];
const pageErrors = [];
const badResponses = [];
page.on('request', (r) => {
  const u = r.url();
  if (!u.startsWith(origin) && !u.startsWith('data:')) foreign.push(u);
});
page.on('pageerror', (e) => pageErrors.push(`${step}: ${e.message}`));
page.on('console', (m) => {
  // Failed requests are checked (and the expected 400 allowed) below.
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(`${step}: console: ${m.text()}`);
});
page.on('response', (r) => {
  // The deliberately broken query answers 400; anything else is a bug.
  if (r.status() >= 400 && !(r.url().includes('/api/v1/query') && r.status() === 400)) {
    badResponses.push(`${step}: ${r.status()} ${r.url()}`);
  }
});

async function shot(name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function section(name, fn) {
  step = name;
  console.log(`- ${name}`);
  try {
    await fn();
  } catch (e) {
    failures++;
    console.log(`  FAIL: ${name}: ${e.message.split('\n')[0]}`);
    await shot(`failed-${name.replace(/\W+/g, '-')}`).catch(() => {});
  }
}

const panel = page.locator('[data-testid=panel]').first();

await section('query page: type with autocomplete, run, table', async () => {
  await page.goto(`${BASE}/graph`);
  const editor = panel.locator('.cm-content');
  await editor.waitFor();
  check(await page.evaluate(() => document.activeElement?.classList.contains('cm-content')), 'the editor has focus on load');
  await editor.click();
  await page.keyboard.type('ui_test_req');
  // The metric names arrive from the API after the first keystrokes; wait
  // until the metric is the selected completion.
  const option = page.locator('.cm-tooltip-autocomplete li[aria-selected=true]', { hasText: METRIC });
  await option.first().waitFor();
  check(true, `autocomplete offers ${METRIC}`);
  // CodeMirror ignores Enter for 75 ms after the list changes (so a fast
  // typist does not accept by accident); let the list settle.
  await page.waitForTimeout(400);
  await page.keyboard.press('Enter'); // accept the completion
  check((await editor.innerText()).trim() === METRIC, 'Enter accepted the completion');
  await page.keyboard.press('Enter'); // run
  const rows = panel.locator('[data-testid=result-table] tbody tr');
  await rows.first().waitFor();
  check((await rows.count()) === 3, `the table shows 3 series (got ${await rows.count()})`);
  check(/g0\.expr=ui_test_requests_total/.test(page.url()), 'the URL keeps g0.expr');
  await shot('query-table');
});

await section('graph tab: chart with one line per series', async () => {
  await panel.locator('[role=tab][data-tab=graph]').click();
  const chart = panel.locator('[data-testid=chart]');
  await chart.locator('canvas').waitFor();
  check((await chart.getAttribute('data-series-count')) === '3', 'the chart draws 3 series');
  const legend = chart.locator('.u-legend .u-series');
  check((await legend.count()) === 4, `legend: time + 3 series (got ${await legend.count()})`);
  check(/g0\.tab=0/.test(page.url()), 'the URL says g0.tab=0 (graph)');
  // Hover shows values in the legend.
  const box = await chart.locator('.u-over').boundingBox();
  await page.mouse.move(box.x + box.width * 0.8, box.y + box.height / 2);
  const hovered = await legend.nth(1).locator('.u-value').innerText();
  check(/\d/.test(hovered), `hovering shows a value (${hovered})`);
  await shot('query-graph');
  await panel.getByLabel('Stacked').check();
  await chart.locator('canvas').waitFor();
  await page.waitForURL(/g0\.stacked=1/);
  check(true, 'stacked mode is in the URL');
  await shot('query-graph-stacked');
});

await section('shared link opens the same view', async () => {
  const url = page.url();
  await page.goto(url);
  await panel.locator('[data-testid=chart] canvas').waitFor();
  check((await panel.locator('[role=tab][aria-selected=true]').innerText()) === 'Graph', 'the Graph tab is selected after a reload');
  // Prometheus 2's alert generator URLs: g0.tab=1 is the table.
  await page.goto(`${BASE}/graph?g0.expr=${encodeURIComponent('sum(' + METRIC + ')')}&g0.tab=1`);
  await panel.locator('[data-testid=result-table] tbody tr').first().waitFor();
  check((await panel.locator('[data-testid=result-table] tbody tr').count()) === 1, 'a generatorURL-style link runs its query in the table');
});

if (!smoke) {
  await section('no data, errors and explain', async () => {
    await page.goto(`${BASE}/graph?g0.expr=does_not_exist&g0.tab=0`);
    await panel.locator('[data-testid=no-data]').waitFor();
    check(true, 'an empty range result shows the no-data state');
    await shot('query-no-data');
    await page.getByRole('button', { name: '+ Add query' }).click();
    const second = page.locator('[data-testid=panel]').nth(1);
    await second.locator('.cm-content').click();
    await page.keyboard.type('sum(rate(' + METRIC + '[5m]) by (');
    await page.keyboard.press('Escape');
    await second.locator('.cm-lintRange-error, .cm-lint-marker-error, .cm-lintRange').first().waitFor();
    check(true, 'the editor marks the parse error inline');
    await second.getByRole('button', { name: 'Execute' }).click();
    await second.locator('.alert.error').waitFor();
    check(/bad_data|parse error/i.test(await second.locator('.alert.error').innerText()), 'the API error is shown');
    check(/g1\.expr=/.test(page.url()), 'the second panel is in the URL as g1');
    await shot('query-error');
    await second.getByRole('button', { name: 'Remove query 2' }).click();
    // Annotations from the API (an info here) are shown with the result.
    await page.goto(`${BASE}/graph?g0.expr=${encodeURIComponent('rate(ui_scraped_metric[1m])')}&g0.tab=1`);
    await panel.locator('.alert.info').waitFor();
    check((await panel.locator('.alert.info').innerText()).includes('might not be a counter'), 'the API info annotation is shown');
    await shot('query-info');
    await panel.locator('[role=tab][data-tab=explain]').click();
    await page.goto(`${BASE}/graph?g0.expr=${encodeURIComponent('sum by (instance) (rate(' + METRIC + '[5m]))')}&g0.tab=explain`);
    const plan = panel.locator('[data-testid=explain-plan]');
    await plan.waitFor();
    check((await plan.innerText()).length > 20, 'explain shows a plan');
    await shot('query-explain');
  });

  await section('keyboard: tabs and Enter', async () => {
    await page.goto(`${BASE}/graph?g0.expr=${METRIC}&g0.tab=1`);
    await panel.locator('[data-testid=result-table]').waitFor();
    await panel.locator('[role=tab][aria-selected=true]').focus();
    await page.keyboard.press('ArrowRight');
    check((await page.evaluate(() => document.activeElement?.getAttribute('data-tab'))) === 'graph', 'ArrowRight moves focus to the Graph tab');
    await panel.locator('[data-testid=chart] canvas').waitFor();
    check(true, 'the Graph tab opened from the keyboard');
    await page.keyboard.press('ArrowLeft');
    await panel.locator('[data-testid=result-table]').waitFor();
    // Tab order from the top of a page: skip link, brand, navigation.
    await page.goto(`${BASE}/status`);
    await page.locator('[data-testid=runtime-info]').waitFor();
    await page.keyboard.press('Tab');
    check((await page.evaluate(() => document.activeElement?.textContent)) === 'Skip to content', 'Tab reaches the skip link first');
    let reached = false;
    for (let i = 0; i < 8 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = (await page.evaluate(() => document.activeElement?.textContent)) === 'Targets';
    }
    check(reached, 'Tab reaches the Targets link');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/targets$/);
    check(true, 'Enter on the Targets link opens Targets');
    // The Query link brings back the last queries of this browser tab.
    await page.getByRole('link', { name: 'Query' }).click();
    await panel.locator('[data-testid=result-table]').waitFor();
    check((await panel.locator('.cm-content').innerText()).trim() === METRIC, 'the Query link restores the last query');
    // Shift+Enter is a new line, Enter runs.
    await page.goto(`${BASE}/graph?g0.expr=&g0.tab=1`);
    await panel.locator('.cm-content').click();
    await page.keyboard.type('1 +');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('1');
    check((await panel.locator('.cm-line').count()) === 2, 'Shift+Enter inserts a new line');
    await page.keyboard.press('Enter');
    await panel.locator('[data-testid=result-table]').waitFor();
    check((await panel.locator('[data-testid=result-table]').innerText()).includes('2'), 'Enter runs the two-line query (1 + 1 = 2)');
  });
}

await section('targets: one healthy, one unhealthy', async () => {
  await page.goto(`${BASE}/targets`);
  await page.locator('[data-testid=target]').first().waitFor();
  const up = await page.locator('[data-testid=target][data-health=up]').count();
  const down = await page.locator('[data-testid=target][data-health=down]').count();
  // The full run has the exporter plugin as a second healthy target.
  const wantUp = smoke ? 1 : 2;
  check(up === wantUp && down === 1, `${wantUp} up and 1 down target (got ${up} up, ${down} down)`);
  check((await page.locator('[data-testid=target][data-health=down] .err').innerText()).length > 0, 'the unhealthy target shows its last error');
  await shot('targets');
  await page.locator('input[data-health=up]').uncheck();
  check((await page.locator('[data-testid=target]').count()) === 1, 'unchecking Up leaves only the unhealthy target');
  await page.locator('input[data-health=up]').check();
  await page.getByPlaceholder('Filter by endpoint or labels').fill('job="healthy"');
  check((await page.locator('[data-testid=target]').count()) === 1, 'the text filter finds the healthy job');
});

if (!smoke) {
  await section('service discovery', async () => {
    await page.goto(`${BASE}/service-discovery`);
    await page.locator('[data-testid=sd-pool]').first().waitFor();
    const text = await page.locator('main').innerText();
    check(text.includes('__address__') && text.includes('instance'), 'discovered and relabeled labels are shown');
    check(text.includes('Dropped'), 'the dropped target is listed');
    await shot('service-discovery');
  });

  await section('rules and alerts from a real rule file', async () => {
    await page.goto(`${BASE}/rules`);
    await page.locator('[data-testid=rule-group]').waitFor();
    const rules = await page.locator('main').innerText();
    check(rules.includes('ui-example'), 'the rule group is listed');
    check(rules.includes('job:ui_test_requests:rate5m') && rules.includes('UiTestRequestsHigh'), 'the recording and the alerting rule are listed');
    check(!/\berr\b/i.test(await page.locator('[data-testid=rule-group] .badge').allInnerTexts().then((t) => t.join(' '))), 'both rules are healthy');
    await shot('rules');
    // The built-in Alertmanager's groups and silences are stubbed: this
    // run has no `notifications:` config (tests/alert_routing.rs covers the real thing).
    const now = new Date().toISOString();
    const routed = (name, state, extra = {}) => ({
      labels: { alertname: name, instance: 'a' },
      annotations: {},
      startsAt: now,
      endsAt: now,
      fingerprint: '0123456789abcdef',
      status: { state, silencedBy: [], inhibitedBy: [], ...extra },
    });
    const notifications = {
      configured: true,
      groups: [
        {
          receiver: 'team-hook',
          groupKey: '{}:{alertname="HighErrorRate"}',
          labels: { alertname: 'HighErrorRate' },
          groupWait: 30,
          groupInterval: 300,
          repeatInterval: 14400,
          nextFlush: now,
          lastFlush: now,
          alerts: [routed('HighErrorRate', 'active'), routed('HighErrorRate', 'suppressed', { silencedBy: ['s1'] })],
          integrations: [
            { plugin: 'webhook', lastAttempt: now, lastSuccess: null, lastError: 'http://hooks returned HTTP 500', failedAttempts: 3, lastNotified: now, notifiedFiring: 1, notifiedResolved: 0 },
          ],
        },
      ],
    };
    const silences = [
      { id: 's1', status: { state: 'active' }, matchers: [{ name: 'instance', value: 'a', isRegex: false, isEqual: true }], startsAt: now, endsAt: now, createdBy: 'ops', comment: 'maintenance window', updatedAt: now },
    ];
    await page.route('**/api/v1/notifications*', (route) =>
      route.fulfill({ contentType: 'application/json', body: JSON.stringify({ status: 'success', data: notifications }) }),
    );
    await page.route('**/api/v2/silences*', (route) => route.fulfill({ contentType: 'application/json', body: JSON.stringify(silences) }));
    await page.goto(`${BASE}/alerts`);
    await page.locator('details.alert-rule.firing').waitFor();
    await page.locator('[data-testid=notification-group]').waitFor();
    await page.locator('[data-testid=silence]').waitFor();
    const alerts = await page.locator('main').innerText();
    check(alerts.includes('1 firing'), 'the alerting rule is firing');
    check(alerts.includes('(3 active)'), 'three active alerts, one per instance');
    check(alerts.includes('severity') && alerts.includes('page'), 'the alert labels are shown');
    check(/Instance [abc] served \d+ requests/.test(alerts), 'the templated annotation is shown');
    check(alerts.includes('team-hook') && alerts.includes('SILENCED') && alerts.includes('HTTP 500'), 'notification groups show receiver, muted alerts and delivery errors');
    check(alerts.includes('maintenance window') && alerts.includes('instance="a"'), 'silences show matchers and comment');
    await page.unroute('**/api/v1/notifications*');
    await page.unroute('**/api/v2/silences*');
    await shot('alerts');
    // The state filter hides firing rules.
    await page.getByLabel('Firing').uncheck();
    check((await page.locator('details.alert-rule.firing').count()) === 0, 'unchecking Firing hides the firing rule');
    await page.getByLabel('Firing').check();
    // The alert's expression links to the query page with Prometheus's URL scheme.
    await page.goto(`${BASE}/graph?g0.expr=${encodeURIComponent('job:ui_test_requests:rate5m')}&g0.tab=1`);
    await panel.locator('[data-testid=result-table] tbody tr').first().waitFor();
    check(true, 'the recording rule produced a series');
  });

  await section('status: runtime, build, plugins, flags, config, tsdb', async () => {
    await page.goto(`${BASE}/status`);
    await page.locator('[data-testid=runtime-info]').waitFor();
    await page.locator('[data-testid=build-info]').waitFor();
    const plugin = page.locator('[data-testid=plugin][data-plugin=custom-exporter]');
    await plugin.waitFor();
    const row = await plugin.innerText();
    check(row.includes('exporter') && row.includes('0.1.0'), `the plugin row shows world and version (${row.replace(/\s+/g, ' ')})`);
    check((await plugin.getAttribute('data-health')) === 'ok' && row.includes('OK'), 'the plugin is healthy');
    const calls = Number(await plugin.locator('td.num').first().innerText());
    check(calls > 0, `the plugin's calls are counted (${calls})`);
    await shot('status');
    await page.getByRole('link', { name: 'Command-line flags' }).click();
    await page.locator('[data-testid=flags]').waitFor();
    check((await page.locator('[data-testid=flags]').innerText()).includes('--web.listen-address'), 'flags list --web.listen-address');
    await shot('flags');
    await page.getByRole('link', { name: 'Configuration' }).click();
    await page.locator('[data-testid=config]').waitFor();
    check((await page.locator('[data-testid=config]').innerText()).includes('job_name: healthy'), 'the configuration shows the healthy job');
    await shot('config');
    await page.getByRole('link', { name: 'TSDB' }).click();
    await page.locator('[data-testid=head-stats]').waitFor();
    check((await page.locator('main').innerText()).includes(METRIC), 'TSDB status lists the top metric names');
    await shot('tsdb-status');
  });
}

if (smoke) {
  await section('empty states: rules, alerts, plugins', async () => {
    await page.goto(`${BASE}/rules`);
    await page.locator('[data-testid=empty-state]').waitFor();
    await shot('rules-empty');
    await page.goto(`${BASE}/alerts`);
    await page.locator('[data-testid=empty-state]').waitFor();
    check(true, 'rules and alerts show empty states');
    await shot('alerts-empty');
    await page.goto(`${BASE}/status`);
    await page.locator('[data-testid=plugins] [data-testid=empty-state]').waitFor();
    check((await page.locator('[data-testid=plugins]').innerText()).includes('No plugins loaded'), 'Plugins shows its empty state');
    await shot('status-no-plugins');
  });
}

await section('narrow viewport', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${BASE}/graph?g0.expr=${METRIC}&g0.tab=0`);
  await panel.locator('[data-testid=chart] canvas').waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `the query page fits 390px (overflow ${overflow}px)`);
  await shot('narrow-query');
  await page.goto(`${BASE}/targets`);
  await page.locator('[data-testid=target]').first().waitFor();
  const overflow2 = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow2 <= 1, `the targets page fits 390px (overflow ${overflow2}px)`);
  await shot('narrow-targets');
  if (!smoke) {
    await page.goto(`${BASE}/status`);
    await page.locator('[data-testid=plugin]').first().waitFor();
    const overflow3 = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow3 <= 1, `the status page with its plugin table fits 390px (overflow ${overflow3}px)`);
    await shot('narrow-status');
    await page.goto(`${BASE}/alerts`);
    await page.locator('details.alert-rule.firing').waitFor();
    const overflow4 = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow4 <= 1, `the alerts page fits 390px (overflow ${overflow4}px)`);
    await shot('narrow-alerts');
  }
});

step = 'end';
check(foreign.length === 0, `no request left the server (${foreign.slice(0, 3).join(', ')})`);
check(pageErrors.length === 0, `no page errors (${pageErrors.slice(0, 3).join(' | ')})`);
check(badResponses.length === 0, `no failed requests (${badResponses.slice(0, 3).join(' | ')})`);

await context.close();
rmSync(userDataDir, { recursive: true, force: true });
clearTimeout(watchdog);
console.log(failures ? `${failures} check(s) failed; screenshots in ${shots}` : `all checks passed; screenshots in ${shots}`);
process.exit(failures ? 1 : 0);
