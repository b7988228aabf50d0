/** Runs `tick` every `everyMs` after the previous run ends (never two at once); `stop()` waits for the run under way. */
export class Poller {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly tick: () => Promise<void>;
  private readonly everyMs: number;
  private readonly onError: (e: Error) => void;

  constructor(tick: () => Promise<void>, everyMs: number, onError: (e: Error) => void) {
    this.tick = tick;
    this.everyMs = everyMs;
    this.onError = onError;
  }

  start(): void {
    this.timer = setTimeout(() => {
      this.running = this.tick()
        .catch((e: Error) => this.onError(e))
        .finally(() => {
          if (this.timer) this.start();
        });
    }, this.everyMs);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
