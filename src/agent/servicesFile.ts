// The agent's --services-file: the services it programs into the load
// balancer, for users without Kubernetes (the Katran / IPVS use). The file is
// read and checked before the agent touches anything; afterwards it is
// watched, and a change is applied through the writer, which touches only the
// entries that differ. A file that no longer parses is reported in one line
// and the services in force stay as they are.
import * as fs from 'node:fs';
import { Datapath } from '../datapath/datapath';
import { LB_MAPS } from '../datapath/tables';
import { LbService } from '../lb/lbService';
import { LbMaps, LbWriter, lbTouched } from '../lb/lbWriter';
import { parseServicesFile } from '../lb/servicesFile';
import { SourceRangeWriter } from '../lb/sourceRanges';
import { UsageError } from '../errors';
import { AgentOptions } from './options';
import { watchFile } from './fileWatch';
import { Logger } from './log';
import { LbStatus } from './http';

/** Reads and checks the file: a UsageError with its line when it does not parse. */
export function readServicesFile(file: string): LbService[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--services-file: cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`);
  }
  return parseServicesFile(text, file);
}

export interface ServicesFileWatch {
  /** Names by service id and table rebuilds, for /metrics. */
  lbStatus: LbStatus;
  stop(): void;
}

export async function startServicesFile(
  dp: Datapath,
  o: AgentOptions,
  first: LbService[],
  log: Logger,
): Promise<ServicesFileWatch> {
  const file = o.servicesFile!;
  const maps = Object.fromEntries(LB_MAPS.map((m) => [m, dp.maps[m]])) as unknown as LbMaps;
  const writer = await LbWriter.restore(maps, {
    maglevTableSize: o.maglevTableSize,
    hashSeed: o.maglevHashSeed.murmur,
  });
  const ranges = new SourceRangeWriter({
    tsct_lb4_source_range: dp.maps.tsct_lb4_source_range,
    tsct_lb6_source_range: dp.maps.tsct_lb6_source_range,
  });
  const lbStatus: LbStatus = { names: new Map(), tablesRebuilt: 0 };
  const apply = async (services: LbService[], why: string) => {
    ranges.add(services);
    const r = await writer.apply(services);
    await ranges.prune(services);
    lbStatus.names = new Map(services.filter((x) => x.name).map((x) => [x.id, x.name!]));
    lbStatus.tablesRebuilt += r.tablesRebuilt;
    log.info(
      `services (${why}): ${services.length} from ${file}; ${lbTouched(r)} entries written or removed, ` +
        `${r.tablesRebuilt} backend tables rebuilt`,
    );
  };
  await apply(first, 'start');
  let running = Promise.resolve();
  const reload = () => {
    let services: LbService[];
    try {
      services = readServicesFile(file);
    } catch (e) {
      log.warn(`${(e as Error).message}; the services in force stay as they are`);
      return;
    }
    running = running.then(() =>
      apply(services, 'changed').catch((e) =>
        log.error(`services from ${file} not applied: ${(e as Error).message}; the services in force stay`),
      ),
    );
  };
  const watch = watchFile(file, reload);
  return { lbStatus, stop: () => watch.stop() };
}
