// Writing many lines to stdout without holding them: respects backpressure,
// and stops quietly when the reader goes away (| head).
export class LineWriter {
  private buf: string[] = [];
  private size = 0;
  private closed = false;

  constructor(private readonly out: NodeJS.WriteStream = process.stdout) {
    out.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') this.closed = true;
    });
  }

  get gone(): boolean {
    return this.closed;
  }

  async line(s: string): Promise<void> {
    this.buf.push(s);
    this.size += s.length;
    if (this.size > 1 << 16) await this.flush();
  }

  async flush(): Promise<void> {
    if (!this.buf.length || this.closed) return;
    const chunk = this.buf.join('\n') + '\n';
    this.buf = [];
    this.size = 0;
    if (!this.out.write(chunk)) await new Promise<void>((r) => this.out.once('drain', () => r()));
  }
}
