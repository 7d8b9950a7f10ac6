import * as fs from 'node:fs';

// Writing a large listing to stdout. Lines are copied into one reused buffer
// as they are made, so that no string outlives its line (a listing of a
// million connections otherwise spends most of its time collecting garbage),
// and the buffer goes out in large writes. A reader that goes away (| head)
// ends the listing quietly.
export class LineWriter {
  private closed = false;
  private readonly buf = Buffer.allocUnsafe(4 << 20);
  private pos = 0;

  constructor(private readonly fd = 1) {}

  get gone(): boolean {
    return this.closed;
  }

  line(s: string): void {
    if (this.closed) return;
    if (this.pos + s.length + 1 > this.buf.length) this.flush();
    // Listings are ASCII: latin1 is the cheapest encoding of it.
    this.pos += this.buf.write(s, this.pos, 'latin1');
    this.buf[this.pos++] = 0x0a;
  }

  flush(): void {
    let off = 0;
    while (off < this.pos && !this.closed) {
      try {
        off += fs.writeSync(this.fd, this.buf, off, this.pos - off);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') continue;
        if (code === 'EPIPE') this.closed = true;
        else throw e;
      }
    }
    this.pos = 0;
  }
}
