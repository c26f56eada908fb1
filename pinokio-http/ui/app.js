// PinokioCloud web UI: plain JavaScript, no build step, no dependencies.
// It talks to the HTTP API described in docs/api.md. Text from the server
// is only ever inserted with textContent / attributes, never innerHTML.
'use strict';

(function () {
  const API = '/api/v1';
  const POLL_APPS_MS = 3000;
  const POLL_INPUTS_MS = 4000;
  const TERM_MAX_LINES = 2000;
  const PAGE = 60;

  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);

  /** el('div', {class: 'x', 'data-testid': 'y', onclick: f}, child, 'text', ...) */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
        else if (k === 'text') e.textContent = String(v);
        else if (k === 'class') e.className = v;
        else if (k === 'hidden') e.hidden = !!v;
        else if (k === 'disabled') e.disabled = !!v;
        else if (k === 'checked') e.checked = !!v;
        else if (k === 'value') e.value = v;
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    append(e, children);
    return e;
  }

  function append(parent, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) append(parent, c);
      else if (c instanceof Node) parent.appendChild(c);
      else parent.appendChild(document.createTextNode(String(c)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  /** Only http(s) URLs become links (no javascript: or data: URLs). */
  function safeUrl(u) {
    if (typeof u !== 'string' || !u) return null;
    try {
      const p = new URL(u, location.href);
      return p.protocol === 'http:' || p.protocol === 'https:' ? p.href : null;
    } catch (_) {
      return null;
    }
  }

  function link(url, text, attrs) {
    const href = safeUrl(url);
    if (!href) return el('span', Object.assign({ text: text || url || '' }, attrs || {}));
    return el('a', Object.assign({ href, target: '_blank', rel: 'noopener noreferrer', text: text || url }, attrs || {}));
  }

  function fmtBytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '?';
    const u = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
    let i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + u[i];
  }

  function fmtSecs(s) {
    if (typeof s !== 'number' || !isFinite(s)) return '';
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function baseName(p) {
    if (typeof p !== 'string') return '';
    const parts = p.split(/[\\/]/);
    return parts[parts.length - 1] || p;
  }

  function plural(n, one, many) {
    return n + ' ' + (n === 1 ? one : (many || one + 's'));
  }

  const debounce = (f, ms) => {
    let t = null;
    return (...a) => { clearTimeout(t); t = setTimeout(() => f(...a), ms); };
  };

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, kind, message) {
      super(message || kind || ('HTTP ' + status));
      this.status = status;
      this.kind = kind;
    }
  }

  async function api(method, path, body) {
    const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(API + path, opts);
    } catch (e) {
      setOnline(false);
      throw new ApiError(0, 'network', 'cannot reach the server (' + e.message + ')');
    }
    setOnline(true);
    if (res.status === 204) return null;
    let data = null;
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (!res.ok) {
      const err = (data && data.error) || {};
      // 401: no or wrong token; 421 bad_host: a public Host (tunnel, proxy) without the token
      if ((res.status === 401 || (res.status === 421 && err.kind === 'bad_host')) && path !== '/login') showLogin();
      throw new ApiError(res.status, err.kind || 'http', err.message || text || res.statusText);
    }
    return data;
  }

  const get = (p) => api('GET', p);
  const post = (p, b) => api('POST', p, b === undefined ? {} : b);
  const enc = encodeURIComponent;

  let offline = false;
  function setOnline(ok) {
    if (ok === !offline) return;
    offline = !ok;
    document.body.classList.toggle('offline', offline);
    if (offline) toast('Lost the connection to the server; retrying…', 'error');
  }

  function reportError(what, e) {
    if (e && (e.status === 401 || e.kind === 'bad_host')) return; // the login form is showing
    toast(what + ': ' + (e && e.message ? e.message : String(e)), 'error');
  }

  // ---------------------------------------------------------------- toasts

  function toast(message, kind, opts) {
    opts = opts || {};
    const box = el('div', { class: 'toast ' + (kind || 'info'), role: kind === 'error' ? 'alert' : 'status', 'data-testid': 'toast' },
      el('span', { class: 'toast-msg', text: message }));
    if (opts.href && safeUrl(opts.href)) {
      box.appendChild(document.createTextNode(' '));
      box.appendChild(link(opts.href, opts.linkText || 'Open', { 'data-testid': 'toast-link', class: 'toast-link' }));
    }
    const close = el('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss', text: '×', onclick: () => box.remove() });
    box.appendChild(close);
    $('toasts').appendChild(box);
    const ms = opts.sticky ? 0 : (kind === 'error' ? 10000 : 6000);
    if (ms) setTimeout(() => box.remove(), ms);
    while ($('toasts').children.length > 5) $('toasts').firstChild.remove();
  }

  async function copyText(text, button) {
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        ok = true;
      }
    } catch (_) { ok = false; }
    if (!ok) {
      const ta = el('textarea', { class: 'offscreen', readonly: true });
      ta.value = text;
      document.body.appendChild(ta);
      ta.select();
      try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
      ta.remove();
    }
    if (button) {
      const old = button.textContent;
      button.textContent = ok ? 'Copied' : 'Copy failed';
      setTimeout(() => { button.textContent = old; }, 1500);
    }
  }

  function copyButton(text, testid) {
    const b = el('button', { class: 'btn small', type: 'button', 'data-testid': testid || 'copy', title: 'Copy to clipboard', text: 'Copy' });
    b.addEventListener('click', () => copyText(text, b));
    return b;
  }

  // ---------------------------------------------------------------- state

  const state = {
    tab: 'discover',
    apps: new Map(), // id -> app object
    appsLoaded: false,
    catalogOffset: 0,
    catalogTotal: 0,
    catalogSeq: 0,
    categoriesFilled: false,
    jobs: new Map(), // job id -> {job, card, es, ...}
    shownInputs: new Set(),
    inputQueue: [],
    currentInput: null,
    authed: true,
  };

  // ---------------------------------------------------------------- tabs

  const TABS = ['discover', 'library', 'terminal', 'tunnels'];

  function showTab(name, push) {
    if (!TABS.includes(name)) name = 'discover';
    state.tab = name;
    for (const t of TABS) {
      $('view-' + t).hidden = t !== name;
      const b = $('tab-' + t);
      b.setAttribute('aria-selected', t === name ? 'true' : 'false');
      b.classList.toggle('active', t === name);
    }
    if (push !== false && location.hash !== '#' + name) history.replaceState(null, '', '#' + name);
    if (name === 'library') refreshApps();
    if (name === 'terminal') refreshTermSources();
    if (name === 'tunnels') refreshTunnels();
    if (name === 'discover' && !state.catalogLoaded) loadCatalog(false);
  }

  // ---------------------------------------------------------------- system

  async function loadSystem() {
    try {
      const h = await get('/health');
      if (h && h.version) $('sys-version').textContent = 'v' + h.version;
    } catch (_) { /* shown by the other calls */ }
    try {
      const s = await get('/system');
      renderSystem(s || {});
    } catch (e) {
      if (e.status !== 401 && e.kind !== 'bad_host') $('sys-platform').textContent = '?';
    }
  }

  function renderSystem(s) {
    const d = s.doctor && typeof s.doctor === 'object' ? Object.assign({}, s.doctor, s) : s;
    let platform = d.platform;
    if (platform && typeof platform === 'object') platform = platform.platform || platform.name;
    if (!platform && d.layout) platform = d.layout.platform;
    const facts = d.facts || {};
    const arch = facts.arch ? ' · ' + facts.arch : '';
    $('sys-platform').textContent = (platform || facts.platform || '?') + arch;

    let gpus = d.gpus;
    if (gpus && !Array.isArray(gpus)) gpus = gpus.gpus;
    if (!Array.isArray(gpus)) gpus = facts.gpus || [];
    if (gpus.length === 0) {
      $('sys-gpus').textContent = 'none';
    } else {
      const names = gpus.map((g) => {
        if (typeof g === 'string') return g;
        const model = String(g.model || g.name || 'GPU').toUpperCase();
        const vram = g.vram_mib ? ' ' + Math.round(g.vram_mib / 1024) + ' GB' : '';
        return model + vram;
      });
      const counted = {};
      for (const n of names) counted[n] = (counted[n] || 0) + 1;
      $('sys-gpus').textContent = Object.entries(counted).map(([n, c]) => (c > 1 ? c + '× ' : '') + n).join(', ');
    }

    let disk = null;
    const disks = (d.layout && d.layout.disks) || d.disks || [];
    if (Array.isArray(disks) && disks.length) {
      const home = disks.find((x) => x.role === 'home') || disks[0];
      const sp = home.space || home;
      if (sp && typeof sp.available === 'number') {
        disk = fmtBytes(sp.available) + (typeof sp.total === 'number' ? ' of ' + fmtBytes(sp.total) : '');
      }
    }
    $('sys-disk').textContent = disk || '?';
    if (d.home) $('sys').title = 'home: ' + d.home + (d.engine_pid ? ' · engine pid ' + d.engine_pid : '');
    if (!$('sys-version').textContent && d.version) $('sys-version').textContent = 'v' + d.version;
  }

  // ---------------------------------------------------------------- discover

  function badge(text, cls, testid) {
    return el('span', { class: 'badge ' + (cls || ''), text, 'data-testid': testid || null });
  }

  async function loadCatalog(more) {
    const q = $('discover-q').value.trim();
    const cat = $('discover-category').value;
    const offset = more ? state.catalogOffset : 0;
    const seq = ++state.catalogSeq;
    const params = new URLSearchParams();
    if (q) params.set('q', q);
    if (cat) params.set('category', cat);
    params.set('limit', String(PAGE));
    params.set('offset', String(offset));
    let data;
    try {
      data = await get('/catalog?' + params.toString());
    } catch (e) {
      if (seq === state.catalogSeq) {
        $('discover-summary').textContent = '';
        reportError('Catalog', e);
      }
      return;
    }
    if (seq !== state.catalogSeq) return; // a newer search answered first
    state.catalogLoaded = true;
    const apps = (data && data.apps) || [];
    state.catalogTotal = data && typeof data.total === 'number' ? data.total : apps.length;
    state.catalogOffset = offset + apps.length;
    if (!state.categoriesFilled && data && Array.isArray(data.categories)) {
      const sel = $('discover-category');
      for (const c of data.categories) sel.appendChild(el('option', { value: c, text: c }));
      state.categoriesFilled = true;
      sel.value = cat;
    }
    const list = $('discover-list');
    if (!more) clear(list);
    for (const a of apps) list.appendChild(catalogCard(a));
    if (state.catalogTotal === 0) {
      list.appendChild(el('p', { class: 'empty', 'data-testid': 'discover-empty', text: q ? 'No app matches “' + q + '”.' : 'The catalog is empty.' }));
    }
    $('discover-summary').textContent = state.catalogTotal
      ? 'Showing ' + state.catalogOffset + ' of ' + plural(state.catalogTotal, 'app')
      : '';
    $('discover-more').hidden = state.catalogOffset >= state.catalogTotal;
  }

  function isInstalled(id, a) {
    return state.apps.has(id) || !!(a && a.installed);
  }

  function catalogCard(a) {
    const installed = isInstalled(a.id, a);
    const installable = a.installable !== false && (a.status === undefined || a.status === 'ok');
    const btn = el('button', {
      class: 'btn ' + (installed ? '' : 'primary'), type: 'button', 'data-testid': 'install-btn',
      text: installed ? 'Installed' : 'Install', disabled: installed || !installable,
      title: installable ? null : 'This app cannot be installed (' + (a.status || 'unavailable') + ')',
    });
    btn.addEventListener('click', () => installApp(a.id, btn));
    const tags = (a.tags || []).slice(0, 4).map((t) => el('span', { class: 'tag', text: t }));
    const statusBadge = a.status && a.status !== 'ok'
      ? badge(a.status.replace(/_/g, ' '), 'warn', 'app-status')
      : null;
    return el('article', { class: 'card', 'data-testid': 'catalog-card', 'data-app-id': a.id },
      el('div', { class: 'card-head' },
        el('h3', { class: 'card-title', text: a.name || a.id }),
        a.category ? badge(a.category, 'cat', 'app-category') : null),
      el('div', { class: 'small muted' },
        a.author ? el('span', { 'data-testid': 'app-author', text: 'by ' + a.author }) : null,
        el('span', { class: 'id', text: ' · ' + a.id })),
      a.summary ? el('p', { class: 'summary', 'data-testid': 'app-summary', text: a.summary }) : null,
      tags.length ? el('div', { class: 'tags' }, tags) : null,
      el('div', { class: 'card-foot' },
        el('span', {},
          installed ? badge('installed', 'ok', 'installed-badge') : null,
          statusBadge),
        el('span', { class: 'row' },
          safeUrl(a.repo_url) ? link(a.repo_url, 'Source', { class: 'small' }) : null,
          btn)));
  }

  async function installApp(id, btn) {
    if (btn) { btn.disabled = true; btn.textContent = 'Installing…'; }
    try {
      const r = await post('/apps/' + enc(id) + '/install', {});
      if (r && r.job) followJob(r.job);
      refreshApps();
    } catch (e) {
      if (btn) { btn.disabled = false; btn.textContent = 'Install'; }
      reportError('Install ' + id, e);
    }
  }

  function markCatalogInstalled() {
    for (const card of document.querySelectorAll('[data-testid="catalog-card"]')) {
      const id = card.getAttribute('data-app-id');
      const btn = card.querySelector('[data-testid="install-btn"]');
      const installed = state.apps.has(id);
      const has = card.querySelector('[data-testid="installed-badge"]');
      if (installed && !has) {
        const foot = card.querySelector('.card-foot > span');
        foot.insertBefore(badge('installed', 'ok', 'installed-badge'), foot.firstChild);
        if (btn && !isBusy(id)) { btn.textContent = 'Installed'; btn.disabled = true; btn.classList.remove('primary'); }
      } else if (!installed && has && state.appsLoaded) {
        has.remove();
        if (btn && !isBusy(id)) { btn.textContent = 'Install'; btn.disabled = false; btn.classList.add('primary'); }
      }
    }
  }

  function isBusy(id) {
    for (const j of state.jobs.values()) if (j.job.app === id && j.job.state === 'running') return true;
    return false;
  }

  // ---------------------------------------------------------------- library

  const libCards = new Map(); // id -> {card, parts, last, menuOpen}
  let appsInFlight = false;

  async function refreshApps() {
    if (appsInFlight) return;
    appsInFlight = true;
    try {
      const data = await get('/apps');
      const apps = (data && data.apps) || [];
      state.apps = new Map(apps.map((a) => [a.id, a]));
      state.appsLoaded = true;
      renderLibrary(apps);
      markCatalogInstalled();
      fillExposeApps();
    } catch (e) {
      if (e.status !== 401 && e.kind !== 'bad_host' && e.status !== 0) reportError('Apps', e);
    } finally {
      appsInFlight = false;
    }
  }

  function renderLibrary(apps) {
    const list = $('library-list');
    const seen = new Set();
    apps.forEach((a, i) => {
      seen.add(a.id);
      let c = libCards.get(a.id);
      if (!c) {
        c = makeLibCard(a.id);
        libCards.set(a.id, c);
      }
      if (list.children[i] !== c.card) list.insertBefore(c.card, list.children[i] || null);
      updateLibCard(c, a);
    });
    for (const [id, c] of libCards) {
      if (!seen.has(id)) { c.card.remove(); libCards.delete(id); }
    }
    $('library-empty').hidden = apps.length > 0;
    const running = apps.filter((a) => a.state === 'running').length;
    $('library-summary').textContent = apps.length ? plural(apps.length, 'app') + ' installed, ' + running + ' running' : '';
    $('library-count').textContent = apps.length ? String(apps.length) : '';
  }

  function makeLibCard(id) {
    const parts = {};
    parts.title = el('h3', { class: 'card-title', 'data-testid': 'app-title' });
    parts.state = el('span', { class: 'badge', 'data-testid': 'app-state' });
    parts.path = el('div', { class: 'small muted ellipsis', 'data-testid': 'app-path' });
    parts.urls = el('div', { class: 'urls', 'data-testid': 'app-urls' });
    parts.error = el('p', { class: 'error small', 'data-testid': 'app-error', hidden: true });
    parts.job = el('div', { class: 'small muted', 'data-testid': 'app-job', hidden: true });
    const b = (name, text, cls) => el('button', { class: 'btn ' + (cls || ''), type: 'button', 'data-testid': name + '-btn', 'data-action': name, text });
    parts.start = b('start', 'Start', 'primary');
    parts.stop = b('stop', 'Stop', 'danger');
    parts.update = b('update', 'Update');
    parts.uninstall = b('uninstall', 'Uninstall', 'ghost-danger');
    parts.logs = b('logs', 'Logs');
    parts.menuBtn = b('menu', 'Menu ▾');
    parts.menu = el('div', { class: 'menu', 'data-testid': 'app-menu', hidden: true });
    const card = el('article', { class: 'card lib', 'data-testid': 'library-card', 'data-app-id': id },
      el('div', { class: 'card-head' }, parts.title, parts.state),
      parts.path, parts.urls, parts.job, parts.error,
      el('div', { class: 'actions' }, parts.start, parts.stop, parts.logs, parts.menuBtn, parts.update, parts.uninstall),
      parts.menu);
    const c = { id, card, parts, last: '', menuOpen: false };
    parts.start.addEventListener('click', () => appAction(c, 'start', {}));
    parts.stop.addEventListener('click', () => appAction(c, 'stop'));
    parts.update.addEventListener('click', () => appAction(c, 'update'));
    parts.uninstall.addEventListener('click', () => confirmThen(parts.uninstall, 'Really uninstall?', () => appAction(c, 'uninstall')));
    parts.logs.addEventListener('click', () => openTerminal('app:' + id));
    parts.menuBtn.addEventListener('click', () => toggleMenu(c));
    return c;
  }

  /** A two-click confirmation (no window.confirm: it blocks, and automated browsers dismiss it). */
  function confirmThen(btn, question, f) {
    if (btn.dataset.armed === '1') {
      btn.dataset.armed = '';
      btn.textContent = btn.dataset.label;
      btn.classList.remove('armed');
      f();
      return;
    }
    btn.dataset.label = btn.textContent;
    btn.dataset.armed = '1';
    btn.textContent = question;
    btn.classList.add('armed');
    setTimeout(() => {
      if (btn.dataset.armed === '1') {
        btn.dataset.armed = '';
        btn.textContent = btn.dataset.label;
        btn.classList.remove('armed');
      }
    }, 4000);
  }

  const BUSY_STATES = ['installing', 'updating', 'uninstalling'];

  function updateLibCard(c, a) {
    const key = JSON.stringify(a);
    if (key === c.last) return;
    const prev = c.lastApp;
    c.last = key;
    c.lastApp = a;
    const p = c.parts;
    p.title.textContent = a.title || a.id;
    p.title.title = a.id;
    p.state.textContent = a.state || '?';
    p.state.className = 'badge state-' + (a.state || 'unknown');
    p.path.textContent = a.path || '';
    p.path.title = a.path || '';
    c.card.setAttribute('data-state', a.state || '');

    clear(p.urls);
    if (a.url) {
      p.urls.appendChild(el('div', { class: 'url-row' },
        el('span', { class: 'url-k', text: 'Local' }),
        link(a.url, a.url, { 'data-testid': 'app-url', class: 'url' }),
        copyButton(a.url, 'copy-app-url')));
    }
    for (const x of a.exposures || []) {
      if (!x.public_url) continue;
      p.urls.appendChild(el('div', { class: 'url-row' },
        el('span', { class: 'url-k', text: x.via === 'platform' ? 'Platform' : 'Public' }),
        link(x.public_url, x.public_url, { 'data-testid': 'app-public-url', class: 'url' }),
        copyButton(x.public_url, 'copy-public-url')));
    }

    p.error.hidden = !a.last_error;
    p.error.textContent = a.last_error || '';
    p.job.hidden = !a.job;
    clear(p.job);
    if (a.job) {
      p.job.appendChild(document.createTextNode('job ' + a.job + ' running · '));
      p.job.appendChild(el('a', { href: '#terminal', text: 'follow', onclick: (ev) => { ev.preventDefault(); openTerminal('run:' + a.job); } }));
    }

    const running = a.state === 'running' || (a.running && a.running.length > 0);
    const busy = BUSY_STATES.includes(a.state) || !!a.job;
    p.start.hidden = running;
    p.start.disabled = busy;
    p.stop.hidden = !running && !a.job;
    p.update.disabled = busy || running;
    p.uninstall.disabled = BUSY_STATES.includes(a.state);
    if (c.menuOpen && (!prev || prev.state !== a.state || JSON.stringify(prev.running) !== JSON.stringify(a.running) || prev.url !== a.url)) {
      loadMenu(c);
    }
  }

  async function appAction(c, action, body) {
    const id = c.id;
    const btn = c.parts[action];
    if (btn) btn.disabled = true;
    try {
      const r = await post('/apps/' + enc(id) + '/' + action, body === undefined ? {} : body);
      if (r && r.job) followJob(r.job);
    } catch (e) {
      reportError(action[0].toUpperCase() + action.slice(1) + ' ' + id, e);
    } finally {
      if (btn) btn.disabled = false;
      refreshApps();
    }
  }

  async function toggleMenu(c) {
    c.menuOpen = !c.menuOpen;
    c.parts.menu.hidden = !c.menuOpen;
    c.parts.menuBtn.textContent = c.menuOpen ? 'Menu ▴' : 'Menu ▾';
    if (c.menuOpen) await loadMenu(c);
  }

  async function loadMenu(c) {
    const box = c.parts.menu;
    if (!box.firstChild) box.appendChild(el('p', { class: 'small muted', text: 'Loading the menu…' }));
    let data;
    try {
      data = await get('/apps/' + enc(c.id) + '/menu');
    } catch (e) {
      clear(box);
      box.appendChild(el('p', { class: 'error small', text: 'Menu: ' + e.message }));
      return;
    }
    const m = (data && data.menu) || {};
    clear(box);
    if (m.description) box.appendChild(el('p', { class: 'small muted', text: m.description }));
    const items = m.items || [];
    if (!items.length) box.appendChild(el('p', { class: 'small muted', text: 'The menu is empty.' }));
    box.appendChild(menuList(c, items));
    for (const w of m.warnings || []) box.appendChild(el('p', { class: 'warn small', text: typeof w === 'string' ? w : JSON.stringify(w) }));
  }

  function htmlToText(html) {
    if (typeof html !== 'string') return '';
    try {
      return (new DOMParser().parseFromString(html, 'text/html').body.textContent || '').trim();
    } catch (_) {
      return html.replace(/<[^>]*>/g, '');
    }
  }

  /** Messages may carry upstream HTML (`notify` with `html`): show its text. */
  function plainText(m) {
    if (m === undefined || m === null) return '';
    const t = String(m);
    return /<[a-z/][^>]*>/i.test(t) ? htmlToText(t) : t;
  }

  function menuList(c, items) {
    const ul = el('ul', { class: 'menu-list' });
    for (const it of items) {
      if (!it || typeof it !== 'object') continue;
      const label = it.text || htmlToText(it.html) || it.script || it.url || it.href || '(item)';
      const li = el('li', { class: 'menu-item', 'data-testid': 'menu-item' });
      const row = el('div', { class: 'menu-row' },
        el('span', { class: 'menu-label', text: label }),
        it.default ? badge('default', 'dim') : null,
        it.running ? badge('running', 'state-running') : null);
      const url = safeUrl(it.url) || (!it.script && safeUrl(it.href) && /^https?:/i.test(it.href) ? it.href : null);
      if (it.script && it.running) {
        row.appendChild(el('button', { class: 'btn small', type: 'button', 'data-testid': 'menu-logs', text: 'Logs', title: it.script, onclick: () => openTerminal('app:' + c.id) }));
      } else if (it.script) {
        const run = el('button', { class: 'btn small primary', type: 'button', 'data-testid': 'menu-run', text: 'Run', title: it.script });
        run.addEventListener('click', async () => {
          run.disabled = true;
          const body = { script: it.script };
          if (it.params && typeof it.params === 'object') body.args = it.params;
          try {
            const r = await post('/apps/' + enc(c.id) + '/start', body);
            if (r && r.job) followJob(r.job);
          } catch (e) {
            reportError('Run ' + it.script, e);
          } finally {
            run.disabled = false;
            refreshApps();
          }
        });
        row.appendChild(run);
      }
      if (url) row.appendChild(link(url, 'Open', { class: 'btn small', 'data-testid': 'menu-open' }));
      li.appendChild(row);
      if (Array.isArray(it.menu) && it.menu.length) li.appendChild(menuList(c, it.menu));
      ul.appendChild(li);
    }
    return ul;
  }

  // ---------------------------------------------------------------- jobs

  function followJob(job) {
    if (!job || job.id === undefined || job.id === null) return;
    const id = String(job.id);
    let j = state.jobs.get(id);
    if (j) { updateJob(j, job); return j; }
    j = makeJobCard(job);
    state.jobs.set(id, j);
    $('jobs').prepend(j.card);
    updateJob(j, job);
    if (job.state === 'running' || !job.state) openJobStream(j);
    return j;
  }

  function makeJobCard(job) {
    const p = {};
    p.title = el('strong', { class: 'job-title', 'data-testid': 'job-title' });
    p.state = el('span', { class: 'badge', 'data-testid': 'job-state' });
    p.step = el('div', { class: 'small job-step', 'data-testid': 'job-step' });
    p.last = el('div', { class: 'small muted mono ellipsis', 'data-testid': 'job-last' });
    p.bars = el('div', { class: 'bars', 'data-testid': 'job-progress' });
    p.error = el('div', { class: 'error small', 'data-testid': 'job-error', hidden: true });
    p.url = el('div', { class: 'small', 'data-testid': 'job-url', hidden: true });
    p.logs = el('button', { class: 'btn small', type: 'button', text: 'Logs', 'data-testid': 'job-logs' });
    p.close = el('button', { class: 'btn small', type: 'button', text: '×', title: 'Dismiss', 'aria-label': 'Dismiss', 'data-testid': 'job-dismiss' });
    const card = el('div', { class: 'job', 'data-testid': 'job-card', 'data-job-id': String(job.id), 'data-app-id': job.app || '' },
      el('div', { class: 'job-head' }, p.title, p.state, el('span', { class: 'grow' }), el('span', { class: 'job-buttons' }, p.logs, p.close)),
      p.step, p.bars, p.last, p.url, p.error);
    const j = { id: String(job.id), job, card, p, bars: new Map(), es: null, steps: 0, timer: null };
    p.logs.addEventListener('click', () => openTerminal('run:' + j.id));
    p.close.addEventListener('click', () => dismissJob(j));
    return j;
  }

  function dismissJob(j) {
    if (j.es) j.es.close();
    clearTimeout(j.timer);
    j.card.remove();
    state.jobs.delete(j.id);
  }

  function updateJob(j, job) {
    j.job = Object.assign({}, j.job, job);
    const jb = j.job;
    j.p.title.textContent = (jb.action || 'job') + ' ' + (jb.app || '') + ' #' + jb.id;
    j.p.state.textContent = jb.state || 'running';
    j.p.state.className = 'badge job-' + (jb.state || 'running');
    j.card.setAttribute('data-state', jb.state || 'running');
    if (jb.error) { j.p.error.hidden = false; j.p.error.textContent = jb.error; }
    if (jb.url) {
      j.p.url.hidden = false;
      clear(j.p.url);
      j.p.url.appendChild(document.createTextNode('Web UI: '));
      j.p.url.appendChild(link(jb.url, jb.url, { 'data-testid': 'job-url-link' }));
      const pub = jb.exposure && jb.exposure.public_url;
      if (pub) {
        j.p.url.appendChild(document.createTextNode(' · public: '));
        j.p.url.appendChild(link(pub, pub));
      }
    }
    if (jb.state && jb.state !== 'running') {
      j.p.step.textContent = jb.state === 'succeeded' ? 'done' : (jb.state === 'stopped' ? 'stopped' : j.p.step.textContent);
      for (const b of j.bars.values()) b.row.remove();
      j.bars.clear();
      clearTimeout(j.timer);
      j.p.last.hidden = jb.state === 'succeeded';
      j.p.step.hidden = jb.state === 'succeeded';
      if (jb.state === 'succeeded') j.timer = setTimeout(() => dismissJob(j), 12000);
    }
  }

  const JOB_EVENTS = ['run_start', 'step_start', 'output', 'progress', 'step_result', 'step_skipped', 'shell_exit',
    'warning', 'step_error', 'notify', 'open_url', 'modal', 'input_request', 'run_end', 'job', 'dropped', 'end'];

  function openJobStream(j) {
    const es = new EventSource(API + '/runs/' + enc(j.id) + '/events');
    j.es = es;
    for (const t of JOB_EVENTS) {
      es.addEventListener(t, (ev) => {
        let d = null;
        try { d = JSON.parse(ev.data); } catch (_) { d = null; }
        onJobEvent(j, t, d || {});
      });
    }
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // refused (401, 404...) or the server is gone: fall back to polling the job
        j.es = null;
        pollJob(j);
      }
    };
  }

  async function pollJob(j) {
    try {
      const job = await get('/runs/' + enc(j.id));
      updateJob(j, job);
      if (job.state === 'running') setTimeout(() => pollJob(j), 2000);
      else jobEnded(j);
    } catch (e) {
      if (e.status === 404) { j.p.step.textContent = 'the server no longer knows this job'; jobEnded(j); }
      else setTimeout(() => pollJob(j), 4000);
    }
  }

  function jobEnded(j) {
    if (j.es) { j.es.close(); j.es = null; }
    refreshApps();
    if (state.tab === 'tunnels') refreshTunnels();
    const jb = j.job;
    if (jb.state === 'failed') toast((jb.action || 'job') + ' ' + (jb.app || '') + ' failed' + (jb.error ? ': ' + jb.error : ''), 'error');
  }

  function onJobEvent(j, type, d) {
    switch (type) {
      case 'run_start':
        if (!d.depth) j.steps = d.steps || 0;
        j.p.step.textContent = 'running ' + baseName(d.path || d.script);
        break;
      case 'step_start': {
        const where = baseName(d.script);
        const total = !d.depth && j.steps ? '/' + j.steps : '';
        j.p.step.textContent = where + ' · step ' + ((d.index || 0) + 1) + total + ': ' + (d.method || '?');
        break;
      }
      case 'output': {
        const line = stripAnsi(d.text || '').split(/\r\n|\n|\r/).map((s) => s.trim()).filter(Boolean).pop();
        if (line) j.p.last.textContent = line;
        break;
      }
      case 'progress':
        onProgress(j, d);
        break;
      case 'warning':
        j.p.last.textContent = '⚠ ' + (d.message || '');
        break;
      case 'step_error':
        j.p.error.hidden = false;
        j.p.error.textContent = (d.method ? d.method + ': ' : '') + (d.message || 'step failed');
        break;
      case 'notify':
        toast(plainText(d.message), d.kind === 'error' ? 'error' : 'info', { href: d.href });
        break;
      case 'open_url':
        toast('The app asks to open ' + (d.url || ''), 'info', { href: d.url, linkText: 'Open' });
        break;
      case 'modal': {
        const prm = d.params || {};
        const msg = prm.title || prm.description || htmlToText(prm.html) || prm.message || 'message from the app';
        toast(String(msg), 'info');
        break;
      }
      case 'input_request':
        checkInputs();
        break;
      case 'run_end':
        if (!d.depth && d.error) { j.p.error.hidden = false; j.p.error.textContent = d.error; }
        break;
      case 'job':
        updateJob(j, d);
        break;
      case 'dropped':
        j.p.last.textContent = '(' + (d.count || '?') + ' events dropped)';
        break;
      case 'end':
        updateJob(j, d);
        jobEnded(j);
        break;
      default:
        break;
    }
  }

  function onProgress(j, d) {
    const key = (d.script || '') + '#' + (d.index || 0) + '#' + (d.name || '');
    let b = j.bars.get(key);
    if (!b) {
      const bar = el('progress', { max: 100, 'data-testid': 'progress-bar' });
      const label = el('div', { class: 'small bar-label' });
      const row = el('div', { class: 'bar', 'data-testid': 'progress-row' }, label, bar);
      j.p.bars.appendChild(row);
      b = { row, bar, label };
      j.bars.set(key, b);
    }
    const total = typeof d.total === 'number' && d.total > 0 ? d.total : null;
    if (total) {
      b.bar.max = total;
      b.bar.value = Math.min(d.bytes || 0, total);
    } else {
      b.bar.removeAttribute('value'); // indeterminate
    }
    const pct = total ? ' ' + Math.floor((100 * (d.bytes || 0)) / total) + '%' : '';
    const rate = d.rate ? ' · ' + fmtBytes(d.rate) + '/s' : '';
    const eta = typeof d.eta === 'number' && !d.done ? ' · ' + fmtSecs(d.eta) + ' left' : '';
    b.label.textContent = (d.name || 'download') + ': ' + fmtBytes(d.bytes || 0) + (total ? ' / ' + fmtBytes(total) : '') + pct + rate + eta + (d.done ? ' · done' : '');
    if (d.done) {
      b.bar.max = 1;
      b.bar.value = 1;
      setTimeout(() => { b.row.remove(); j.bars.delete(key); }, 3000);
    }
  }

  async function resumeRunningJobs() {
    try {
      const data = await get('/runs');
      for (const job of (data && data.runs) || []) {
        if (job.state === 'running') followJob(job);
      }
    } catch (_) { /* optional */ }
  }

  // ---------------------------------------------------------------- input forms

  let inputsInFlight = false;

  async function checkInputs() {
    if (inputsInFlight || !state.authed) return;
    inputsInFlight = true;
    try {
      const data = await get('/inputs');
      const pending = (data && data.inputs) || [];
      const ids = new Set(pending.map((x) => String(x.id)));
      // a form answered elsewhere (or timed out) goes away
      if (state.currentInput && !ids.has(String(state.currentInput.id))) closeInput();
      state.inputQueue = state.inputQueue.filter((x) => ids.has(String(x.id)));
      for (const x of pending) {
        const id = String(x.id);
        if (state.shownInputs.has(id)) continue;
        state.shownInputs.add(id);
        state.inputQueue.push(x);
      }
      if (!state.currentInput) showNextInput();
    } catch (_) {
      /* not fatal */
    } finally {
      inputsInFlight = false;
    }
  }

  function optionList(f) {
    const raw = f.options || f.items || f.choices || f.values || [];
    if (!Array.isArray(raw)) return [];
    return raw.map((o) => {
      if (o && typeof o === 'object') {
        const value = o.value !== undefined ? o.value : (o.key !== undefined ? o.key : o.text);
        return { value: String(value), text: String(o.text || o.label || o.title || value) };
      }
      return { value: String(o), text: String(o) };
    });
  }

  function showNextInput() {
    const x = state.inputQueue.shift();
    if (!x) return;
    state.currentInput = x;
    const form = x.form || {};
    const fields = Array.isArray(form.form) ? form.form : (Array.isArray(form.fields) ? form.fields : []);
    $('input-title').textContent = form.title || 'The app asks for input';
    $('input-sub').textContent = [x.app, baseName(x.script), form.description].filter(Boolean).join(' · ');
    $('input-error').textContent = '';
    const box = $('input-fields');
    clear(box);
    x.fieldsMeta = [];
    fields.forEach((f, i) => {
      if (!f || typeof f !== 'object') return;
      const key = f.key || f.name || 'field' + i;
      const type = String(f.type || 'text').toLowerCase();
      const fid = 'input-field-' + i;
      const def = f.default !== undefined ? f.default : f.value;
      let control;
      if (type === 'textarea') {
        control = el('textarea', { id: fid, rows: 4, placeholder: f.placeholder || null, 'data-key': key });
        if (def !== undefined && def !== null) control.value = String(def);
      } else if (type === 'checkbox' || type === 'boolean' || type === 'bool') {
        control = el('input', { id: fid, type: 'checkbox', 'data-key': key });
        control.checked = def === true || def === 'true';
      } else if (type === 'select') {
        control = el('select', { id: fid, 'data-key': key });
        for (const o of optionList(f)) control.appendChild(el('option', { value: o.value, text: o.text }));
        if (def !== undefined && def !== null) control.value = String(def);
      } else {
        const t = type === 'number' ? 'number' : (type === 'password' ? 'password' : 'text');
        control = el('input', { id: fid, type: t, placeholder: f.placeholder || null, 'data-key': key, step: t === 'number' ? 'any' : null });
        if (def !== undefined && def !== null) control.value = String(def);
      }
      control.setAttribute('data-testid', 'input-field');
      x.fieldsMeta.push({ key, type, control });
      const label = el('label', { for: fid, class: 'field-label', text: f.title || f.label || key });
      const wrap = type === 'checkbox' || type === 'boolean' || type === 'bool'
        ? el('div', { class: 'field check' }, control, label)
        : el('div', { class: 'field' }, label, control);
      if (f.description) wrap.appendChild(el('div', { class: 'small muted', text: f.description }));
      box.appendChild(wrap);
    });
    if (!fields.length) box.appendChild(el('p', { class: 'small muted', text: 'This form has no fields; submit to continue.' }));
    $('input-dialog').hidden = false;
    const first = box.querySelector('input, textarea, select');
    if (first) first.focus();
  }

  function closeInput() {
    state.currentInput = null;
    $('input-dialog').hidden = true;
    setTimeout(showNextInput, 0);
  }

  async function submitInput(ev) {
    ev.preventDefault();
    const x = state.currentInput;
    if (!x) return;
    const values = {};
    for (const m of x.fieldsMeta || []) {
      if (m.control.type === 'checkbox') values[m.key] = m.control.checked;
      else if (m.type === 'number') values[m.key] = m.control.value === '' ? null : Number(m.control.value);
      else values[m.key] = m.control.value;
    }
    $('input-submit').disabled = true;
    try {
      await post('/inputs/' + enc(x.id), { values });
      closeInput();
    } catch (e) {
      if (e.status === 404) { toast('That form is no longer waiting for an answer', 'info'); closeInput(); }
      else $('input-error').textContent = e.message;
    } finally {
      $('input-submit').disabled = false;
    }
  }

  async function cancelInput() {
    const x = state.currentInput;
    if (!x) return;
    try { await post('/inputs/' + enc(x.id) + '/cancel', {}); } catch (e) { if (e.status !== 404) reportError('Skip form', e); }
    closeInput();
  }

  // ---------------------------------------------------------------- ANSI terminal

  const BASE16 = ['#1e1e1e', '#e05561', '#8cc265', '#d18f52', '#4aa5f0', '#c162de', '#42b3c2', '#d7dae0',
    '#5c6370', '#ff616e', '#a5e075', '#f0a45d', '#4dc4ff', '#de73ff', '#4cd1e0', '#ffffff'];

  function color256(n) {
    if (n < 16) return BASE16[n];
    if (n < 232) {
      n -= 16;
      const v = [0, 95, 135, 175, 215, 255];
      return 'rgb(' + v[Math.floor(n / 36)] + ',' + v[Math.floor(n / 6) % 6] + ',' + v[n % 6] + ')';
    }
    const g = 8 + (n - 232) * 10;
    return 'rgb(' + g + ',' + g + ',' + g + ')';
  }

  // eslint-disable-next-line no-control-regex
  const ANSI_RE = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|[()*+][A-Za-z0-9]|[@-Z\\-_])/g;
  function stripAnsi(s) {
    // eslint-disable-next-line no-control-regex
    return String(s).replace(ANSI_RE, '').replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, '');
  }

  class Term {
    constructor(node, maxLines) {
      this.node = node;
      this.max = maxLines;
      this.reset();
      this.follow = true;
      this.scheduled = false;
      node.addEventListener('scroll', () => {
        const atBottom = node.scrollHeight - node.scrollTop - node.clientHeight < 24;
        if (atBottom !== this.follow) {
          this.follow = atBottom;
          $('term-follow').hidden = atBottom;
        }
      });
    }

    reset() {
      clear(this.node);
      this.line = null; // the current line element
      this.cr = false; // a carriage return: the next text overwrites the line
      this.pending = ''; // an escape sequence cut at the end of a chunk
      this.st = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false };
      this.styleKey = '';
    }

    sgr(params) {
      const ps = params === '' ? [0] : params.split(/[;:]/).map((x) => (x === '' ? 0 : parseInt(x, 10)));
      const st = this.st;
      for (let i = 0; i < ps.length; i++) {
        const p = ps[i];
        if (p === 0) Object.assign(st, { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false });
        else if (p === 1) st.bold = true;
        else if (p === 2) st.dim = true;
        else if (p === 3) st.italic = true;
        else if (p === 4) st.underline = true;
        else if (p === 7) st.inverse = true;
        else if (p === 22) { st.bold = false; st.dim = false; }
        else if (p === 23) st.italic = false;
        else if (p === 24) st.underline = false;
        else if (p === 27) st.inverse = false;
        else if (p >= 30 && p <= 37) st.fg = BASE16[p - 30];
        else if (p === 39) st.fg = null;
        else if (p >= 40 && p <= 47) st.bg = BASE16[p - 40];
        else if (p === 49) st.bg = null;
        else if (p >= 90 && p <= 97) st.fg = BASE16[p - 90 + 8];
        else if (p >= 100 && p <= 107) st.bg = BASE16[p - 100 + 8];
        else if (p === 38 || p === 48) {
          let c = null;
          if (ps[i + 1] === 5 && ps[i + 2] !== undefined) { c = color256(ps[i + 2] & 255); i += 2; }
          else if (ps[i + 1] === 2 && ps[i + 4] !== undefined) { c = 'rgb(' + (ps[i + 2] & 255) + ',' + (ps[i + 3] & 255) + ',' + (ps[i + 4] & 255) + ')'; i += 4; }
          if (c) { if (p === 38) st.fg = c; else st.bg = c; }
        }
      }
      this.styleKey = JSON.stringify(st);
    }

    ensureLine() {
      if (!this.line) {
        this.line = el('div', { class: 'tl' });
        this.node.appendChild(this.line);
        this.trim();
      }
      return this.line;
    }

    trim() {
      const extra = this.node.childElementCount - this.max;
      if (extra > 0) {
        // drop a batch at once, so trimming does not run on every line
        const n = Math.max(extra, Math.floor(this.max / 10));
        for (let i = 0; i < n && this.node.firstChild; i++) this.node.removeChild(this.node.firstChild);
      }
    }

    text(s) {
      if (!s) return;
      const line = this.ensureLine();
      if (this.cr) {
        clear(line);
        this.cr = false;
      }
      const last = line.lastChild;
      if (last && last.nodeType === 1 && last.dataset.k === this.styleKey) {
        last.textContent += s;
        return;
      }
      const span = document.createElement('span');
      span.dataset.k = this.styleKey;
      const st = this.st;
      let fg = st.fg, bg = st.bg;
      if (st.inverse) { fg = st.bg || '#1e1e1e'; bg = st.fg || '#d7dae0'; }
      if (fg) span.style.color = fg;
      if (bg) span.style.backgroundColor = bg;
      if (st.bold) span.style.fontWeight = 'bold';
      if (st.dim) span.style.opacity = '0.7';
      if (st.italic) span.style.fontStyle = 'italic';
      if (st.underline) span.style.textDecoration = 'underline';
      span.textContent = s;
      line.appendChild(span);
    }

    newline() {
      this.ensureLine();
      this.line = null;
      this.cr = false;
    }

    write(chunk) {
      const s = this.pending + String(chunk);
      this.pending = '';
      let buf = '';
      let i = 0;
      const n = s.length;
      const flush = () => { if (buf) { this.text(buf); buf = ''; } };
      while (i < n) {
        const c = s.charCodeAt(i);
        if (c === 0x1b) {
          flush();
          const end = this.escape(s, i);
          if (end < 0) {
            // cut at the end of the chunk: keep it for the next one (bounded)
            const rest = s.slice(i);
            if (rest.length < 256) this.pending = rest;
            break;
          }
          i = end;
          continue;
        }
        if (c === 0x0a) { flush(); this.newline(); i++; continue; }
        if (c === 0x0d) {
          flush();
          if (s.charCodeAt(i + 1) === 0x0a) { this.newline(); i += 2; continue; }
          this.cr = true;
          i++;
          continue;
        }
        if (c === 0x09) { buf += '\t'; i++; continue; }
        if (c === 0x08) {
          // backspace: drop the last character written, if any
          if (buf) buf = buf.slice(0, -1);
          i++;
          continue;
        }
        if (c < 0x20 || c === 0x7f) { i++; continue; }
        buf += s[i];
        i++;
      }
      flush();
      this.schedule();
    }

    /** Parse the escape sequence at s[i] (ESC); return the index after it, or -1 when incomplete. */
    escape(s, i) {
      const n = s.length;
      if (i + 1 >= n) return -1;
      const t = s[i + 1];
      if (t === '[') {
        let j = i + 2;
        while (j < n && s.charCodeAt(j) >= 0x30 && s.charCodeAt(j) <= 0x3f) j++;
        while (j < n && s.charCodeAt(j) >= 0x20 && s.charCodeAt(j) <= 0x2f) j++;
        if (j >= n) return -1;
        const final = s[j];
        const params = s.slice(i + 2, j);
        if (final === 'm' && /^[0-9;:]*$/.test(params)) this.sgr(params);
        else if (final === 'K') {
          // erase in line: after a carriage return, clear what the next text would not overwrite
          if ((params === '' || params === '0' || params === '2') && this.cr && this.line) { clear(this.line); this.cr = false; }
        } else if (final === 'G' && (params === '' || params === '1') && this.line) {
          this.cr = true; // cursor to column 1: like \r
        }
        return j + 1;
      }
      if (t === ']' || t === 'P' || t === 'X' || t === '^' || t === '_') {
        for (let j = i + 2; j < n; j++) {
          if (s.charCodeAt(j) === 0x07 && t === ']') return j + 1;
          if (s.charCodeAt(j) === 0x1b) {
            if (j + 1 >= n) return -1;
            if (s[j + 1] === '\\') return j + 2;
          }
        }
        return (n - i) > 4096 ? n : -1;
      }
      if (t === '(' || t === ')' || t === '*' || t === '+' || t === '#' || t === '%') {
        return i + 2 < n ? i + 3 : -1;
      }
      return i + 2; // a two-character escape (ESC 7, ESC =, ...)
    }

    /** A line of the UI itself (not program output), styled by cls. */
    note(text, cls) {
      if (this.line && this.line.childNodes.length && !this.cr) this.newline();
      this.line = null;
      this.cr = false;
      const line = el('div', { class: 'tl note ' + (cls || ''), text });
      this.node.appendChild(line);
      this.trim();
      this.schedule();
    }

    schedule() {
      if (this.scheduled) return;
      this.scheduled = true;
      const f = () => {
        this.scheduled = false;
        if (this.follow) this.node.scrollTop = this.node.scrollHeight;
      };
      if (document.hidden) setTimeout(f, 50);
      else requestAnimationFrame(f);
    }

    toBottom() {
      this.follow = true;
      $('term-follow').hidden = true;
      this.node.scrollTop = this.node.scrollHeight;
    }
  }

  let term = null;
  let termEs = null;
  let termSource = '';

  async function refreshTermSources() {
    const sel = $('term-source');
    let runs = [];
    try {
      const data = await get('/runs');
      runs = (data && data.runs) || [];
    } catch (_) { runs = []; }
    if (!state.appsLoaded) await refreshApps();
    const keep = sel.value || termSource;
    clear(sel);
    sel.appendChild(el('option', { value: '', text: 'Choose an app or a run…' }));
    const ga = el('optgroup', { label: 'App logs (live)' });
    for (const id of state.apps.keys()) ga.appendChild(el('option', { value: 'app:' + id, text: id + ' — ' + (state.apps.get(id).state || '') }));
    if (ga.children.length) sel.appendChild(ga);
    const gr = el('optgroup', { label: 'Runs (jobs)' });
    for (const r of runs.slice(0, 50)) {
      gr.appendChild(el('option', { value: 'run:' + r.id, text: '#' + r.id + ' ' + (r.action || '') + ' ' + (r.app || '') + ' — ' + (r.state || '') }));
    }
    if (gr.children.length) sel.appendChild(gr);
    if (keep && !sel.querySelector('option[value="' + CSS.escape(keep) + '"]')) {
      sel.appendChild(el('option', { value: keep, text: keep.replace(':', ' ') }));
    }
    sel.value = keep || '';
    if (!keep && state.apps.size) {
      // follow the first running app, or the first app
      const running = [...state.apps.values()].find((a) => a.state === 'running');
      const first = running || state.apps.values().next().value;
      sel.value = 'app:' + first.id;
    }
    if (sel.value !== termSource) connectTerm(sel.value);
  }

  function openTerminal(source) {
    termSource = '';
    showTab('terminal');
    const sel = $('term-source');
    if (!sel.querySelector('option[value="' + CSS.escape(source) + '"]')) {
      sel.appendChild(el('option', { value: source, text: source.replace(':', ' ') }));
    }
    sel.value = source;
    connectTerm(source);
  }

  function setTermStatus(text, cls) {
    const s = $('term-status');
    s.textContent = text;
    s.className = 'small ' + (cls || 'muted');
  }

  function connectTerm(source) {
    if (termEs) { termEs.close(); termEs = null; }
    termSource = source;
    term.reset();
    term.toBottom();
    if (!source) { setTermStatus(''); return; }
    const [kind, id] = [source.slice(0, source.indexOf(':')), source.slice(source.indexOf(':') + 1)];
    let url;
    if (kind === 'app') url = API + '/apps/' + enc(id) + '/logs/stream?lines=500';
    else url = API + '/runs/' + enc(id) + '/events';
    setTermStatus('connecting…');
    const es = new EventSource(url);
    termEs = es;
    let lastScript = null;
    es.onopen = () => { if (termEs === es) setTermStatus(kind === 'app' ? 'live: logs of ' + id : 'live: run #' + id, 'live'); };
    es.onerror = () => {
      if (termEs !== es) return;
      if (es.readyState === EventSource.CLOSED) setTermStatus('disconnected', 'error');
      else setTermStatus('reconnecting…', 'muted');
    };
    const on = (t, f) => es.addEventListener(t, (ev) => {
      if (termEs !== es) return;
      let d = {};
      try { d = JSON.parse(ev.data) || {}; } catch (_) { d = { text: ev.data }; }
      f(d);
    });
    if (kind === 'app') {
      // a reconnect replays the last lines: start again from a clean screen
      es.addEventListener('open', () => { if (termEs === es) { term.reset(); lastScript = null; } });
      on('log', (d) => {
        const script = baseName(d.script || '');
        if (script && script !== lastScript && lastScript !== null) term.note('── ' + script + ' ──', 'dim');
        lastScript = script;
        const t = d.text === undefined ? '' : String(d.text);
        // the shell log's own bookkeeping lines ("### shell ... started / exited")
        if (/^### shell /.test(t)) term.note(t.replace(/[\r\n]+$/, ''), 'dim');
        else term.write(/[\r\n]$/.test(t) ? t : t + '\n');
      });
      on('dropped', (d) => term.note('… ' + (d.count || 'some') + ' lines dropped (the browser was too slow) …', 'warn'));
    } else {
      on('run_start', (d) => term.note('▶ run ' + (d.path || d.script || '') + (d.args ? ' ' + JSON.stringify(d.args) : ''), 'info'));
      on('step_start', (d) => term.note('▸ ' + baseName(d.script) + ' step ' + ((d.index || 0) + 1) + ': ' + (d.method || ''), 'dim'));
      on('output', (d) => term.write(d.text || ''));
      on('step_skipped', (d) => term.note('  skipped step ' + ((d.index || 0) + 1), 'dim'));
      on('shell_exit', (d) => term.note('  shell exited' + (d.code === null || d.code === undefined ? ' (signal)' : ' with code ' + d.code), d.code ? 'warn' : 'dim'));
      on('warning', (d) => term.note('⚠ ' + (d.message || ''), 'warn'));
      on('step_error', (d) => term.note('✖ ' + (d.method ? d.method + ': ' : '') + (d.message || ''), 'err'));
      on('notify', (d) => term.note('ℹ ' + plainText(d.message), 'info'));
      on('open_url', (d) => term.note('↗ open ' + (d.url || ''), 'info'));
      on('input_request', () => { term.note('? waiting for input (see the form)', 'info'); checkInputs(); });
      on('progress', (d) => { if (d.done) term.note('✓ downloaded ' + (d.name || '') + ' (' + fmtBytes(d.bytes || 0) + ')', 'dim'); });
      on('run_end', (d) => term.note('■ run ended: ' + (d.status || '') + (d.error ? ' — ' + d.error : ''), d.status === 'error' ? 'err' : 'info'));
      on('dropped', (d) => term.note('… ' + (d.count || 'some') + ' events dropped …', 'warn'));
      on('end', (d) => {
        term.note('job ' + (d.state || 'ended') + (d.error ? ': ' + d.error : '') + (d.url ? ' · ' + d.url : ''), d.state === 'failed' ? 'err' : 'info');
        es.close();
        setTermStatus('run #' + id + ' ' + (d.state || 'ended'), 'muted');
      });
    }
  }

  // ---------------------------------------------------------------- tunnels

  async function refreshTunnels() {
    let data;
    try {
      data = await get('/exposures');
    } catch (e) {
      if (e.status !== 401 && e.kind !== 'bad_host') reportError('Tunnels', e);
      return;
    }
    const xs = (data && data.exposures) || [];
    const list = $('tunnels-list');
    clear(list);
    for (const x of xs) list.appendChild(exposureCard(x));
    $('tunnels-empty').hidden = xs.length > 0;
    if (!state.appsLoaded) refreshApps();
    else fillExposeApps();
  }

  function urlRow(label, url, testid) {
    if (!url) return null;
    return el('div', { class: 'url-row' },
      el('span', { class: 'url-k', text: label }),
      link(url, url, { class: 'url', 'data-testid': testid }),
      copyButton(url, 'copy-' + testid));
  }

  function exposureCard(x) {
    const un = el('button', { class: 'btn danger small', type: 'button', 'data-testid': 'unexpose-btn', text: 'Unexpose' });
    un.addEventListener('click', async () => {
      un.disabled = true;
      try {
        await post('/apps/' + enc(x.app) + '/unexpose', {});
        toast('Unexposed ' + x.app, 'ok');
      } catch (e) {
        reportError('Unexpose ' + x.app, e);
      } finally {
        refreshTunnels();
        refreshApps();
      }
    });
    const isPlatform = x.via === 'platform';
    return el('article', { class: 'card', 'data-testid': 'exposure-card', 'data-app-id': x.app || '' },
      el('div', { class: 'card-head' },
        el('h3', { class: 'card-title', text: x.app || '?' }),
        badge(x.via || 'tunnel', 'cat', 'exposure-via'),
        badge(x.state || '?', 'state-' + (x.state === 'up' ? 'running' : 'stopped'), 'exposure-state')),
      urlRow('Local', x.local_url, 'local-url'),
      urlRow(isPlatform ? 'Platform' : 'Public', x.public_url, isPlatform ? 'platform-url' : 'public-url'),
      x.platform_url && !isPlatform ? urlRow('Platform', x.platform_url, 'platform-url') : null,
      x.note ? el('p', { class: 'small muted', text: x.note }) : null,
      el('div', { class: 'actions' }, un));
  }

  function fillExposeApps() {
    const sel = $('expose-app');
    const keep = sel.value;
    clear(sel);
    const apps = [...state.apps.values()];
    if (!apps.length) sel.appendChild(el('option', { value: '', text: 'no app installed' }));
    for (const a of apps) {
      sel.appendChild(el('option', { value: a.id, text: a.id + (a.url ? '' : ' (no URL yet)') }));
    }
    if (keep && state.apps.has(keep)) sel.value = keep;
    else {
      const withUrl = apps.find((a) => a.url);
      if (withUrl) sel.value = withUrl.id;
    }
  }

  async function exposeSubmit(ev) {
    ev.preventDefault();
    const id = $('expose-app').value;
    if (!id) return;
    const via = $('expose-via').value;
    const btn = $('expose-btn');
    btn.disabled = true;
    btn.textContent = 'Exposing…';
    try {
      const r = await post('/apps/' + enc(id) + '/expose', via ? { via } : {});
      const x = r && r.exposure;
      toast('Exposed ' + id + (x && x.public_url ? ' at ' + x.public_url : ''), 'ok', x && x.public_url ? { href: x.public_url } : undefined);
    } catch (e) {
      reportError('Expose ' + id, e);
    } finally {
      btn.disabled = false;
      btn.textContent = 'Expose';
      refreshTunnels();
      refreshApps();
    }
  }

  // ---------------------------------------------------------------- login

  function showLogin() {
    if (!state.authed && !$('login').hidden) return;
    state.authed = false;
    $('login').hidden = false;
    $('login-error').textContent = '';
    setTimeout(() => $('login-token').focus(), 0);
  }

  async function loginSubmit(ev) {
    ev.preventDefault();
    const token = $('login-token').value.trim();
    if (!token) return;
    $('login-submit').disabled = true;
    try {
      await api('POST', '/login', { token });
      state.authed = true;
      $('login').hidden = true;
      $('login-token').value = '';
      loadAll();
    } catch (e) {
      $('login-error').textContent = e.status === 401 ? 'Wrong token.' : e.message;
    } finally {
      $('login-submit').disabled = false;
    }
  }

  // ---------------------------------------------------------------- startup

  function loadAll() {
    loadSystem();
    refreshApps().then(() => {
      state.catalogLoaded = false;
      if (state.tab === 'discover') loadCatalog(false);
      if (state.tab === 'terminal') { termSource = ''; refreshTermSources(); }
      if (state.tab === 'tunnels') refreshTunnels();
    });
    resumeRunningJobs();
    checkInputs();
  }

  function init() {
    term = new Term($('term-output'), TERM_MAX_LINES);

    for (const t of TABS) $('tab-' + t).addEventListener('click', () => showTab(t));
    document.addEventListener('click', (ev) => {
      const a = ev.target.closest && ev.target.closest('[data-goto]');
      if (a) { ev.preventDefault(); showTab(a.getAttribute('data-goto')); }
    });
    window.addEventListener('hashchange', () => showTab(location.hash.slice(1), false));

    const search = debounce(() => loadCatalog(false), 250);
    $('discover-q').addEventListener('input', search);
    $('discover-form').addEventListener('submit', (ev) => { ev.preventDefault(); loadCatalog(false); });
    $('discover-category').addEventListener('change', () => loadCatalog(false));
    $('discover-more').addEventListener('click', () => loadCatalog(true));

    $('library-refresh').addEventListener('click', refreshApps);

    $('term-source').addEventListener('change', (ev) => connectTerm(ev.target.value));
    $('term-clear').addEventListener('click', () => { term.reset(); });
    $('term-follow').addEventListener('click', () => term.toBottom());
    $('term-wrap').addEventListener('change', (ev) => $('term-output').classList.toggle('wrap', ev.target.checked));

    $('expose-form').addEventListener('submit', exposeSubmit);
    $('tunnels-refresh').addEventListener('click', refreshTunnels);

    $('login-form').addEventListener('submit', loginSubmit);
    $('input-form').addEventListener('submit', submitInput);
    $('input-cancel').addEventListener('click', cancelInput);

    const initial = location.hash.slice(1);
    state.tab = TABS.includes(initial) ? initial : 'discover';
    for (const t of TABS) {
      $('view-' + t).hidden = t !== state.tab;
      $('tab-' + t).setAttribute('aria-selected', t === state.tab ? 'true' : 'false');
      $('tab-' + t).classList.toggle('active', t === state.tab);
    }
    loadAll();

    setInterval(() => {
      if (document.hidden || !state.authed) return;
      refreshApps();
      if (state.tab === 'tunnels') refreshTunnels();
    }, POLL_APPS_MS);
    setInterval(() => {
      if (!document.hidden && state.authed) checkInputs();
    }, POLL_INPUTS_MS);
    setInterval(loadSystem, 60000);
  }

  // exposed for tests and debugging
  window.pinokioUI = { Term, stripAnsi, state };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
