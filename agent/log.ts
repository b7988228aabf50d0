/** The agent's log: one JSON line per event on stdout (journald and the CloudWatch agent take it from there). */
export function log(level: 'info' | 'warn' | 'error', msg: string, extra: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...extra })}\n`);
}
