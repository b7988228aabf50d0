/**
 * The agent's role per VIP group — a watcher each, from where that group's VIP lives — and the
 * agent's role as its peers and session sync see it: MASTER while it owns any group, BACKUP once
 * every group has been looked at and none is here, unknown before.
 */
import { HA_ROLE } from '../../lib/contract.ts';
import type { Role, RoleWatcher } from './role.ts';
import type { AgentVipGroup } from './vip-groups.ts';

export interface GroupRole {
  group: string;
  vip: string;
  state: Role | undefined;
}

export class GroupRoles {
  readonly watchers: ReadonlyArray<{ group: AgentVipGroup; watcher: RoleWatcher }>;

  constructor(groups: readonly AgentVipGroup[], make: (group: AgentVipGroup) => RoleWatcher) {
    this.watchers = groups.map((group) => ({ group, watcher: make(group) }));
  }

  /** MASTER while any group is here; BACKUP once every group was seen elsewhere; undefined before. */
  get current(): Role | undefined {
    const roles = this.watchers.map((w) => w.watcher.current);
    if (roles.includes(HA_ROLE.master)) return HA_ROLE.master;
    return roles.every((r) => r === HA_ROLE.backup) ? HA_ROLE.backup : undefined;
  }

  /** The groups this instance owns now. */
  owned(): string[] {
    return this.watchers.filter((w) => w.watcher.current === HA_ROLE.master).map((w) => w.group.name);
  }

  rows(): GroupRole[] {
    return this.watchers.map((w) => ({ group: w.group.name, vip: w.group.vip, state: w.watcher.current }));
  }

  start(): void {
    for (const w of this.watchers) w.watcher.start();
  }

  stop(): void {
    for (const w of this.watchers) w.watcher.stop();
  }
}
