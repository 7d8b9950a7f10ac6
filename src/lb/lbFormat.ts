// The load balancer's listings in Cilium's layouts, so that what users know from `cilium-dbg service list`,
// `cilium-dbg bpf lb list` and `cilium-dbg bpf lb maglev list` reads the same here. Columns are laid out as Go's
// tabwriter does with Cilium's settings (minimum width 5, padding 3): each column as wide as its widest cell plus
// three spaces; trailing spaces are dropped.
import { ENUMS } from '../bpf/layouts';
import { frontendText, hostPort, LbService, LbServiceType, protoName } from './lbService';
import { LbEntryView } from './lbWriter';

const SF = ENUMS.lb_service_flag;
const ALG = ENUMS.lb_algorithm;

const MIN_WIDTH = 5;
const PADDING = 3;

/** Rows as tabwriter(minwidth 5, padding 3) lays them out; the last column is not padded. */
export function tabulate(rows: readonly string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      if (i < row.length - 1) widths[i] = Math.max(widths[i] ?? MIN_WIDTH, cell.length + PADDING);
    });
  }
  return rows.map((row) =>
    row
      .map((cell, i) => (i < row.length - 1 ? cell.padEnd(widths[i]) : cell))
      .join('')
      .trimEnd(),
  );
}

/** Cilium's names of the service types (it says ExternalIPs). */
const TYPE_NAMES: Record<LbServiceType, string> = {
  ClusterIP: 'ClusterIP',
  NodePort: 'NodePort',
  ExternalIP: 'ExternalIPs',
  LoadBalancer: 'LoadBalancer',
};

/** `tsct service list`: one row per service, one line per backend, numbered from 1. */
export function formatServiceList(services: readonly LbService[]): string[] {
  const rows: string[][] = [['ID', 'Frontend', 'Service Type', 'Backend']];
  for (const svc of [...services].sort((a, b) => a.id - b.id)) {
    const proto = svc.frontend.proto.toUpperCase();
    const backends = svc.backends.map((b, i) => `${i + 1} => ${hostPort(b.addr, b.port)}/${proto} (${b.state})`);
    rows.push([String(svc.id), frontendText(svc.frontend), TYPE_NAMES[svc.type], backends[0] ?? '']);
    for (const line of backends.slice(1)) rows.push(['', '', '', line]);
  }
  return tabulate(rows);
}

/** The flag names of a service entry as Cilium prints them in brackets (the type first). */
export function serviceFlagNames(flags: number): string[] {
  if (flags & SF.LB_SVC_F_WILDCARD) return ['wildcard'];
  const out = [
    flags & SF.LB_SVC_F_LOADBALANCER
      ? 'LoadBalancer'
      : flags & SF.LB_SVC_F_NODEPORT
        ? 'NodePort'
        : flags & SF.LB_SVC_F_EXTERNAL_IP
          ? 'ExternalIPs'
          : 'ClusterIP',
  ];
  if (flags & SF.LB_SVC_F_LOCAL) out.push('Local');
  if (flags & SF.LB_SVC_F_AFFINITY) out.push('sessionAffinity');
  if (flags & SF.LB_SVC_F_SOURCE_RANGE) out.push('check source-range');
  if (flags & SF.LB_SVC_F_SNAT) out.push('full-nat');
  return out;
}

function protoText(proto: number): string {
  return proto === 0 ? 'ANY' : (protoName(proto)?.toUpperCase() ?? String(proto));
}

function entryAddress(e: LbEntryView): string {
  return `${hostPort(e.addr, e.port)}/${protoText(e.proto)}`;
}

function backendAddress(e: LbEntryView, be: LbEntryView['backends'][number]): string {
  return be.addr === undefined ? `backend ${be.id} not found` : `${hostPort(be.addr, be.port!)}/${protoText(e.proto)}`;
}

/**
 * `tsct bpf lb list`: per entry of the services maps, a line per backend in slot order (slot = the backend's
 * 1-based place among the service's members, active ones first), then the slot-0 line with the service's flags.
 */
export function formatLbList(entries: readonly LbEntryView[]): string[] {
  const rows: string[][] = [['SERVICE ADDRESS', 'BACKEND ADDRESS (REVNAT_ID) (SLOT)']];
  for (const e of entries) {
    const lines = e.backends.map((be, i) => `${backendAddress(e, be)} (${e.revNatId}) (${i + 1})`);
    const any = e.family === 4 ? '0.0.0.0' : '[::]';
    lines.push(`${any}:0 (${e.revNatId}) (0) [${serviceFlagNames(e.flags).join(', ')}]`);
    lines.forEach((line, i) => rows.push([i === 0 ? entryAddress(e) : '', line]));
  }
  return tabulate(rows);
}

/** `tsct bpf lb list -o json`: the same entries as objects. */
export function lbListJson(entries: readonly LbEntryView[]): object[] {
  return entries.map((e) => ({
    service: entryAddress(e),
    revNatId: e.revNatId,
    flags: serviceFlagNames(e.flags),
    algorithm: e.algorithm === ALG.LB_ALG_MAGLEV ? 'maglev' : e.algorithm === ALG.LB_ALG_RANDOM ? 'random' : null,
    tableOffset: e.tableOffset,
    tableSize: e.tableSize,
    affinityTimeout: e.affinityTimeout,
    backends: e.backends.map((be, i) => ({
      slot: i + 1,
      backendId: be.id,
      address: be.addr === undefined ? null : backendAddress(e, be),
      state: be.state ?? null,
    })),
  }));
}

/** `tsct bpf lb maglev list`: each Maglev service's lookup table as the backend ids of its slots. */
export function formatMaglevList(tables: ReadonlyArray<{ id: number; table: Uint32Array }>): string[] {
  const rows: string[][] = [['SVC ID', 'LOOKUP TABLE']];
  for (const { id, table } of tables) rows.push([String(id), `[${Array.from(table).join(' ')}]`]);
  return tabulate(rows);
}
