// Splits an iptables-save or iptables command line into words as a shell
// would for the quoting iptables-save writes: "double quotes" with \" and \\
// escapes (comments), 'single quotes' taken literally, pieces next to each
// other joined into one word.
import { ValueError } from './valueError';

export function tokenize(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === ' ' || c === '\t') {
      if (word !== undefined) words.push(word);
      word = undefined;
      i++;
    } else if (c === '"' || c === "'") {
      const [text, next] = quoted(line, i);
      word = (word ?? '') + text;
      i = next;
    } else {
      word = (word ?? '') + c;
      i++;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** The text of the quoted piece starting at `start`, and the index after its closing quote. */
function quoted(line: string, start: number): [string, number] {
  const quote = line[start];
  let text = '';
  for (let i = start + 1; i < line.length; i++) {
    const c = line[i];
    if (c === quote) return [text, i + 1];
    if (quote === '"' && c === '\\' && i + 1 < line.length) {
      text += line[++i];
    } else {
      text += c;
    }
  }
  throw new ValueError(`a ${quote === '"' ? 'double' : 'single'} quote is not closed; close it on the same line`);
}
