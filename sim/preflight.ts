/** What the demo needs from the machine, checked before it starts anything. */
import { spawnSync } from 'node:child_process';

/** What the demo needs from the machine; one line per missing thing. */
export function preflight(): string[] {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push('Linux (network namespaces)');
  if (process.getuid?.() !== 0) missing.push('root (run it with sudo: it makes network namespaces and nftables tables)');
  if (Number(process.versions.node.split('.')[0]) < 24) missing.push(`Node.js 24 (this is ${process.versions.node}; scripts/n24 runs with it)`);
  const has = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
  for (const [cmd, args, pkg] of [
    ['nft', ['--version'], 'nftables'],
    ['conntrack', ['--version'], 'conntrack'],
    ['ip', ['-V'], 'iproute2'],
    ['curl', ['--version'], 'curl'],
    ['python3', ['--version'], 'python3'],
  ] as const) {
    if (!has(cmd, [...args])) missing.push(`${cmd} (apt-get install ${pkg})`);
  }
  if (!has('moto_server', ['--help'])) missing.push('moto_server, the AWS emulator (bash scripts/setup installs it into .venv; scripts/n24 puts it on PATH)');
  return missing;
}
