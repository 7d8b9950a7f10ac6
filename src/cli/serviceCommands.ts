// `tsct service update|delete|list|apply` and `tsct bpf lb list`, `tsct bpf lb maglev list`: the service load
// balancer programmed and read straight through its pinned maps. Each command opens the maps, rebuilds the
// writer's state from them (LbWriter.restore), acts and closes; the agent does the same, so both can program the
// same maps. Every input is checked before anything is written: a refused command changes nothing.
//
// The Maglev table size and hash seed are not in the maps: --maglev-table-size and --maglev-hash-seed must be the
// agent's --bpf-lb-maglev-table-size and --bpf-lb-maglev-hash-seed (both default to Cilium's: M chosen per service
// from its backend count, seed JLfvgnHc2kaSUFaI), or this node's tables will differ from the other nodes'.
import * as fs from 'node:fs';
import { Command } from 'commander';
import { BpfMap } from 'libbpf-ts';
import { openPinnedMap } from '../ct/ctTables';
import { LB_MAPS, LbMapName } from '../datapath/tables';
import { UsageError } from '../errors';
import { formatLbList, formatMaglevList, formatServiceList, lbListJson } from '../lb/lbFormat';
import {
  DEFAULT_ALGORITHM,
  frontendText,
  LbService,
  parseAffinityTimeout,
  parseAlgorithm,
  parseBackendList,
  parseFrontend,
  parseServiceId,
  parseServiceType,
  parseSourceRanges,
  parseTrafficPolicy,
} from '../lb/lbService';
import { LbApplyResult, LbWriter } from '../lb/lbWriter';
import { SourceRangeWriter } from '../lb/sourceRanges';
import { DEFAULT_MAGLEV_HASH_SEED, parseMaglevHashSeed, parseMaglevTableSize } from '../lb/maglev';
import { parseServicesFile } from '../lb/servicesFile';
import { LineWriter } from './output';
import { rootOption } from './rootOption';

interface RootOptions {
  bpfRoot: string;
}

interface MaglevOptions extends RootOptions {
  maglevTableSize?: string;
  maglevHashSeed: string;
}

interface UpdateOptions extends MaglevOptions {
  id: string;
  frontend: string;
  backends: string;
  type: string;
  algorithm: string;
  affinityTimeout?: string | true;
  trafficPolicy: string;
  sourceRanges?: string;
  fullNat?: boolean;
}

interface OutputOptions extends RootOptions {
  output?: string;
}

/** The pinned LB maps of root, all or none. */
export function openLbMaps(root: string): Record<LbMapName, BpfMap> {
  const opened: Partial<Record<LbMapName, BpfMap>> = {};
  try {
    for (const name of LB_MAPS) opened[name] = openPinnedMap(root, name);
  } catch (e) {
    for (const m of Object.values(opened)) m.close();
    throw e;
  }
  return opened as Record<LbMapName, BpfMap>;
}

/** Runs fn with a writer over root's maps (and one for the source ranges), closing them whatever happens. */
async function withWriter<T>(
  root: string,
  o: Partial<MaglevOptions>,
  fn: (w: LbWriter, ranges: SourceRangeWriter) => Promise<T>,
): Promise<T> {
  const opts = maglevOptions(o);
  const maps = openLbMaps(root);
  const rangeMaps = {
    tsct_lb4_source_range: openPinnedMap(root, 'tsct_lb4_source_range'),
    tsct_lb6_source_range: openPinnedMap(root, 'tsct_lb6_source_range'),
  };
  try {
    return await fn(await LbWriter.restore(maps, opts), new SourceRangeWriter(rangeMaps));
  } finally {
    for (const m of [...Object.values(maps), ...Object.values(rangeMaps)]) m.close();
  }
}

