// `tsct agent`: its flags (declared once in options.ts) and its lifetime
// until SIGTERM or SIGINT.
import { Command, Option } from 'commander';
import { AGENT_FLAGS, envName, resolveAgentOptions } from './options';
import { startAgent } from './agent';
import { makeLogger } from './log';

export function addAgentCommand(program: Command): void {
  const agent = program
    .command('agent')
    .description('load and attach the datapath, keep it pinned, run the garbage collection')
    .option('--config <file>', 'JSON file of settings, keyed by flag name');
  for (const f of AGENT_FLAGS) {
    agent.addOption(
      new Option(
        `--${f.flag} <value>`,
        `${f.help}${f.default ? ` (default ${f.default})` : ''} [env ${envName(f.flag)}]`,
      ),
    );
  }
  agent.action(async (flags: Record<string, string>) => {
    const o = resolveAgentOptions(flags);
    const log = makeLogger(o.logLevel);
    const running = await startAgent(o, log);
    await new Promise<void>((resolve) => {
      const bye = (sig: string) => {
        log.info(`${sig}: stopping; programs stay attached and maps stay pinned under ${o.bpfRoot}`);
        running.stop();
        resolve();
      };
      process.once('SIGTERM', () => bye('SIGTERM'));
      process.once('SIGINT', () => bye('SIGINT'));
    });
  });
}
