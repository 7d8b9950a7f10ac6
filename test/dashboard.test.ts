// The Grafana dashboard only refers to metrics the agent exposes.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildRegistry } from '../src/metrics/registry';
import { ROOT } from './helpers/paths';

test('every metric the dashboard queries is one the agent exposes', async (t) => {
  const dashboard = JSON.parse(fs.readFileSync(path.join(ROOT, 'deploy', 'grafana', 'tsct-dashboard.json'), 'utf8'));
  const exprs: string[] = dashboard.panels.flatMap((p: { targets: Array<{ expr: string }> }) =>
    p.targets.map((x) => x.expr),
  );
  t.true(exprs.length >= 10);
  const { registry } = buildRegistry({
    reasons: () => [],
    lastGc: () => null,
    gcRuns: () => 0,
    gcIntervalS: () => 60,
    mapSizes: () => ({}),
  });
  const exposed = new Set(
    (await registry.metrics())
      .split('\n')
      .filter((l) => l.startsWith('# TYPE '))
      .map((l) => l.split(' ')[2]),
  );
  const used = new Set(exprs.flatMap((e) => e.match(/tsct_[a-z0-9_]+/g) ?? []));
  for (const name of used) {
    const base = name.replace(/_(bucket|sum|count)$/, '');
    t.true(exposed.has(name) || exposed.has(base), `${name} is exposed`);
  }
});
