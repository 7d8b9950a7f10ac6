// The tsct command line.
import { Command, CommanderError } from 'commander';
import { BpfError } from 'libbpf-ts';
import { UsageError } from '../errors';
import { PinnedLayoutError } from '../datapath/pins';
import { ctEvents, ctFlush, ctList } from './ctCommands';
import { status, uninstall } from './statusCommands';
import { natFlush, natList } from './natCommands';
import { registerPolicyCommands } from './policyCommands';
import { registerServiceCommands } from './serviceCommands';
import { rootOption } from './rootOption';

function filterOptions(cmd: Command): Command {
  return cmd
    .option('--src <addr>', 'original source address')
    .option('--dst <addr>', 'original destination address')
    .option('--host <addr>', 'either address')
    .option('--sport <port>', 'original source port')
    .option('--dport <port>', 'original destination port')
    .option('--port <port>', 'either port')
    .option('--proto <proto>', 'tcp, udp, icmp, icmpv6 or a number')
    .option('--family <4|6>', 'address family')
    .option('--zone <zone>', 'conntrack zone')
    .option('--state <state>', 'TCP state, e.g. ESTABLISHED')
    .option('--ct-state <flags>', 'flags such as +est, +new, -est+snat (new, est, assured, snat, dnat, closing)');
}

function globalTable(table: string): void {
  if (table !== 'global') throw new UsageError(`unknown table '${table}': tsct has one connection table set, 'global'`);
}

/** The CLI's commands; `extend` adds the ones defined elsewhere (the agent's, src/main.ts). */
export function buildProgram(extend: (program: Command) => void = () => undefined): Command {
  const program = new Command('tsct')
    .description('eBPF connection tracking and NAT for a Linux node')
    .exitOverride()
    .configureOutput({ writeErr: () => undefined });
  extend(program);

  const ct = program
    .command('bpf')
    .description('the BPF maps, read directly')
    .command('ct')
    .description('connection tracking tables');
  filterOptions(ct.command('list').argument('<table>', "'global'").description('list connections'))
    .addOption(rootOption())
    .option('-o, --output <format>', 'json (one object per line) or conntrack (as conntrack -L)')
    .option('--count', 'print only how many match')
    .action(async (table: string, o) => {
      globalTable(table);
      await ctList(o);
    });
  filterOptions(ct.command('flush').argument('<table>', "'global'").description('delete the matching connections'))
    .addOption(rootOption())
    .action(async (table: string, o) => {
      globalTable(table);
      await ctFlush(o);
    });

  ct.command('events')
    .description(
      'connection events as they happen, as conntrack -E prints them (new, destroy; update with --conntrack-events); one reader at a time',
    )
    .addOption(rootOption())
    .option('-o, --output <format>', 'json (one object per line)')
    .option('--max-events <n>', 'stop after n events')
    .action(ctEvents);

  const natCmd = program.commands
    .find((c) => c.name() === 'bpf')!
    .command('nat')
    .description('NAT table (masquerade)');
  const natFilters = (cmd: Command) =>
    cmd
      .addOption(rootOption())
      .option('--src <addr>', 'source address of the entry')
      .option('--dst <addr>', 'destination address of the entry')
      .option('--host <addr>', 'any address of the entry, the translated one included')
      .option('--sport <port>', 'source port')
      .option('--dport <port>', 'destination port')
      .option('--proto <proto>', 'tcp, udp, icmp, icmpv6 or a number')
      .option('--family <4|6>', 'address family');
  natFilters(natCmd.command('list').description('list NAT entries, OUT (XLATE_SRC) and IN (XLATE_DST)'))
    .option('-o, --output <format>', 'json (one object per line)')
    .option('--count', 'print only how many match')
    .action(natList);
  natFilters(
    natCmd
      .command('flush')
      .description('delete the matching NAT mappings; their connections take new ones with their next packet out'),
  ).action(natFlush);
  registerServiceCommands(program);
  registerPolicyCommands(program);

  program
    .command('status')
    .description('devices, attachments, maps and their fill, the garbage collection, the agent')
    .addOption(rootOption())
    .option('-o, --output <format>', 'json')
    .action(status);
  program
    .command('uninstall')
    .description('detach what the agent attached and remove its pins')
    .addOption(rootOption())
    .action(uninstall);
  return program;
}

/** One line for every error a user can cause; a stack trace only with TSCT_DEBUG=1. */
export function explain(e: unknown): { line: string; code: number } {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help')
      return { line: '', code: 0 };
    return { line: `${e.message.replace(/^error: /, '')} (see tsct --help)`, code: 2 };
  }
  if (e instanceof UsageError || e instanceof PinnedLayoutError) return { line: e.message, code: 2 };
  if (e instanceof BpfError) {
    const hint = e.code === 'EPERM' ? '' : '';
    return { line: `${e.message}${hint}`, code: 1 };
  }
  return { line: e instanceof Error ? e.message : String(e), code: 1 };
}

export async function main(argv: string[], extend?: (program: Command) => void): Promise<number> {
  const program = buildProgram(extend);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    const { line, code } = explain(e);
    if (line) process.stderr.write(`tsct: ${line}\n`);
    if (process.env.TSCT_DEBUG === '1' && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return code;
  }
}
