// The tsct executable: the CLI's commands and the agent's, wired together
// here so that neither the CLI nor the domain code imports the agent.
import { main } from './cli/main';
import { addAgentCommand } from './agent/command';

export function run(argv: string[]): Promise<number> {
  return main(argv, addAgentCommand);
}

if (require.main === module) {
  run(process.argv).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`tsct: ${e instanceof Error ? e.message : e}\n`);
      process.exitCode = 1;
    },
  );
}
