// Typed access to the datapath's structs and enums, whose offsets come from
// the object's BTF (generated/layouts.ts). Code here never hard-codes an offset.
import { ENUMS, STRUCTS } from './generated/layouts';

export { ENUMS, STRUCTS };

export type StructName = keyof typeof STRUCTS;
type Fields<S extends StructName> = (typeof STRUCTS)[S]['fields'];
export type FieldName<S extends StructName> = keyof Fields<S> & string;

interface FieldDesc {
  offset: number;
  size: number;
  count: number;
}

function desc<S extends StructName>(s: S, f: FieldName<S>): FieldDesc {
  return (STRUCTS[s].fields as unknown as Record<string, FieldDesc>)[f];
}

/** Where a field starts in its struct: for loops over packed values that should not build a view per entry. */
export function fieldOffset<S extends StructName>(s: S, f: FieldName<S>): number {
  return desc(s, f).offset;
}

/**
 * A view of one struct in a Buffer. Integers are host order (little endian),
 * except where the C type is big endian (__be16/__be32): use bytes() for those.
 */
export class StructView<S extends StructName> {
  constructor(
    readonly struct: S,
    readonly buf: Buffer,
  ) {}

  static alloc<S extends StructName>(struct: S): StructView<S> {
    return new StructView(struct, Buffer.alloc(STRUCTS[struct].size));
  }

  static sizeOf(struct: StructName): number {
    return STRUCTS[struct].size;
  }

  /** An unsigned integer field (or element i of an array field), host order. */
  u(f: FieldName<S>, i = 0): number {
    const d = desc(this.struct, f);
    const at = d.offset + i * d.size;
    switch (d.size) {
      case 1:
        return this.buf.readUInt8(at);
      case 2:
        return this.buf.readUInt16LE(at);
      case 4:
        return this.buf.readUInt32LE(at);
      default:
        return Number(this.buf.readBigUInt64LE(at));
    }
  }

  /** A 64-bit field (or element i), exactly. */
  u64(f: FieldName<S>, i = 0): bigint {
    const d = desc(this.struct, f);
    return this.buf.readBigUInt64LE(d.offset + i * d.size);
  }

  set(f: FieldName<S>, value: number | bigint, i = 0): this {
    const d = desc(this.struct, f);
    const at = d.offset + i * d.size;
    switch (d.size) {
      case 1:
        this.buf.writeUInt8(Number(value), at);
        break;
      case 2:
        this.buf.writeUInt16LE(Number(value), at);
        break;
      case 4:
        this.buf.writeUInt32LE(Number(value), at);
        break;
      default:
        this.buf.writeBigUInt64LE(BigInt(value), at);
    }
    return this;
  }

  /** The raw bytes of a field (all elements of an array field): network-order fields, labels. */
  bytes(f: FieldName<S>): Buffer {
    const d = desc(this.struct, f);
    return this.buf.subarray(d.offset, d.offset + d.size * d.count);
  }
}

/** Names of an enum's values by value, with the C prefix dropped: REASON_CT_NEW -> CT_NEW. */
export function enumNames<E extends keyof typeof ENUMS>(e: E, prefix: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const [k, v] of Object.entries(ENUMS[e]))
    out.set(v as number, k.startsWith(prefix) ? k.slice(prefix.length) : k);
  return out;
}
