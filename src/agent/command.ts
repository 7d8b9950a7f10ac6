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
    // Handled from the start: a signal during start-up stops the agent once
    // it has started, instead of killing it half way.
    let signalled: string | null = null;
    let wake: () => void = () => undefined;
    const stopped = new Promise<void>((resolve) => (wake = resolve));
    const onSignal = (sig: string) => {
      signalled = sig;
      wake();
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
    const running = await startAgent(o, log);
    await stopped;
    log.info(`${signalled}: stopping; programs stay attached and maps stay pinned under ${o.bpfRoot}`);
    running.stop();
  });
}
