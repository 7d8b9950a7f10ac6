import { mapTypeName } from './constants';
import { addon, NativeObject, NativeObjectMapDesc, NativeObjectProgDesc } from './native';
import { BpfMap } from './map';
import { BpfProgram } from './program';

export interface ObjectMap extends NativeObjectMapDesc {
  typeName: string;
}
export type ObjectProgram = NativeObjectProgDesc;

/**
 * A BPF ELF object: open it, size and wire its maps, load it, then take
 * handles to its maps and programs. Handles stay valid after close().
 */
export class BpfObject {
  private constructor(
    private readonly native: NativeObject,
    readonly path: string,
  ) {}

  static open(path: string): BpfObject {
    return new BpfObject(new addon.NativeObject(path), path);
  }

  get maps(): ObjectMap[] {
    return this.native.maps().map((m) => ({ ...m, typeName: mapTypeName(m.type) }));
  }

  get programs(): ObjectProgram[] {
    return this.native.programs();
  }

  /** Sizes a map; only before load(). */
  setMaxEntries(map: string, maxEntries: number): this {
    this.native.setMaxEntries(map, maxEntries);
    return this;
  }

  /** Makes the object use the map pinned at path instead of creating its own; the layouts must match exactly. */
  reusePinnedMap(map: string, path: string): this {
    this.native.reusePinnedMap(map, path);
    return this;
  }

  /** Chooses whether a program is loaded; only before load(). */
  setAutoload(program: string, on: boolean): this {
    this.native.setAutoload(program, on);
    return this;
  }

  /** Creates the maps and loads the programs (verifier), off the event loop. */
  async load(): Promise<this> {
    await this.native.load();
    return this;
  }

  map(name: string): BpfMap {
    return new BpfMap(this.native.map(name));
  }

  program(name: string): BpfProgram {
    return new BpfProgram(this.native.program(name));
  }

  close(): void {
    this.native.close();
  }
}
