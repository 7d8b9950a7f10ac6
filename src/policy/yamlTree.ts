// A YAML (or JSON) document as a small tree with a line number on every node,
// so that the rules file can say where each mistake is. Scalars keep the text
// as written: 0x10 stays hex and a 128-bit label loses no digits.
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import { UsageError } from '../errors';

/** Bounds the work a file of aliases to aliases can cause. */
const MAX_NODES = 2_000_000;

export type Tree = TreeMap | TreeSeq | TreeScalar;
export interface TreeMap {
  kind: 'map';
  line: number;
  entries: TreeEntry[];
}
export interface TreeEntry {
  key: string;
  line: number;
  value: Tree;
}
export interface TreeSeq {
  kind: 'seq';
  line: number;
  items: Tree[];
}
export interface TreeScalar {
  kind: 'scalar';
  line: number;
  value: unknown;
  /** The scalar as written, so 0x10 stays hex and a 128-bit label loses no digits. */
  text: string;
}

/** The document's tree, or undefined for a document with nothing in it. */
export function readTree(text: string, file: string): Tree | undefined {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, intAsBigInt: true, prettyErrors: false });
  const err = doc.errors[0];
  if (err) {
    const line = lineCounter.linePos(err.pos[0]).line;
    const what = err.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    throw new UsageError(`${file}:${line}: ${what}; fix the YAML (or JSON) syntax there`);
  }
  if (doc.contents === null) return undefined;
  const budget = { nodes: 0 };
  return toTree(doc.contents, { doc, lineCounter, file, budget }, 1);
}

interface TreeContext {
  doc: Document;
  lineCounter: LineCounter;
  file: string;
  budget: { nodes: number };
}

function lineOf(ctx: TreeContext, node: unknown, fallback: number): number {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range ? ctx.lineCounter.linePos(range[0]).line : fallback;
}

function toTree(node: unknown, ctx: TreeContext, fallbackLine: number, depth = 0): Tree {
  const line = lineOf(ctx, node, fallbackLine);
  if (++ctx.budget.nodes > MAX_NODES || depth > 64) {
    throw new UsageError(`${ctx.file}:${line}: the file nests or repeats too much (aliases?); write it out plainly`);
  }
  if (isAlias(node)) return toTree(node.resolve(ctx.doc), ctx, line, depth + 1);
  if (isMap(node)) {
    const entries = node.items.map((pair) => toEntry(pair, ctx, line, depth));
    return { kind: 'map', line, entries };
  }
  if (isSeq(node)) return { kind: 'seq', line, items: node.items.map((i) => toTree(i, ctx, line, depth + 1)) };
  if (isScalar(node)) {
    const text = typeof node.source === 'string' ? node.source : String(node.value);
    return { kind: 'scalar', line, value: node.value, text };
  }
  return { kind: 'scalar', line, value: null, text: '' };
}

function toEntry(pair: unknown, ctx: TreeContext, line: number, depth: number): TreeEntry {
  if (!isPair(pair) || !isScalar(pair.key)) {
    throw new UsageError(`${ctx.file}:${line}: a key must be a plain name; write name: value`);
  }
  const keyLine = lineOf(ctx, pair.key, line);
  const key = String(pair.key.value);
  return { key, line: keyLine, value: toTree(pair.value, ctx, keyLine, depth + 1) };
}
