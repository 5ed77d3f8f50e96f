// How the states of sessions and calls read, the same on every page.

import { badge } from './dom.js';

/** A session's state: active (or suspended), completed, expired, failed. */
export function stateBadge(session) {
  const kinds = { active: 'ok', completed: 'info', expired: 'warn', failed: 'bad' };
  if (session.state === 'active' && session.suspend_reason) {
    return badge(`suspended: ${session.suspend_reason.replaceAll('_', ' ')}`, 'warn');
  }
  return badge(session.state, kinds[session.state]);
}

/** A call's state: its exit code once it exited, why it failed, or pending / running. */
export function execBadge(exec) {
  if (exec.state === 'completed') return badge(`exit ${exec.exit_code ?? '?'}`, exec.exit_code === 0 ? 'ok' : 'warn');
  if (exec.state === 'failed') return badge(`failed: ${(exec.failure ?? 'unknown').replaceAll('_', ' ')}`, 'bad');
  return badge(exec.state, 'info');
}