/** The flags' values, with the messages naming this command's flags rather than the agent's. */
function maglevOptions(o: Partial<MaglevOptions>): { maglevTableSize?: number; hashSeed: number } {
  const rename = <T>(from: string, to: string, parse: () => T): T => {
    try {
      return parse();
    } catch (e) {
      if (e instanceof UsageError) throw new UsageError(e.message.replace(from, to));
      throw e;
    }
  };
  const seed = rename('--bpf-lb-maglev-hash-seed', '--maglev-hash-seed', () =>
    parseMaglevHashSeed(o.maglevHashSeed ?? DEFAULT_MAGLEV_HASH_SEED),
  );
  const size =
    o.maglevTableSize === undefined
      ? undefined
      : rename('--bpf-lb-maglev-table-size', '--maglev-table-size', () => parseMaglevTableSize(o.maglevTableSize!));
  return { maglevTableSize: size, hashSeed: seed.murmur };
}

function outputFormat(o: OutputOptions): 'table' | 'json' {
  if (o.output === undefined) return 'table';
  if (o.output === 'json') return 'json';
  throw new UsageError(`-o: '${o.output}' is not an output format; use json, or leave it out for Cilium's format`);
}

/** The service the update flags describe; every flag is checked before the maps are opened. */
export function serviceFromFlags(o: UpdateOptions): LbService {
  const frontend = parseFrontend(o.frontend);
  const affinity =
    o.affinityTimeout === undefined
      ? 0
      : parseAffinityTimeout(o.affinityTimeout === true ? undefined : o.affinityTimeout);
  return {
    id: parseServiceId(o.id),
    frontend,
    type: parseServiceType(o.type),
    algorithm: parseAlgorithm(o.algorithm),
    affinityTimeoutS: affinity,
    trafficPolicy: parseTrafficPolicy(o.trafficPolicy),
    sourceRanges: o.sourceRanges === undefined ? [] : parseSourceRanges(o.sourceRanges),
    fullNat: o.fullNat === true,
    backends: parseBackendList(o.backends, frontend),
  };
}

/** One line saying what an update did to the maps. */
export function describeChanges(r: LbApplyResult): string {
  const w = r.written;
  const x = r.removed;
  const written = w.services + w.backends + w.members + w.revNat;
  const removed = x.services + x.backends + x.members + x.revNat;
  if (written + removed + w.slots === 0) return 'nothing to change';
  const tables = r.tablesRebuilt === 1 ? '1 table' : `${r.tablesRebuilt} tables`;
  return (
    `wrote ${written} entries (${w.services} service, ${w.backends} backend, ${w.members} member, ` +
    `${w.revNat} reverse NAT) and ${tables} (${w.slots} slots); removed ${removed} entries`
  );
}

async function serviceUpdate(o: UpdateOptions): Promise<void> {
  const svc = serviceFromFlags(o);
  const r = await withWriter(o.bpfRoot, o, async (w, ranges) => {
    ranges.add([svc]);
    const done = await w.upsert(svc);
    await ranges.prune([svc], new Set([svc.id]));
    return done;
  });
  process.stdout.write(`service ${svc.id} ${frontendText(svc.frontend)}: ${describeChanges(r)}\n`);
}

async function serviceDelete(idText: string, o: RootOptions): Promise<void> {
  const id = parseServiceId(idText, 'service id');
  const r = await withWriter(o.bpfRoot, {}, async (w, ranges) => {
    const done = await w.remove(id);
    await ranges.prune([], new Set([id]));
    return done;
  });
  process.stdout.write(`service ${id} deleted: ${describeChanges(r)}\n`);
}

async function serviceApply(o: MaglevOptions & { file: string }): Promise<void> {
  let text: string;
  try {
    text = fs.readFileSync(o.file, 'utf8');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new UsageError(`-f ${o.file}: cannot read it (${why}); give the path of a services file`);
  }
  const services = parseServicesFile(text, o.file);
  const r = await withWriter(o.bpfRoot, o, async (w, ranges) => {
    ranges.add(services);
    const done = await w.apply(services);
    await ranges.prune(services);
    return done;
  });
  const n = services.length;
  process.stdout.write(`${n} service${n === 1 ? '' : 's'} applied: ${describeChanges(r)}\n`);
}

async function serviceList(o: OutputOptions): Promise<void> {
  const format = outputFormat(o);
  const services = await withWriter(o.bpfRoot, {}, async (w) => w.lbState());
  const out = new LineWriter();
  if (format === 'json') out.line(JSON.stringify(services, null, 2));
  else for (const line of formatServiceList(services)) out.line(line);
  out.flush();
}

