// Real-browser test of the PinokioCloud web UI: headless Chromium driven by
// playwright-core. Run by pinokio-cli/tests/browser.rs against a live
// `pinokio serve`; it can also be run by hand:
//
//   node tests/browser/e2e.mjs http://127.0.0.1:42000
//
// Environment:
//   PINOKIO_E2E_APP          catalog id of the app to install (default: browserdemo)
//   PINOKIO_E2E_QUERY        what to type in the Discover search (default: the app id)
//   PINOKIO_E2E_LOG_TEXT     text the app's log must show in the Terminal (default: "Serving HTTP")
//   PINOKIO_E2E_EXPOSE       1: the Tunnels step must produce an exposure with a public URL
//   PINOKIO_SCREENSHOTS      folder for discover.png, library.png, terminal.png, tunnels.png
//                            (and failure.png when a step fails)
//   PINOKIO_CHROMIUM         the browser (default: /usr/bin/chromium)
//   PINOKIO_E2E_HEADED       1: show the browser window (debugging)
//   PINOKIO_E2E_NARROW_SHOTS 1: also save narrow-*.png (each tab at 400 px)
//   PINOKIO_E2E_EXPECT_COLOUR 1: the Terminal must render at least one ANSI colour
//
// Exit status 0 when every step passed; 1 with the failing step on stderr.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const base = (process.argv[2] || process.env.PINOKIO_URL || 'http://127.0.0.1:42000').replace(/\/+$/, '');
const appId = process.env.PINOKIO_E2E_APP || 'browserdemo';
const query = process.env.PINOKIO_E2E_QUERY || appId;
const logText = process.env.PINOKIO_E2E_LOG_TEXT || 'Serving HTTP';
const mustExpose = process.env.PINOKIO_E2E_EXPOSE === '1';
const shots = process.env.PINOKIO_SCREENSHOTS || '';
const executablePath = process.env.PINOKIO_CHROMIUM || '/usr/bin/chromium';
const headed = process.env.PINOKIO_E2E_HEADED === '1';

const t0 = Date.now();
const log = (...a) => console.log(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pinokio-e2e-chromium-'));
if (shots) fs.mkdirSync(shots, { recursive: true });

const pageErrors = [];
const consoleErrors = [];
let context;
let page;
let step = 'launch';

async function shot(name) {
  if (!shots) return;
  // let the last renders and scrolls settle
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(shots, name), fullPage: false });
  log('screenshot', name);
}

function card(testid) {
  return page.locator(`[data-testid="${testid}"][data-app-id="${appId}"]`);
}

/** Answer an input form if one shows up (the fixture has none; other apps may). */
async function answerInputsIfAny() {
  const dlg = page.getByTestId('input-dialog');
  if (await dlg.isVisible()) {
    log('an input form is open: submitting its defaults');
    await page.getByTestId('input-submit').click();
    await dlg.waitFor({ state: 'hidden', timeout: 10_000 });
  }
}

async function waitFor(what, f, timeout, every = 250) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await f();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await answerInputsIfAny().catch(() => {});
    await page.waitForTimeout(every);
  }
  throw new Error(`timed out after ${timeout / 1000}s waiting for ${what}` + (last instanceof Error ? ` (${last.message})` : ''));
}

async function jobStates() {
  return page.$$eval('[data-testid="job-card"]', (xs) => xs.map((x) => ({
    id: x.getAttribute('data-job-id'),
    app: x.getAttribute('data-app-id'),
    state: x.getAttribute('data-state'),
    title: x.querySelector('[data-testid="job-title"]')?.textContent,
    step: x.querySelector('[data-testid="job-step"]')?.textContent,
    error: x.querySelector('[data-testid="job-error"]')?.textContent,
  })));
}

async function noHorizontalOverflow(where) {
  const o = await page.evaluate(() => ({ sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth }));
  if (o.sw > o.cw + 1) throw new Error(`${where}: the page is ${o.sw}px wide in a ${o.cw}px viewport (horizontal overflow)`);
}

