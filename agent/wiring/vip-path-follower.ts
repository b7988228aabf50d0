import { HA_ROLE } from '../../lib/contract.ts';
import { log } from '../log.ts';
import type { Observation } from '../ha/role.ts';
import type { AgentVipGroup } from '../ha/vip-groups.ts';
import { pathSlotOf, VipPath } from '../ha/vip-path.ts';

/**
 * A group's VIP path follows its role (eni): set up on the interface that carries its VIP while it
 * is here, removed when it leaves. On AWS IMDS says where the VIP is, and a bare hot-plugged ENI needs
 * its address; elsewhere the address is the signal, never the agent's to put back.
 */
export function vipPathFollower(g: AgentVipGroup, onAws: boolean, several: boolean): (o: Observation) => Promise<void> {
  const vipPath = new VipPath({ vip: g.vip, manageInterface: onAws, slot: pathSlotOf(g.position) });
  const named = several ? { group: g.name } : {};
  let pathTrouble: string | undefined;
  return async (o) => {
    let trouble: string | undefined;
    try {
      if (o.role === HA_ROLE.master && !o.iface) trouble = 'the VIP is attached to this instance but its interface is not visible yet (or IMDS gives no subnet for it)';
      else if (await vipPath.ensure(o.role === HA_ROLE.master ? o.iface : undefined)) log('info', o.iface && o.role === HA_ROLE.master ? 'VIP path set up: load-balanced flows leave through the VIP’s interface' : 'VIP path removed', { ...o.iface, ...named });
    } catch (e) {
      trouble = `cannot set up the VIP's path: ${(e as Error).message}`;
    }
    if (trouble && trouble !== pathTrouble) log('warn', trouble, { vip: g.vip, ...named });
    pathTrouble = trouble;
  };
}

