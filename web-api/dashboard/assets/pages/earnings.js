// Earnings: as provider, what was acknowledged, settled and is withdrawable, per day and
// in its 90/7/3 parts, the settlements with their transactions, "Settle now" and
// "Withdraw earnings"; as renter, the escrow lanes with the reclaim of an unspent
// deposit (ask to close, wait out the thaw window, take the deposit back).

import { get, post, query, seg, ApiError, isNoChain } from '../lib/api.js';
import { h, replace, table, errorNotice, notice, working, busy, idCode, badge, card, facts } from '../lib/dom.js';
import { usdc, toMicros, fromMicros, sumMicros, split, time, chainTime, countdown } from '../lib/format.js';
import { dailyBars, fillDays } from '../lib/chart.js';

export async function render(ctx) {
  const walletEl = h('div', { 'data-testid': 'wallet' });
  const providerEl = h('div');
  const renterEl = h('div');
  const moneyResult = h('div', { 'aria-live': 'polite', 'data-testid': 'money-result' });
  const reclaimResult = h('div', { 'aria-live': 'polite', 'data-testid': 'reclaim-area' });
  const settleButton = h('button', { type: 'button', 'data-testid': 'settle-now' }, 'Settle now');
  const withdrawButton = h('button', { type: 'button', 'data-testid': 'withdraw' }, 'Withdraw earnings');
  settleButton.addEventListener('click', settle);
  withdrawButton.addEventListener('click', withdraw);

  const providerSection = h('section', { 'aria-labelledby': 'as-provider-h' },
    h('h2', { id: 'as-provider-h' }, 'As provider'),
    h('p', { class: 'muted' }, 'Renters acknowledge each receipt; settling redeems their vouchers on chain, which credits your 90 % in the escrow; withdrawing moves it to the wallet.'),
    h('p', { class: 'row' }, settleButton, withdrawButton),
    moneyResult,
    providerEl);
  const renterSection = h('section', { 'aria-labelledby': 'as-renter-h' },
    h('h2', { id: 'as-renter-h' }, 'As renter: lanes'),
    h('p', { class: 'muted' }, 'Each provider is paid from an escrow lane your wallet funded. To take back what a lane holds unspent, ask to close it; during the thaw window the provider may still settle what it is owed; then take the rest back.'),
    reclaimResult,
    renterEl);

  const notProvider = h('section', { 'aria-labelledby': 'as-provider-h' },
    h('h2', { id: 'as-provider-h' }, 'As provider'),
    h('p', { class: 'muted' }, 'This node sells no tools, so it earns nothing. Run it with --provider-config to sell some.'));

  replace(ctx.main,
    h('h1', { tabindex: '-1' }, 'Earnings'),
    walletEl,
    h('div', { 'data-testid': 'sections' }, working('Reading the ledger and the chain…')));

  const thaw = new Map(); // lane → thaw end (chain seconds) learned from a reclaim answer
  const payouts = new Map(); // provider → payout address
  let data = null;

  async function load() {
    const results = await Promise.allSettled([
      get('/v1/wallet'), get('/v1/lanes'), get('/v1/settlements'), get(`/v1/earnings${query({ by: 'day' })}`), get('/v1/tools'), get('/v1/node'),
    ]);
    for (const r of results) {
      if (r.status === 'rejected' && !isNoChain(r.reason)) throw r.reason;
    }
    const value = (i, fallback) => (results[i].status === 'fulfilled' ? results[i].value : fallback);
    return {
      wallet: value(0, null),
      lanes: value(1, []),
      // The ledger keeps the settlements of lanes on both sides: this node's as provider
      // are its earnings, the others paid its providers from its own lanes.
      settlements: value(2, []).filter((s) => s.provider === results[5].value?.id),
      paidFromLanes: value(2, []).filter((s) => s.provider !== results[5].value?.id),
      daily: value(3, []),
      sells: value(4, []).length > 0,
    };
  }

  let drawn = '';
  async function reload() {
    const next = await load();
    if (!ctx.alive()) return;
    // Redraw only what changed, so a periodic look does not move the keyboard focus.
    const key = JSON.stringify([next, [...thaw]]);
    if (key === drawn) return;
    drawn = key;
    data = next;
    draw();
  }

  function draw() {
    const { wallet } = data;
    replace(walletEl, wallet
      ? h('div', { class: 'panel' },
        h('h2', {}, 'Wallet'),
        facts([
          ['Address', h('code', {}, wallet.address)],
          ['USDC in the wallet', h('span', { 'data-testid': 'wallet-usdc', 'data-micros': String(toMicros(wallet.usdc)) }, `${usdc(wallet.usdc)} USDC`)],
          ['Chain', [`${wallet.chain_id} · escrow `, idCode(wallet.escrow, 10, 8)]],
        ]))
      : notice('info', h('p', {}, 'This node is not connected to a chain: what it earns stays in the ledgers, and there is nothing to settle or withdraw.')));
    settleButton.disabled = !wallet;
    withdrawButton.disabled = !wallet || (toMicros(wallet.earnings) ?? 0n) <= 0n;
    drawProvider();
    drawRenter();
    const earns = data.sells || data.lanes.some((l) => l.role === 'provider') || data.settlements.length > 0
      || data.daily.some((d) => d.earned_micros !== 0);
    const sections = ctx.main.querySelector('[data-testid="sections"]');
    replace(sections, earns ? [providerSection, renterSection] : [renterSection, notProvider]);
  }

  function drawProvider() {
    const lanes = data.lanes.filter((l) => l.role === 'provider');
    const acked = sumMicros(lanes.map((l) => l.acked));
    const settled = sumMicros(lanes.map((l) => l.settled));
    const owed = sumMicros(lanes.map((l) => l.owed));
    const parts = lanes.reduce((sum, l) => {
      const s = split(toMicros(l.acked) ?? 0n);
      return { provider: sum.provider + s.provider, fee: sum.fee + s.fee, reserve: sum.reserve + s.reserve };
    }, { provider: 0n, fee: 0n, reserve: 0n });
    const confirmed = data.settlements.filter((s) => s.state === 'confirmed');
    const paidParts = {
      provider: sumMicros(confirmed.map((s) => s.provider_part)),
      fee: sumMicros(confirmed.map((s) => s.fee_part)),
      reserve: sumMicros(confirmed.map((s) => s.reserve_part)),
    };
    const withdrawable = data.wallet ? toMicros(data.wallet.earnings) ?? 0n : null;
    const amountCard = (label, micros, testid) => card(label, `${fromMicros(micros)} USDC`, testid, { 'data-micros': String(micros) });

    replace(providerEl,
      h('div', { class: 'cards' },
        amountCard('Acknowledged', acked, 'earn-acked'),
        amountCard('Settled on chain', settled, 'earn-settled'),
        amountCard('Not settled yet', owed, 'earn-owed'),
        withdrawable !== null ? amountCard('Withdrawable (your 90 %)', withdrawable, 'earn-withdrawable') : null),
      table({
        label: 'The 90/7/3 split',
        testid: 'split',
        columns: [{ label: 'Part' }, { label: 'Of acknowledged, USDC', num: true }, { label: 'Of settled, USDC', num: true }],
        rows: [
          ['Provider (90 %)', fromMicros(parts.provider), fromMicros(paidParts.provider)],
          ['Network fee (7 %)', fromMicros(parts.fee), fromMicros(paidParts.fee)],
          ['Reserve (3 %)', fromMicros(parts.reserve), fromMicros(paidParts.reserve)],
        ],
      }),
      h('h3', {}, 'Earned per day'),
      dailyBars(fillDays(data.daily), { caption: 'Your share of acknowledged receipts per day', testid: 'earnings-chart' }),
      h('h3', {}, 'Settlements'),
      settlementTable(data.settlements, 'Settlements', 'settlements', 'renter'),
      h('h3', {}, 'Lanes paying this node'),
      table({
        label: 'Lanes paying this node',
        testid: 'provider-lanes',
        columns: [{ label: 'Renter' }, { label: 'Deposit', num: true }, { label: 'Acknowledged', num: true }, { label: 'Settled', num: true },
          { label: 'Not settled', num: true }, { label: 'Open sessions', num: true }, { label: 'State' }],
        rows: lanes.map((l) => [idCode(l.renter), usdc(l.deposit), usdc(l.acked), usdc(l.settled), usdc(l.owed), String(l.sessions_open), closeBadge(l)]),
        empty: 'No renter has paid this node through an escrow lane yet.',
      }));
  }

  function settlementTable(list, label, testid, peer) {
    return table({
      label,
      testid,
      columns: [{ label: 'Submitted' }, { label: 'State' }, { label: 'Transaction' }, { label: 'Block', num: true }, { label: 'Paid, USDC', num: true },
        { label: 'Provider 90 %', num: true }, { label: 'Fee 7 %', num: true }, { label: 'Reserve 3 %', num: true }, { label: 'Lane total after', num: true },
        { label: peer === 'renter' ? 'Renter node' : 'Provider node' }],
      rows: list.map((s) => ({
        props: { 'data-testid': 'settlement', 'data-tx': s.tx, 'data-state': s.state },
        cells: [time(s.submitted_at),
          badge(s.state, s.state === 'confirmed' ? 'ok' : s.state === 'voided' ? 'bad' : 'info'),
          idCode(s.tx, 10, 8), s.block ?? '—', usdc(s.paid), usdc(s.provider_part), usdc(s.fee_part), usdc(s.reserve_part),
          usdc(s.paid_up_to), idCode(peer === 'renter' ? s.renter : s.provider)],
      })),
      empty: 'No settlement yet.',
    });
  }

  function closeBadge(lane) {
    if (lane.close === 'open') return badge('open', 'ok');
    if (lane.close === 'thawing') return badge('closing: thaw window', 'warn');
    return badge('refundable', 'info');
  }

  function drawRenter() {
    const lanes = data.lanes.filter((l) => l.role === 'renter');
    replace(renterEl, table({
      label: 'Your lanes as renter',
      testid: 'lanes',
      columns: [{ label: 'Provider' }, { label: 'Deposit', num: true }, { label: 'Acknowledged', num: true }, { label: 'Settled', num: true },
        { label: 'Unspent', num: true }, { label: 'Open sessions', num: true }, { label: 'State' }, { label: 'Take the deposit back', wrap: true }],
      rows: lanes.map((l) => ({
        props: { 'data-testid': 'lane', 'data-lane': l.lane, 'data-provider-id': l.provider, 'data-close': l.close },
        cells: [idCode(l.provider), usdc(l.deposit), usdc(l.acked), usdc(l.settled),
          h('span', { 'data-testid': 'lane-refundable', 'data-micros': String(toMicros(l.refundable)) }, usdc(l.refundable)),
          String(l.sessions_open), closeBadge(l), reclaimCell(l)],
      })),
      empty: 'No lane yet: a lane is funded when you open a session with escrow payment.',
    }),
    data.paidFromLanes.length ? [h('h3', {}, 'Settlements from your lanes'),
      h('p', { class: 'muted' }, 'What your providers redeemed on chain from your lanes.'),
      settlementTable(data.paidFromLanes, 'Settlements from your lanes', 'lane-settlements', 'provider')] : null);
    tick();
  }

  function reclaimCell(lane) {
    const ends = lane.thaw_ends_at ?? thaw.get(lane.lane) ?? null;
    if (lane.close === 'open' && ends === null) {
      const nothing = (toMicros(lane.refundable) ?? 0n) <= 0n && (toMicros(lane.deposit) ?? 0n) <= (toMicros(lane.settled) ?? 0n);
      const button = h('button', { type: 'button', class: 'button-quiet small-button', 'data-testid': 'request-close' }, 'Request close');
      if (lane.sessions_open > 0) {
        button.disabled = true;
        return h('span', {}, button, h('span', { class: 'muted small' }, ' Close its open sessions first.'));
      }
      if (nothing) {
        button.disabled = true;
        return h('span', {}, button, h('span', { class: 'muted small' }, ' Nothing to take back.'));
      }
      button.addEventListener('click', () => requestClose(lane, button));
      return button;
    }
    const finish = h('button', { type: 'button', 'data-testid': 'finish-reclaim', 'data-thaw-ends': String(ends ?? 0) }, 'Take back the deposit');
    finish.addEventListener('click', () => finishClose(lane, finish));
    if (lane.close === 'refundable') finish.dataset.ready = 'true';
    return h('div', { class: 'stack' },
      h('div', { class: 'small' }, 'The thaw window ends ', h('span', { 'data-testid': 'thaw-ends' }, chainTime(ends)), ' (chain time).'),
      h('div', { class: 'countdown', 'data-testid': 'thaw-countdown', 'data-thaw-ends': String(ends ?? 0) }),
      h('div', {}, finish));
  }

  /** Updates the thaw countdowns; a deposit can be taken back once its window is over. */
  function tick() {
    const now = Date.now() / 1000;
    for (const el of ctx.main.querySelectorAll('.countdown[data-thaw-ends]')) {
      const left = Number(el.dataset.thawEnds) - now;
      el.textContent = left > 0 ? `refundable in ${countdown(left)}` : 'refundable now';
    }
    for (const button of ctx.main.querySelectorAll('button[data-testid="finish-reclaim"]')) {
      if (button.getAttribute('aria-busy') === 'true') continue;
      const due = button.dataset.ready === 'true' || Number(button.dataset.thawEnds) <= now;
      button.disabled = !due;
      button.title = due ? '' : 'Available when the thaw window is over';
    }
  }
  ctx.every(1000, tick);

  /** The payout address that names a lane: the node's own record, else the provider's. */
  async function payoutOf(lane) {
    if (lane.payout) return lane.payout;
    const provider = lane.provider;
    if (payouts.has(provider)) return payouts.get(provider);
    let payout = null;
    try {
      payout = (await get(`/v1/providers/${seg(provider)}`)).payout;
    } catch (e) {
      if (!(e instanceof ApiError) || e.status === 401) throw e;
      const offers = await get(`/v1/offers${query({ provider })}`);
      payout = offers[0]?.payout ?? null;
    }
    if (!payout) {
      throw new ApiError(409, { detail: 'This node has neither the provider’s profile nor an offer of it now, so it does not know the provider’s payout address that names the lane. Try again once the provider is online, or run `orien-node wallet reclaim --to <payout>`.' });
    }
    payouts.set(provider, payout);
    return payout;
  }

  async function requestClose(lane, button) {
    replace(reclaimResult);
    try {
      const view = await busy(button, 'Waiting for the chain…', async () =>
        post('/v1/wallet/reclaim', { to: await payoutOf(lane) }, { idempotent: true }));
      if (!ctx.alive()) return;
      thaw.set(lane.lane, view.thaw_ends_at);
      replace(reclaimResult, notice('ok', h('p', { 'data-testid': 'reclaim-requested', 'data-thaw-ends': String(view.thaw_ends_at) },
        'Close asked (transaction ', idCode(view.tx, 10, 8), `, block ${view.block}). The deposit can be taken back from ${chainTime(view.thaw_ends_at)}; until then the provider may settle what it is owed.`)));
      await reload();
    } catch (e) {
      if (ctx.alive() && e.status !== 401) replace(reclaimResult, errorNotice(e, 'The close was not asked'));
    }
  }

  async function finishClose(lane, button) {
    replace(reclaimResult);
    try {
      const view = await busy(button, 'Waiting for the chain…', async () =>
        post('/v1/wallet/reclaim/finish', { to: await payoutOf(lane) }, { idempotent: true }));
      if (!ctx.alive()) return;
      thaw.delete(lane.lane);
      replace(reclaimResult, notice('ok', h('p', { 'data-testid': 'reclaim-result', 'data-refund': view.refund },
        `Refunded ${usdc(view.refund)} USDC to the wallet (transaction `, idCode(view.tx, 10, 8), `, block ${view.block}).`)));
      await reload();
    } catch (e) {
      if (ctx.alive() && e.status !== 401) replace(reclaimResult, errorNotice(e, 'The deposit was not taken back'));
    }
  }

  async function settle() {
    replace(moneyResult);
    try {
      const txs = await busy(settleButton, 'Settling: waiting for the chain…', () => post('/v1/settlements', undefined, { idempotent: true }));
      if (!ctx.alive()) return;
      replace(moneyResult, txs.length
        ? notice('ok', h('div', { 'data-testid': 'settle-result', 'data-count': String(txs.length) },
          txs.map((t) => h('p', {}, 'Settled ', String(t.lanes.length), t.lanes.length === 1 ? ' lane' : ' lanes', ' in transaction ', idCode(t.tx, 10, 8),
            ` (block ${t.block}): your credit ${fromMicros(BigInt(t.provider_credit_micros))} USDC, fee ${usdc(t.fee)}, reserve ${usdc(t.reserve)}.`))))
        : notice('info', h('p', { 'data-testid': 'settle-result', 'data-count': '0' }, 'Nothing to settle: every acknowledged voucher is paid.')));
      await reload();
    } catch (e) {
      if (ctx.alive() && e.status !== 401) replace(moneyResult, errorNotice(e, 'Settling failed'));
    }
  }

  async function withdraw() {
    replace(moneyResult);
    try {
      const view = await busy(withdrawButton, 'Withdrawing: waiting for the chain…', () => post('/v1/wallet/withdraw', { what: 'earnings' }, { idempotent: true }));
      if (!ctx.alive()) return;
      replace(moneyResult, notice('ok', h('p', { 'data-testid': 'withdraw-result', 'data-amount': view.amount },
        `Withdrew ${usdc(view.amount)} USDC to `, h('code', {}, view.to), ' (transaction ', idCode(view.tx, 10, 8), `, block ${view.block}).`)));
      await reload();
    } catch (e) {
      if (ctx.alive() && e.status !== 401) replace(moneyResult, errorNotice(e, 'The withdrawal failed'));
    }
  }

  await reload();
  // Settlements confirm and thaw windows end without this page: look again now and then.
  ctx.every(10000, async () => {
    if (ctx.main.querySelector('[aria-busy="true"]')) return;
    await reload();
  });
}
