// The dashboard's shell: hash routes (#/market, #/new, #/session/<id>, #/history,
// #/earnings, #/node), the header, and the signed-out view. Each page is a module with
// `render(ctx)`; `ctx` owns the page's timers, event sources and clean-ups, all ended
// when the page is left.

import { get, post, ApiError, SIGNED_OUT } from './lib/api.js';
import { h, replace, working, errorNotice } from './lib/dom.js';
import { shortId } from './lib/format.js';
// Pages load when first shown, so the first load carries only the page it shows.
const PAGES = {
  market: { title: 'Marketplace', load: () => import('./pages/market.js') },
  new: { title: 'New session', load: () => import('./pages/new-session.js') },
  session: { title: 'Session', load: () => import('./pages/console.js') },
  history: { title: 'History', load: () => import('./pages/history.js') },
  earnings: { title: 'Earnings', load: () => import('./pages/earnings.js') },
  node: { title: 'Node', load: () => import('./pages/node.js') },
};
const DEFAULT = 'market';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const whoNode = document.getElementById('who-node');

let current = null; // the live page's context
let signedOut = false;
let firstRoute = true;

/** What a page gets: where it is, and the means to run work that ends with it. */
class PageContext {
  constructor(route, args, params) {
    this.route = route;
    this.args = args;
    this.params = params;
    this.main = main;
    this.live = true;
    this.cleanups = [];
  }

  /** Whether the page is still shown (async work checks before touching the DOM). */
  alive() {
    return this.live && current === this;
  }

  /** Runs `fn` every `ms` while the page is shown; never two runs at once. */
  every(ms, fn) {
    let running = false;
    const id = setInterval(async () => {
      if (running || !this.alive()) return;
      running = true;
      try {
        await fn();
      } catch (e) {
        if (!(e instanceof ApiError)) console.error(e);
      } finally {
        running = false;
      }
    }, ms);
    const stop = () => clearInterval(id);
    this.cleanups.push(stop);
    return stop;
  }

  /** Closes `source` (an EventSource or anything with close()) when the page is left. */
  track(source) {
    this.cleanups.push(() => source.close());
    return source;
  }

  onLeave(fn) {
    this.cleanups.push(fn);
  }

  leave() {
    this.live = false;
    for (const fn of this.cleanups.splice(0)) {
      try {
        fn();
      } catch (e) {
        console.error(e);
      }
    }
  }

  /** Goes to another page (`#/session/…`). */
  go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, search = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const name = parts[0] && PAGES[parts[0]] ? parts[0] : null;
  return { name, args: parts.slice(1), params: new URLSearchParams(search) };
}

async function route() {
  if (signedOut) return;
  const { name, args, params } = parseHash();
  if (!name) {
    window.history.replaceState(null, '', `#/${DEFAULT}`);
    return route();
  }
  current?.leave();
  const ctx = new PageContext(name, args, params);
  current = ctx;
  const page = PAGES[name];
  document.title = `${page.title} · ORIEN node`;
  for (const link of nav.querySelectorAll('a[data-route]')) {
    if (link.dataset.route === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  replace(main, working('Loading…'));
  const moveFocus = !firstRoute;
  firstRoute = false;
  try {
    const module = await page.load();
    if (!ctx.alive()) return;
    await module.render(ctx);
  } catch (e) {
    if (!ctx.alive()) return;
    if (e instanceof ApiError && e.status === 401) return; // the signed-out view took over
    console.error(e);
    replace(main, h('h1', { tabindex: '-1' }, page.title), errorNotice(e, 'This page could not be shown'));
  }
  if (ctx.alive() && moveFocus) main.querySelector('h1')?.focus({ preventScroll: false });
}

function showSignedOut(reason) {
  if (signedOut) return;
  signedOut = true;
  current?.leave();
  current = null;
  nav.hidden = true;
  who.hidden = true;
  document.title = 'Signed out · ORIEN node';
  replace(main,
    h('section', { class: 'signed-out', 'data-testid': 'signed-out' },
      h('h1', { tabindex: '-1' }, 'Signed out'),
      h('p', {}, reason),
      h('p', {}, 'To sign in, run this on the node’s machine and open the link it prints:'),
      h('pre', {}, h('code', {}, 'orien-node dashboard')),
      h('p', { class: 'muted' }, 'A link works once and only for a few minutes. The link gives this browser a session; the node’s API token never reaches the page.')));
  main.querySelector('h1').focus();
}

window.addEventListener(SIGNED_OUT, () =>
  showSignedOut('This browser is not signed in to the node, or its session has ended.'));

document.getElementById('sign-out').addEventListener('click', async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    await post('/logout');
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      button.disabled = false;
      replace(main, errorNotice(e, 'Signing out failed'));
      return;
    }
  }
  showSignedOut('You signed out. The node keeps running; this browser can no longer reach its API.');
});

window.addEventListener('hashchange', route);

async function boot() {
  let info;
  try {
    info = await get('/v1/node');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return; // signed-out view shown
    replace(main, h('h1', {}, 'ORIEN node'), errorNotice(e, 'The node could not be reached'));
    return;
  }
  whoNode.textContent = `Node ${shortId(info.id)}`;
  whoNode.title = info.id;
  nav.hidden = false;
  who.hidden = false;
  await route();
}

boot();