async function lbList(o: OutputOptions): Promise<void> {
  const format = outputFormat(o);
  const entries = await withWriter(o.bpfRoot, {}, async (w) => w.lbEntries());
  const out = new LineWriter();
  if (format === 'json') out.line(JSON.stringify(lbListJson(entries), null, 2));
  else for (const line of formatLbList(entries)) out.line(line);
  out.flush();
}

async function maglevList(o: OutputOptions): Promise<void> {
  const format = outputFormat(o);
  const tables = await withWriter(o.bpfRoot, {}, (w) => w.maglevTables());
  const out = new LineWriter();
  if (format === 'json') out.line(JSON.stringify(tables.map((t) => ({ id: t.id, table: Array.from(t.table) }))));
  else for (const line of formatMaglevList(tables)) out.line(line);
  out.flush();
}

function maglevFlags(cmd: Command): Command {
  return cmd
    .option(
      '--maglev-table-size <M>',
      "Maglev table size, one for every service: the agent's --bpf-lb-maglev-table-size (default: per service, " +
        'the smallest allowed size of at least 100 x its backends)',
    )
    .option(
      '--maglev-hash-seed <seed>',
      "Maglev hash seed, base64 of 12 bytes: the agent's --bpf-lb-maglev-hash-seed",
      DEFAULT_MAGLEV_HASH_SEED,
    );
}

/** Adds `service ...` and `bpf lb ...` to the CLI. */
export function registerServiceCommands(program: Command): void {
  const service = program.command('service').description('the service load balancer: frontends and their backends');
  maglevFlags(
    service
      .command('update')
      .description('add a service or replace the one with its id; the other services stay as they are')
      .requiredOption('--id <id>', 'service id, 1 to 65535 (the reverse NAT index)')
      .requiredOption('--frontend <addr:port/proto>', 'e.g. 10.96.0.10:53/udp or [fd00::10]:53/udp (tcp by default)')
      .requiredOption(
        '--backends <list>',
        'ADDR[:PORT][=ATTR+...] separated by commas, ATTR a state (active, terminating, quarantined, maintenance), ' +
          "local or weight:N; the port defaults to the frontend's; '' for none",
      )
      .option('--type <type>', 'ClusterIP, NodePort, ExternalIP or LoadBalancer', 'ClusterIP')
      .option('--algorithm <alg>', 'backend selection: random or maglev', DEFAULT_ALGORITHM)
      .option('--affinity-timeout [duration]', 'ClientIP session affinity for this long (default 3h when given alone)')
      .option('--traffic-policy <policy>', 'cluster, or local: only the backends marked local', 'cluster')
      .option('--source-ranges <cidrs>', 'the client CIDRs allowed, separated by commas')
      .option('--full-nat', "translate the client's source too"),
  )
    .addOption(rootOption())
    .action(serviceUpdate);
  service
    .command('delete')
    .description('remove a service')
    .argument('<id>', 'the service id')
    .addOption(rootOption())
    .action(serviceDelete);
  service
    .command('list')
    .description('the services and their backends, as cilium-dbg service list')
    .option('-o, --output <format>', 'json')
    .addOption(rootOption())
    .action(serviceList);
  maglevFlags(
    service
      .command('apply')
      .description('make the services exactly those of a file (YAML or JSON): the ones it does not list are removed')
      .requiredOption('-f, --file <file>', 'the services file'),
  )
    .addOption(rootOption())
    .action(serviceApply);

  const bpf = program.commands.find((c) => c.name() === 'bpf') ?? program.command('bpf');
  const lb = bpf.command('lb').description('the load balancer maps');
  lb.command('list')
    .description('the services maps: a line per backend slot and the slot-0 line, as cilium-dbg bpf lb list')
    .option('-o, --output <format>', 'json')
    .addOption(rootOption())
    .action(lbList);
  lb.command('maglev')
    .description('the Maglev lookup tables')
    .command('list')
    .description('each Maglev service with the backend ids of its table, as cilium-dbg bpf lb maglev list')
    .option('-o, --output <format>', 'json')
    .addOption(rootOption())
    .action(maglevList);
}
