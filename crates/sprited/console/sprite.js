// #/sprites/<name>[/<tab>]: one sprite's header (live status, URL) and its
// tabs. A tab's content is made the first time it is shown and kept while
// the page is open (the terminal stays connected on other tabs).

import { getJSON } from './api.js';
import { h, replace } from './dom.js';
import { spriteWatch } from './watch.js';
import { spriteHash, TABS } from './router.js';
import { spritePath } from './url.js';
import { urlLink, statusClass } from './list.js';
import { mountTerminal } from './terminal.js';
import { mountSessions } from './sessions.js';
import { mountFiles } from './files.js';
import { mountCheckpoints } from './checkpoints.js';
import { mountServices } from './services.js';
import { mountUsage } from './usage.js';
import { mountSettings } from './settings.js';

const TAB_LABELS = {
  terminal: 'Terminal',
  sessions: 'Sessions',
  files: 'Files',
  checkpoints: 'Checkpoints',
  services: 'Services',
  usage: 'Usage',
  settings: 'Settings',
};

const MOUNTS = {
  terminal: mountTerminal,
  sessions: mountSessions,
  files: mountFiles,
  checkpoints: mountCheckpoints,
  services: mountServices,
  usage: mountUsage,
  settings: mountSettings,
};

export function mountSprite(container, route) {
  const name = route.name;
  document.title = `${name} · sprited console`;
  const ctl = new AbortController();
  // Tabs tell each other things: "restored" (files changed), "attach".
  const events = new EventTarget();
  const mounted = new Map(); // tab → its view {show, hide, unmount}
  let active = null;

  const status = h('span', { id: 'sprite-status', class: 'status-badge', role: 'status', 'aria-live': 'polite' }, '…');
  const headerUrl = h('span', { class: 'sprite-header-url' });
  const pageError = h('p', { id: 'sprite-error', class: 'error', role: 'alert' });
  const tablist = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Sprite sections' });
  const panels = h('div', { class: 'panels' });
  const buttons = {};
  const panelEls = {};

  container.append(
    h('div', { class: 'page-head sprite-head' },
      h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Sprites'), ' / '),
      h('h1', {}, name),
      h('span', { class: 'label' }, 'Status: ', status),
      headerUrl),
    pageError,
  );

  function paintStatus(st) {
    status.textContent = st || 'unknown';
    status.className = 'status-badge ' + statusClass(st);
  }

  const ctx = {
    name,
    sprite: null,
    signal: ctl.signal,
    events,
    /** Show another tab (as a link would). */
    selectTab(tab) {
      location.hash = spriteHash(name, tab);
    },
    /** Open session `id` in the terminal tab. */
    attach(id) {
      ctx.pendingAttach = String(id);
      if (active === 'terminal') showActive();
      else ctx.selectTab('terminal');
    },
    pendingAttach: null,
    isActive(tab) {
      return active === tab;
    },
    async reloadSprite() {
      ctx.sprite = await getJSON(spritePath(name), { signal: ctl.signal });
      return ctx.sprite;
    },
  };

  for (const tab of TABS) {
    const b = h('button', {
      type: 'button', role: 'tab', id: 'tab-' + tab, 'aria-controls': 'panel-' + tab,
      'aria-selected': 'false', tabindex: '-1', class: 'tab',
    }, TAB_LABELS[tab]);
    b.addEventListener('click', () => ctx.selectTab(tab));
    b.addEventListener('keydown', onTabKey);
    buttons[tab] = b;
    tablist.append(b);
    const p = h('section', { role: 'tabpanel', id: 'panel-' + tab, 'aria-labelledby': 'tab-' + tab, class: 'panel', hidden: true });
    panelEls[tab] = p;
    panels.append(p);
  }

  // Arrow keys move along the tabs (and show them), Home/End to the ends.
  function onTabKey(ev) {
    const i = TABS.indexOf(ev.currentTarget.id.slice(4));
    let j = null;
    if (ev.key === 'ArrowRight' || ev.key === 'ArrowDown') j = (i + 1) % TABS.length;
    else if (ev.key === 'ArrowLeft' || ev.key === 'ArrowUp') j = (i - 1 + TABS.length) % TABS.length;
    else if (ev.key === 'Home') j = 0;
    else if (ev.key === 'End') j = TABS.length - 1;
    if (j === null) return;
    ev.preventDefault();
    buttons[TABS[j]].focus();
    ctx.selectTab(TABS[j]);
  }

  function select(tab) {
    if (!TABS.includes(tab)) tab = 'terminal';
    if (active === tab) return;
    const prev = active;
    active = tab;
    for (const t of TABS) {
      const on = t === tab;
      buttons[t].setAttribute('aria-selected', on ? 'true' : 'false');
      buttons[t].tabIndex = on ? 0 : -1;
      panelEls[t].hidden = !on;
    }
    if (prev && mounted.get(prev) && mounted.get(prev).hide) mounted.get(prev).hide();
    document.title = `${name} · ${TAB_LABELS[tab]} · sprited console`;
    if (!ctx.sprite) return; // mounted once the sprite is known
    showActive();
  }

  function showActive() {
    let view = mounted.get(active);
    if (!view) {
      view = MOUNTS[active](panelEls[active], ctx) || {};
      mounted.set(active, view);
    }
    if (view.show) view.show();
  }

  const unsubscribe = spriteWatch.subscribe((ev) => {
    if (ev.kind !== 'sprite' || ev.name !== name) return;
    if (ev.status === 'destroyed') {
      paintStatus('destroyed');
      pageError.textContent = `The sprite ${name} was destroyed.`;
    } else {
      paintStatus(ev.status);
    }
  });

  select(route.tab);

  (async () => {
    try {
      const sp = await ctx.reloadSprite();
      paintStatus(spriteWatch.statusOf(name) || sp.status);
      replace(headerUrl, urlLink(sp.url, { id: 'sprite-header-url' }));
      container.append(tablist, panels);
      showActive();
    } catch (e) {
      if (e.name === 'AbortError') return;
      paintStatus(e.status === 404 ? 'not found' : 'unknown');
      pageError.replaceChildren(
        e.status === 404 ? `There is no sprite named ${name}. ` : `Could not load ${name}: ${e.message} `,
        h('a', { href: '#/' }, 'Back to the sprites'));
    }
  })();

  return {
    update(r) {
      select(r.tab);
    },
    unmount() {
      ctl.abort();
      unsubscribe();
      for (const v of mounted.values()) {
        try {
          if (v.unmount) v.unmount();
        } catch (e) {
          console.error('tab unmount', e);
        }
      }
    },
  };
}