async function main() {
  step = 'launch chromium';
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: !headed,
    viewport: { width: 1280, height: 800 },
    args: [
      ...(headed ? [] : ['--headless']),
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
    timeout: 60_000,
  });
  page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on('pageerror', (e) => { pageErrors.push(e.message); log('PAGE ERROR', e.message); });
  page.on('console', (m) => {
    if (m.type() === 'error') { consoleErrors.push(m.text()); log('console error:', m.text()); }
  });
  page.on('dialog', (d) => { log('unexpected dialog:', d.message()); d.dismiss().catch(() => {}); });

  // ------------------------------------------------------------ open
  step = 'open the UI';
  log('opening', base);
  const resp = await page.goto(base + '/', { waitUntil: 'domcontentloaded' });
  if (!resp || !resp.ok()) throw new Error(`GET / answered ${resp && resp.status()}`);
  await page.getByTestId('tab-discover').waitFor();
  if (await page.getByTestId('login').isVisible()) throw new Error('the UI asks for a token on a loopback connection');
  await waitFor('the system header', async () => {
    const p = await page.getByTestId('sys-platform').textContent();
    const d = await page.getByTestId('sys-disk').textContent();
    return p && p !== '…' && p !== '?' && d && d !== '…' ? { p, d } : null;
  }, 20_000);
  log('header:', await page.getByTestId('system').innerText());

  // ------------------------------------------------------------ ANSI renderer
  step = 'ANSI renderer';
  const ansi = await page.evaluate(() => {
    const { Term } = window.pinokioUI;
    const a = new Term(document.createElement('div'), 100);
    a.write('\x1b[1;31mred bold\x1b[0m plain\r\n');
    a.write('progress 10%\rprogress 100%\n');
    a.write('\x1b[38;5;208morange\x1b['); // an escape cut between two chunks
    a.write('0m after\x1b]0;a title\x07 osc\x1b[?25l\x1b(B\r');
    a.write('\n\x1b[38;2;1;2;3mrgb\x1b[39m\x1b[42mbg\x1b[49m\n');
    const lines = [...a.node.children].map((l) => l.textContent);
    const spans = [...a.node.querySelectorAll('span')].map((x) => ({ t: x.textContent, c: x.style.color, b: x.style.backgroundColor, w: x.style.fontWeight }));
    const b = new Term(document.createElement('div'), 50);
    for (let i = 0; i < 500; i++) b.write('line ' + i + '\n');
    return { lines, spans, bounded: b.node.childElementCount, last: b.node.lastChild.textContent };
  });
  const expectLines = ['red bold plain', 'progress 100%', 'orange after osc', 'rgbbg'];
  if (JSON.stringify(ansi.lines) !== JSON.stringify(expectLines)) throw new Error('ANSI lines ' + JSON.stringify(ansi.lines));
  const sp = (t) => ansi.spans.find((x) => x.t === t) || {};
  if (sp('red bold').c !== 'rgb(224, 85, 97)' || sp('red bold').w !== 'bold') throw new Error('SGR 1;31 ' + JSON.stringify(sp('red bold')));
  if (sp('orange').c !== 'rgb(255, 135, 0)') throw new Error('SGR 38;5;208 ' + JSON.stringify(sp('orange')));
  if (sp('rgb').c !== 'rgb(1, 2, 3)' || !sp('bg').b) throw new Error('SGR 38;2 / 42 ' + JSON.stringify(ansi.spans));
  if (ansi.bounded > 50 || ansi.last !== 'line 499') throw new Error(`line bound: ${ansi.bounded} lines, last ${ansi.last}`);
  log('ANSI renderer ok');

  // ------------------------------------------------------------ discover
  step = 'Discover: browse and search the catalog';
  await page.getByTestId('catalog-card').first().waitFor({ timeout: 20_000 });
  const total = await page.getByTestId('discover-summary').textContent();
  log('catalog:', total);
  const cats = await page.locator('#discover-category option').count();
  if (cats < 2) throw new Error('the category filter has no categories');
  await page.mouse.move(0, 0);
  await shot('discover.png');
  await page.getByTestId('discover-search').fill(query);
  await card('catalog-card').waitFor({ timeout: 15_000 });
  await waitFor('the search to narrow the list', async () => (await page.getByTestId('catalog-card').count()) <= 10, 10_000);
  const names = await page.getByTestId('catalog-card').locator('.card-title').allTextContents();
  log('search', JSON.stringify(query), '→', names.join(', '));

  // ------------------------------------------------------------ install
  step = 'install from Discover';
  const install = card('catalog-card').getByTestId('install-btn');
  if (await install.isDisabled()) throw new Error(`${appId} is not installable from Discover: "${await install.textContent()}"`);
  await install.click();
  await page.locator(`[data-testid="job-card"][data-app-id="${appId}"]`).first().waitFor({ timeout: 15_000 });
  log('install job:', JSON.stringify(await jobStates()));
  await waitFor('the install job to end', async () => {
    const js = (await jobStates()).filter((j) => j.app === appId && /install/.test(j.title || ''));
    const j = js[0];
    if (j && j.state === 'failed') throw new Error('the install failed: ' + (j.error || j.step));
    return j && j.state === 'succeeded';
  }, 180_000).catch(async (e) => { throw new Error(e.message + ' jobs=' + JSON.stringify(await jobStates())); });
  log('installed');
  await waitFor('the catalog card to say installed', () => card('catalog-card').getByTestId('installed-badge').isVisible(), 15_000);

  // ------------------------------------------------------------ library + start
  step = 'My Library: start the app';
  await page.getByTestId('tab-library').click();
  const lib = card('library-card');
  await lib.waitFor({ timeout: 15_000 });
  await waitFor('the app to be installed (idle)', async () => {
    const s = await lib.getAttribute('data-state');
    return s === 'installed' || s === 'stopped' ? s : null;
  }, 30_000);
  await lib.getByTestId('start-btn').click();
  const urlLink = lib.getByTestId('app-url');
  await waitFor('the app URL in My Library', async () => {
    const s = await lib.getAttribute('data-state');
    if (s === 'failed') throw new Error('the app failed: ' + (await lib.getByTestId('app-error').textContent()));
    return urlLink.isVisible();
  }, 120_000).catch(async (e) => { throw new Error(e.message + ' jobs=' + JSON.stringify(await jobStates())); });
  const appUrl = await urlLink.getAttribute('href');
  log('app URL:', appUrl, 'state:', await lib.getAttribute('data-state'),
    'public:', await lib.getByTestId('app-public-url').evaluateAll((xs) => xs.map((x) => x.href).join(' ') || 'none'));
  if (!/^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?\//.test(appUrl)) throw new Error('unexpected app URL ' + appUrl);
  // the app answers (and prints a request line into its log)
  const r = await fetch(appUrl);
  if (!r.ok) throw new Error(`the app at ${appUrl} answered ${r.status}`);
  log('the app answers', r.status);
  // the app's menu
  await lib.getByTestId('menu-btn').click();
  await lib.getByTestId('menu-item').first().waitFor({ timeout: 15_000 });
  const items = await lib.getByTestId('menu-item').locator('.menu-label').allTextContents();
  log('menu:', items.join(' | '));
  await page.mouse.move(0, 0);
  await shot('library.png');

  // ------------------------------------------------------------ terminal
  step = 'Terminal: live logs';
  await lib.getByTestId('logs-btn').click();
  await page.getByTestId('view-terminal').waitFor();
  const sel = await page.getByTestId('term-source').inputValue();
  if (sel !== 'app:' + appId) throw new Error('the Terminal follows ' + sel + ', not app:' + appId);
  const out = page.getByTestId('term-output');
  await waitFor(`"${logText}" in the Terminal`, async () => (await out.textContent()).includes(logText), 30_000)
    .catch(async (e) => { throw new Error(e.message + '; it shows: ' + JSON.stringify((await out.textContent()).slice(-600))); });
  // a live line: request the app again and see it arrive
  await fetch(appUrl + '?from-e2e=1');
  await waitFor('a live log line', async () => (await out.textContent()).includes('from-e2e=1'), 15_000)
    .catch(async (e) => { throw new Error(e.message + '; it shows: ' + JSON.stringify((await out.textContent()).slice(-600))); });
  const colored = await out.locator('span[style*="color"]').count();
  const escapes = (await out.textContent()).includes('\x1b');
  log('terminal lines:', await out.locator('.tl').count(), 'coloured spans:', colored, 'status:', await page.getByTestId('term-status').textContent());
  if (escapes) throw new Error('raw escape sequences reached the Terminal');
  await shot('terminal.png');

  // the events of the install run, with the colours its shell printed
  step = 'Terminal: a run\'s events';
  const runOpt = await waitFor('the install run in the Terminal sources', async () => {
    const opts = await page.locator('#term-source option').evaluateAll((xs) => xs.map((x) => ({ v: x.value, t: x.textContent })));
    return opts.find((o) => o.v.startsWith('run:') && /install/.test(o.t) && o.t.includes(appId));
  }, 15_000, 500);
  await page.getByTestId('term-source').selectOption(runOpt.v);
  await waitFor('the install run\'s end in the Terminal', async () => /job succeeded/.test(await out.textContent()), 15_000)
    .catch(async (e) => { throw new Error(e.message + '; it shows: ' + JSON.stringify((await out.textContent()).slice(-600))); });
  const runColoured = await out.locator('span[style*="color"]').count();
  log('run', runOpt.v, 'lines:', await out.locator('.tl').count(), 'coloured spans:', runColoured);
  if ((await out.textContent()).includes('\x1b')) throw new Error('raw escape sequences reached the Terminal');
  if (process.env.PINOKIO_E2E_EXPECT_COLOUR === '1' && colored + runColoured === 0) throw new Error('no ANSI colour was rendered');

  // ------------------------------------------------------------ tunnels
  step = 'Tunnels';
  await page.getByTestId('tab-tunnels').click();
  await page.getByTestId('view-tunnels').waitFor();
  await waitFor('the app in the expose form', async () => (await page.locator('#expose-app option').allTextContents()).some((t) => t.startsWith(appId)), 15_000);
  const exposure = page.locator(`[data-testid="exposure-card"][data-app-id="${appId}"]`);
  await page.waitForTimeout(500);
  if (await exposure.count()) {
    // exposed by start already: unexpose, then expose again with the form
    log('exposed by start:', await exposure.locator('[data-testid="platform-url"], [data-testid="public-url"]').first().getAttribute('href'));
    await exposure.getByTestId('unexpose-btn').click();
    await waitFor('the exposure to go away', async () => (await exposure.count()) === 0, 20_000);
    log('unexposed');
  }
  await page.getByTestId('expose-app').selectOption(appId);
  await page.getByTestId('expose-btn').click();
  await waitFor('the expose answer', async () => (await page.getByTestId('expose-btn').textContent()) === 'Expose', 60_000);
  await page.waitForTimeout(500);
  const toasts = await page.getByTestId('toast').allTextContents();
  if (await exposure.count()) {
    const pub = exposure.locator('[data-testid="public-url"], [data-testid="platform-url"]').first();
    log('exposure:', (await exposure.innerText()).replace(/\s+/g, ' '));
    if (!(await pub.count())) throw new Error('the exposure shows no public URL');
    log('public URL:', await pub.getAttribute('href'));
  } else if (mustExpose) {
    throw new Error('no exposure appeared; toasts: ' + JSON.stringify(toasts));
  } else {
    log('no exposure on this machine (expected without a platform proxy or tunnel tool):', JSON.stringify(toasts));
  }
  await page.mouse.move(0, 0);
  await shot('tunnels.png');

  // ------------------------------------------------------------ narrow layout
  step = 'narrow layout (400 px)';
  await page.setViewportSize({ width: 400, height: 780 });
  for (const t of ['discover', 'library', 'terminal', 'tunnels']) {
    await page.getByTestId('tab-' + t).click();
    await page.waitForTimeout(200);
    await noHorizontalOverflow(t + ' at 400 px');
    if (process.env.PINOKIO_E2E_NARROW_SHOTS === '1') await shot(`narrow-${t}.png`);
  }
  await page.setViewportSize({ width: 1280, height: 800 });

  // ------------------------------------------------------------ stop
  step = 'stop the app';
  await page.getByTestId('tab-library').click();
  await lib.getByTestId('stop-btn').click();
  await waitFor('the app to stop', async () => {
    const s = await lib.getAttribute('data-state');
    return s !== 'running' && !(await urlLink.isVisible()) ? s : null;
  }, 60_000);
  log('stopped: state', await lib.getAttribute('data-state'));
  await waitFor('the app to stop answering', async () => {
    try { await fetch(appUrl, { signal: AbortSignal.timeout(2000) }); return false; } catch (_) { return true; }
  }, 20_000);
  if (await page.locator(`[data-testid="exposure-card"][data-app-id="${appId}"]`).count()) {
    await page.getByTestId('tab-tunnels').click();
    await waitFor('the exposure to go away after stop', async () => !(await page.locator(`[data-testid="exposure-card"][data-app-id="${appId}"]`).count()), 15_000);
  }

  step = 'page errors';
  if (pageErrors.length) throw new Error('uncaught errors in the page: ' + pageErrors.join(' | '));
  log('PASS in', ((Date.now() - t0) / 1000).toFixed(1) + 's');
}

let code = 0;
try {
  await main();
} catch (e) {
  code = 1;
  console.error(`[e2e] FAILED at step "${step}": ${e && e.stack ? e.stack : e}`);
  if (consoleErrors.length) console.error('[e2e] console errors:', consoleErrors.join(' | '));
  if (page && shots) {
    try {
      await page.screenshot({ path: path.join(shots, 'failure.png'), fullPage: true });
      console.error('[e2e] screenshot:', path.join(shots, 'failure.png'));
    } catch (_) { /* ignore */ }
  }
} finally {
  if (context) await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(code);
