'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN = 'gpt-load.token';
  const POLL = 3000; // between the end of one refresh and the start of the next
  const TIMEOUT = 10000; // one refresh, all its requests together
  const WINDOW = 10 * 60 * 1000; // chart span
  const ICON = { healthy: '✓', active: '✓', up: '✓', degraded: '!', cooling: '◷', probing: '?', unhealthy: '✕', blacklisted: '✕', benched: '✕', down: '✕' };

  const view = { state: '', q: '', limit: 100, offset: 0 };
  let timer = 0;
  let running = false;
  let again = false;
  let refused = false; // the last token sent was refused
  let skew = 0; // server clock minus ours, when they differ by more than the timestamp's second
  let hist = [];
  let first = true;

  const storage = () => { try { return window.sessionStorage; } catch (e) { return null; } };
  const token = () => { const s = storage(); return (s && s.getItem(TOKEN)) || ''; };
  const setToken = (t) => { const s = storage(); if (!s) return; if (t) s.setItem(TOKEN, t); else s.removeItem(TOKEN); };

  // call fetches a management endpoint. Paths are relative, so the page
  // also works behind a reverse proxy that mounts gpt-load under a prefix.
  async function call(path, signal, method) {
    const headers = {};
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    const r = await fetch(path, { method: method || 'GET', headers, signal, cache: 'no-store' });
    let body = null;
    try { body = await r.json(); } catch (e) { /* not JSON: reported by status */ }
    return { status: r.status, body };
  }

  const errText = (r) => (r.body && r.body.error && r.body.error.message) || ('HTTP ' + r.status);
  const num = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : '–');
  const short = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });

  function dur(ms) {
    let s = Math.max(0, Math.round(ms / 1000));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + String(s).padStart(2, '0') + 's';
    return s + 's';
  }
  const now = () => Date.now() + skew;
  const left = (iso) => { const t = Date.parse(iso); return isNaN(t) ? '' : (t > now() ? 'in ' + dur(t - now()) : 'ending…'); };
  const ago = (iso) => { const t = Date.parse(iso); return isNaN(t) ? '' : dur(now() - t) + ' ago'; };

  function show(el, on) { if (el.hidden === on) el.hidden = !on; }
  function text(el, t) { if (el.textContent !== t) el.textContent = t; }
  function say(el, msg, err) {
    text(el, msg || '');
    show(el, !!msg);
    if (el.classList) el.classList.toggle('err', !!err);
  }

  // stateCell shows a state as an icon and a word, never by colour alone.
  function stateCell(el, s) {
    if (el.dataset.s === s) return;
    el.dataset.s = s;
    el.className = 's-' + s;
    el.textContent = '';
    const i = document.createElement('span');
    i.className = 'ic';
    i.setAttribute('aria-hidden', 'true');
    i.textContent = ICON[s] || '·';
    el.append(i, ' ' + s);
  }

  // cell sets one table cell from a spec: t text, c class, s state, u a
  // deadline counted down each second, title a tooltip.
  function cell(td, spec) {
    if (spec.s !== undefined) { stateCell(td, spec.s); return; }
    const cls = spec.c || '';
    if (td.className !== cls) td.className = cls;
    if (spec.u) { td.dataset.until = spec.u; text(td, left(spec.u)); } else { delete td.dataset.until; text(td, spec.t); }
    const title = spec.title || '';
    if (td.title !== title) td.title = title;
  }

  // rows updates body in place, so a refresh never redraws the table.
  function rows(body, items, cells) {
    items.forEach((it, i) => {
      const tr = body.rows[i] || body.insertRow();
      const specs = cells(it);
      specs.forEach((spec, j) => cell(tr.cells[j] || tr.insertCell(), spec));
      while (tr.cells.length > specs.length) tr.deleteCell(-1);
    });
    while (body.rows.length > items.length) body.deleteRow(-1);
  }

  function renderHealth(h) {
    const o = $('overall');
    const s = (h && h.status) || 'unknown';
    o.className = 'badge s-' + s;
    text(o.querySelector('.ic'), ICON[s] || '?');
    text(o.querySelector('.tx'), h ? s + ' · ' + num(h.healthy_keys) + ' of ' + num(h.total_keys) + ' keys usable' : 'unreachable');
    text($('uptime'), h && h.uptime ? 'up ' + h.uptime : '');
  }

  function dl(el, pairs) {
    el.textContent = '';
    for (const [k, v, cls] of pairs) {
      const d = document.createElement('div');
      const dt = document.createElement('dt');
      const dd = document.createElement('dd');
      dt.textContent = k;
      dd.textContent = v;
      if (cls) dd.className = cls;
      d.append(dt, dd);
      el.append(d);
    }
  }

  function series() {
    const out = { rate: [], err: [], retry: [] };
    for (let i = 1; i < hist.length; i++) {
      const a = hist[i - 1];
      const b = hist[i];
      const dt = (b.t - a.t) / 1000;
      if (dt <= 0) continue;
      const n = b.total - a.total;
      out.rate.push([b.t, n / dt]);
      out.err.push([b.t, n > 0 ? (100 * (b.failure - a.failure)) / n : 0]);
      out.retry.push([b.t, (b.retries - a.retries) / dt]);
    }
    return out;
  }

  // chart draws pts ([time, value]) over the last span ms.
  function chart(svg, pts, span, fixedMax) {
    const NS = 'http://www.w3.org/2000/svg';
    let ln = svg.querySelector('.ln');
    let ar = svg.querySelector('.ar');
    if (!ln) {
      ar = document.createElementNS(NS, 'polygon');
      ar.setAttribute('class', 'ar');
      ln = document.createElementNS(NS, 'polyline');
      ln.setAttribute('class', 'ln');
      svg.append(ar, ln);
    }
    const t0 = Date.now() - span;
    const max = fixedMax || Math.max(1e-9, ...pts.map((p) => p[1])) * 1.1;
    const xy = pts.map(([t, v]) => (((t - t0) / span) * 300).toFixed(1) + ',' + (58 - (v / max) * 56).toFixed(1));
    ln.setAttribute('points', xy.join(' '));
    ar.setAttribute('points', xy.length ? xy[0].split(',')[0] + ',60 ' + xy.join(' ') + ' ' + xy[xy.length - 1].split(',')[0] + ',60' : '');
  }

  function renderCharts(r) {
    const t = Date.now();
    const last = hist[hist.length - 1];
    if (last && r.total_count < last.total) hist = []; // the proxy restarted
    hist.push({ t, total: r.total_count, failure: r.failure_count, retries: r.retry_count });
    while (hist.length && hist[0].t < t - WINDOW) hist.shift();
    const s = series();
    const cur = (a, f) => (a.length ? f(a[a.length - 1][1]) : 'collecting…');
    text($('v-rate'), cur(s.rate, (v) => v.toFixed(2) + ' /s'));
    text($('v-err'), cur(s.err, (v) => v.toFixed(1) + ' %'));
    text($('v-retry'), cur(s.retry, (v) => v.toFixed(2) + ' /s'));
    // The charts fill as samples come, up to the last ten minutes.
    const span = Math.min(WINDOW, Math.max(30000, t - hist[0].t));
    text($('ch-span'), span >= WINDOW ? '10 minutes' : dur(span));
    chart($('g-rate'), s.rate, span);
    chart($('g-err'), s.err, span, 100);
    chart($('g-retry'), s.retry, span);
  }

  function quota(q) {
    if (!q) return { t: '—', c: 'mut' };
    const parts = [];
    if (q.requests_remaining != null) parts.push(short.format(q.requests_remaining) + ' req');
    if (q.tokens_remaining != null) parts.push(short.format(q.tokens_remaining) + ' tok');
    let t = parts.join(' · ') || '?';
    if (q.seen_at) t += ' (' + ago(q.seen_at) + ')';
    const title = [q.requests_remaining != null ? num(q.requests_remaining) + ' requests' : '', q.tokens_remaining != null ? num(q.tokens_remaining) + ' tokens' : '',
      q.seen_at ? 'seen ' + q.seen_at : '', q.reset_at ? 'resets ' + q.reset_at : ''].filter(Boolean).join(', ');
    return { t, title };
  }

  function models(list) {
    if (!list || !list.length) return { t: '—', c: 'mut' };
    const until = (m) => { const t = Date.parse(m.until); return isNaN(t) ? '?' : dur(Math.max(0, t - now())); };
    return { t: list.map((m) => m.model + ' (' + until(m) + ')').join(', '), c: 'wrap',
      title: list.map((m) => m.model + ' excluded until ' + m.until).join('\n') };
  }

  function keyCells(d, reasons) {
    let reason = d.reason;
    if (reason === undefined && reasons) reason = reasons.get(d.preview);
    let rest = { t: '', c: 'mut' };
    if (d.state === 'cooling' && d.cooling_until) rest = { u: d.cooling_until, title: 'until ' + d.cooling_until };
    else if (d.state === 'blacklisted') rest = { t: 'until reset', c: 'mut', title: d.blacklisted_since ? 'since ' + d.blacklisted_since : '' };
    return [
      { t: (d.group ? d.group + ': ' : '') + d.preview, c: 'k' },
      { s: d.state },
      { t: reason || (d.state === 'active' ? '' : '—'), c: 'wrap' },
      rest,
      { t: num(d.requests), c: 'num' },
      { t: num(d.failures), c: 'num' },
      { t: d.last_status ? String(d.last_status) : '—', c: 'num' },
      quota(d.quota),
      models(d.models_excluded),
    ];
  }

  function renderStats(s, reasons) {
    const k = s.keys || {};
    text($('c-total'), num(k.total));
    text($('c-active'), num(k.healthy));
    text($('c-cooling'), num(k.cooling));
    text($('c-blacklisted'), num(k.blacklisted));
    for (const b of document.querySelectorAll('#counts .card')) b.setAttribute('aria-pressed', String(b.dataset.state === view.state));
    const r = s.requests || {};
    const pairs = [['requests', num(r.total_count)], ['succeeded', num(r.success_count)], ['failed', num(r.failure_count)], ['retries', num(r.retry_count)]];
    if (r.in_flight !== undefined) pairs.push(['in flight', num(r.in_flight)]);
    dl($('req'), pairs);
    const cl = $('cluster');
    if (s.redis || s.cluster) {
      const c = s.cluster || {};
      dl(cl, [['redis', (ICON[s.redis] || '') + ' ' + (s.redis || 'off'), 's-' + s.redis], ['cluster requests', num(c.total_count)], ['succeeded', num(c.success_count)], ['failed', num(c.failure_count)], ['retries', num(c.retry_count)]]);
      show(cl, true);
    } else show(cl, false);
    renderCharts(r);
    // With GROUPS_DIR (docs/groups.md), each group's figures, and the
    // group of every target and key.
    const groups = s.groups || [];
    rows($('groups'), groups, (g) => {
      const gk = g.keys || {}, gr = g.requests || {};
      return [
        { t: g.group, c: 'k' },
        { t: num(gk.healthy) + ' / ' + num(gk.total), c: 'num' },
        { t: num(gk.cooling), c: 'num' },
        { t: num(gk.blacklisted), c: 'num' },
        { t: num(gr.total_count), c: 'num' },
        { t: num(gr.failure_count), c: 'num' },
        { t: num(gr.retry_count), c: 'num' },
      ];
    });
    show($('groups-panel'), groups.length > 0);
    rows($('targets'), s.targets || [], (t) => [
      { t: (t.group ? t.group + ': ' : '') + t.url, c: 'wrap' },
      { s: t.state },
      { t: t.reason || '' },
      t.benched_until ? { u: t.benched_until } : { t: '' },
      { t: num(t.requests), c: 'num' },
      { t: num(t.failures), c: 'num' },
    ]);
    const list = s.key_details || [];
    const total = typeof s.total === 'number' ? s.total : list.length;
    if (total > 0 && view.offset >= total) { // the list shrank under the current page
      view.offset = Math.floor((total - 1) / view.limit) * view.limit;
      again = true;
    }
    rows($('keys'), list, (d) => keyCells(d, reasons));
    text($('range'), total ? (view.offset + 1).toLocaleString('en-US') + '–' + (view.offset + list.length).toLocaleString('en-US') + ' of ' + num(total) + (view.state || view.q ? ' matching' : '') : 'no keys match');
    $('prev').disabled = view.offset === 0;
    $('next').disabled = view.offset + view.limit >= total;
  }

  // reasons fills in the reason of keys out of rotation from /blacklist,
  // for a proxy whose key_details do not carry it.
  async function reasons(list, signal) {
    if (!list.some((d) => d.state !== 'active' && d.reason === undefined)) return null;
    const qs = new URLSearchParams({ limit: String(view.limit), offset: view.state && view.state !== 'active' ? String(view.offset) : '0' });
    if (view.state && view.state !== 'active') qs.set('state', view.state);
    if (view.q) qs.set('q', view.q);
    const r = await call('blacklist?' + qs, signal);
    if (r.status !== 200 || !r.body) return null;
    return new Map((r.body.blacklisted_keys || []).map((b) => [b.preview, b.reason]));
  }

  function needToken() {
    const had = !!token();
    if (had) { refused = true; setToken(''); }
    const msg = $('auth-msg');
    if (refused) say(msg, 'That token was refused (401): it is not this proxy\u2019s AUTH_KEY. Try again.', true);
    else say(msg, 'This proxy has AUTH_KEY set. Enter it to see keys, upstreams and counters.');
    show($('auth'), true);
    show($('data'), false);
    show($('forget'), false);
    if (first || had) $('token').focus();
  }

  function authorized() {
    refused = false;
    show($('auth'), false);
    show($('data'), true);
    show($('forget'), !!token());
  }

  async function load() {
    const ac = new AbortController();
    const stop = setTimeout(() => ac.abort(), TIMEOUT);
    try {
      const qs = new URLSearchParams({ keys: '1', limit: String(view.limit), offset: String(view.offset) });
      if (view.state) qs.set('state', view.state);
      if (view.q) qs.set('q', view.q);
      const [h, s] = await Promise.all([call('health', ac.signal), call('stats?' + qs, ac.signal)]);
      renderHealth(h.body);
      if (s.status === 401) { needToken(); say($('notice'), ''); return; }
      if (s.status !== 200 || !s.body) { say($('notice'), '/stats answered ' + s.status + ': ' + errText(s)); return; }
      const d = Date.parse(s.body.timestamp) - Date.now();
      skew = Math.abs(d) > 2000 ? d : 0;
      const rs = await reasons(s.body.key_details || [], ac.signal);
      authorized();
      renderStats(s.body, rs);
      if (!document.body.dataset.rendered) document.body.dataset.rendered = String(Math.round(performance.now()));
      say($('notice'), '');
      text($('updated'), 'updated ' + new Date().toLocaleTimeString());
    } catch (e) {
      say($('notice'), ac.signal.aborted ? 'The proxy did not answer within ' + TIMEOUT / 1000 + ' s; trying again.' : 'Cannot reach the proxy; trying again.');
    } finally {
      clearTimeout(stop);
      first = false;
      document.body.dataset.loaded = 'true';
    }
  }

  // refresh loads now; a refresh asked for while one runs starts when it
  // ends, so requests never pile up behind a slow proxy.
  function refresh() {
    if (running) { again = true; return; }
    running = true;
    clearTimeout(timer);
    load().finally(() => {
      running = false;
      if (again) { again = false; refresh(); } else timer = setTimeout(refresh, POLL);
    });
  }

  function tick() {
    for (const el of document.querySelectorAll('[data-until]')) text(el, left(el.dataset.until));
  }

  async function resetKeys() {
    const ok = window.confirm('Reset every key?\n\ngpt-load re-reads its keys file and clears every key\u2019s state: rests, blacklist and counters.');
    if (!ok) return;
    const btn = $('reset');
    btn.disabled = true;
    try {
      const r = await call('reset-keys', undefined, 'POST');
      if (r.status === 401) { needToken(); say($('result'), 'Reset not done: the token is needed.', true); return; }
      if (r.status !== 200) { say($('result'), 'Reset failed: ' + errText(r), true); return; }
      say($('result'), 'Keys reset: ' + num(r.body.healthy_keys) + ' of ' + num(r.body.total_keys) + ' keys usable. ' + (r.body.message || ''));
      hist = [];
      refresh();
    } catch (e) {
      say($('result'), 'Reset failed: the proxy could not be reached.', true);
    } finally {
      btn.disabled = false;
    }
  }

  function setView(change) {
    Object.assign(view, change);
    $('f-state').value = view.state;
    refresh();
  }

  $('auth-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('token').value.trim();
    $('token').value = '';
    if (!t) return;
    setToken(t);
    refused = false;
    say($('auth-msg'), 'Checking…');
    refresh();
  });
  $('forget').addEventListener('click', () => { setToken(''); refused = false; refresh(); });
  $('reset').addEventListener('click', resetKeys);
  $('filters').addEventListener('submit', (e) => e.preventDefault());
  $('f-state').addEventListener('change', (e) => setView({ state: e.target.value, offset: 0 }));
  $('f-limit').addEventListener('change', (e) => setView({ limit: Number(e.target.value), offset: 0 }));
  let typing = 0;
  $('f-q').addEventListener('input', (e) => {
    clearTimeout(typing);
    typing = setTimeout(() => setView({ q: e.target.value.trim(), offset: 0 }), 300);
  });
  for (const b of document.querySelectorAll('#counts .card')) b.addEventListener('click', () => setView({ state: b.dataset.state, offset: 0 }));
  $('prev').addEventListener('click', () => setView({ offset: Math.max(0, view.offset - view.limit) }));
  $('next').addEventListener('click', () => setView({ offset: view.offset + view.limit }));
  setInterval(tick, 1000);
  refresh();
})();
