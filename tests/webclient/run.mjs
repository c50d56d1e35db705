// Converse.js in headless Chromium against a running xmppd, over XMPP on WebSocket (RFC 7395)
// or BOSH (XEP-0124/0206).
// Run by tests/interop_conversejs.rs, which starts the server and makes the two accounts:
//
//   node run.mjs   (settings in the environment, all required)
//     XMPPD_WS_URL       ws://127.0.0.1:PORT/xmpp-websocket (or wss://), or
//     XMPPD_BOSH_URL     http://127.0.0.1:PORT/http-bind (or https://): exactly one of the two
//     XMPPD_A_JID/_PW    first account
//     XMPPD_B_JID/_PW    second account
//     XMPPD_ROOM         a MUC room JID, e.g. room1@conference.localhost
//     XMPPD_OUT          folder for the screenshots
//     CHROMIUM           the browser (default /usr/bin/chromium)
//     XMPPD_IGNORE_CERT  "1" to accept the server's self-signed certificate (wss://)
//     XMPPD_LOGLEVEL     Converse's loglevel (default "info"; "debug" logs every stanza)
//
// Scenario: A and B each log in in their own browser context (own storage); A sends B a chat
// message by typing it and pressing Enter, B sees it; B replies, A sees it; A joins the room
// (creating it), B joins, A's groupchat message shows in B's room, B's in A's; A logs out and B
// sees A leave the room. Screenshots of both pages go to XMPPD_OUT (before the logout). Prints
// `conversejs ok` and exits 0 only when all of it worked; every wait is bounded, and the whole
// run is bounded by RUN_TIMEOUT_MS. Then lists the IQ errors the pages got (for diagnosis).
//
// What the pages log (console, page errors, failed requests) and every WebSocket frame or BOSH
// request and response body go to stderr, prefixed with the user (A or B).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DIST = path.join(HERE, 'node_modules', 'converse.js', 'dist');

/** One wait (login, a message showing up, a room joined). */
const STEP_TIMEOUT_MS = 20_000;
/** The whole run, browser start to screenshots. */
const RUN_TIMEOUT_MS = 100_000;

function env(name, fallback) {
    const v = process.env[name] ?? fallback;
    if (v === undefined || v === '') {
        console.error(`run.mjs: ${name} is not set`);
        process.exit(2);
    }
    return v;
}

const bosh = process.env.XMPPD_BOSH_URL || null;
const cfg = {
    ws: bosh ? null : env('XMPPD_WS_URL'),
    bosh,
    a: { name: 'A', jid: env('XMPPD_A_JID'), password: env('XMPPD_A_PW') },
    b: { name: 'B', jid: env('XMPPD_B_JID'), password: env('XMPPD_B_PW') },
    room: env('XMPPD_ROOM'),
    out: env('XMPPD_OUT'),
    chromium: env('CHROMIUM', '/usr/bin/chromium'),
    ignoreCert: process.env.XMPPD_IGNORE_CERT === '1',
    loglevel: env('XMPPD_LOGLEVEL', 'info'),
};
fs.mkdirSync(cfg.out, { recursive: true });

const t0 = Date.now();
const stamp = () => `${((Date.now() - t0) / 1000).toFixed(2).padStart(6)}s`;
const log = (who, ...what) => console.error(`${stamp()} [${who}]`, ...what);
/** A step of the scenario, on stdout (the Rust test shows it). */
const step = (what) => console.log(`${stamp()} ${what}`);

// --- A static server for index.html, client.js and Converse's dist/, on loopback only. ---

const TYPES = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.mjs': 'text/javascript; charset=utf-8',
    '.css': 'text/css; charset=utf-8',
    '.json': 'application/json',
    '.map': 'application/json',
    '.wasm': 'application/wasm',
    '.svg': 'image/svg+xml',
    '.png': 'image/png',
    '.ico': 'image/x-icon',
    '.woff': 'font/woff',
    '.woff2': 'font/woff2',
    '.ttf': 'font/ttf',
    '.mp3': 'audio/mpeg',
    '.ogg': 'audio/ogg',
};

function resolvePath(urlPath) {
    if (urlPath === '/' || urlPath === '/index.html') return path.join(HERE, 'index.html');
    if (urlPath === '/client.js') return path.join(HERE, 'client.js');
    if (urlPath.startsWith('/dist/')) {
        const file = path.normalize(path.join(DIST, decodeURIComponent(urlPath.slice('/dist/'.length))));
        if (file.startsWith(DIST + path.sep)) return file;
    }
    return null;
}

const server = http.createServer((req, res) => {
    const urlPath = new URL(req.url, 'http://x').pathname;
    const file = resolvePath(urlPath);
    if (req.method !== 'GET' || !file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
        log('http', `404 ${req.method} ${urlPath}`);
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
    }
    res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        'cache-control': 'no-store',
    });
    fs.createReadStream(file).pipe(res);
});
await new Promise((ok, err) => server.listen(0, '127.0.0.1', ok).on('error', err));
const origin = `http://127.0.0.1:${server.address().port}`;
step(`serving Converse ${converseVersion()} at ${origin}`);

function converseVersion() {
    const pkg = path.join(HERE, 'node_modules', 'converse.js', 'package.json');
    return JSON.parse(fs.readFileSync(pkg, 'utf8')).version;
}

// --- The browser. ---

let browser = null;
let finished = false;

async function shutdown(code) {
    if (finished) return;
    finished = true;
    clearTimeout(runTimer);
    try {
        await browser?.close();
    } catch (e) {
        console.error('closing the browser:', e);
    }
    server.close();
    server.closeAllConnections?.();
    process.exit(code);
}

const runTimer = setTimeout(async () => {
    console.error(`run.mjs: the whole run took more than ${RUN_TIMEOUT_MS} ms`);
    await screenshots('timeout');
    await shutdown(3);
}, RUN_TIMEOUT_MS);
for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
        console.error(`run.mjs: ${sig}`);
        shutdown(4);
    });
}

const loopback = (u) => {
    try {
        const { hostname } = new URL(u);
        return hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '[::1]';
    } catch {
        return false;
    }
};

const users = [cfg.a, cfg.b];

async function openPage(user) {
    const context = await browser.newContext({
        viewport: { width: 1280, height: 800 },
        ignoreHTTPSErrors: cfg.ignoreCert,
        serviceWorkers: 'block',
    });
    // Only this page's origin: anything else Converse might fetch is refused and logged.
    await context.route('**/*', (route) => {
        const u = route.request().url();
        if (u.startsWith(origin + '/') || u.startsWith('data:') || u.startsWith('blob:')
            || (cfg.bosh && u === cfg.bosh)) {
            return route.continue();
        }
        log(user.name, `refused request to ${u}`);
        return route.abort('blockedbyclient');
    });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on('console', (m) => log(user.name, `console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => {
        log(user.name, `PAGE ERROR: ${e.stack || e}`);
        user.pageErrors.push(String(e));
    });
    page.on('requestfailed', (r) => log(user.name, `request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('websocket', (ws) => {
        log(user.name, `websocket open ${ws.url()}`);
        user.websockets.push(ws.url());
        if (!loopback(ws.url())) log(user.name, `WARNING: websocket to a non-loopback address ${ws.url()}`);
        ws.on('framesent', (f) => {
            const text = String(f.payload);
            user.sent.push(text);
            log(user.name, `ws> ${text}`);
        });
        ws.on('framereceived', (f) => {
            const text = String(f.payload);
            user.received.push(text);
            log(user.name, `ws< ${text}`);
        });
        ws.on('socketerror', (e) => log(user.name, `websocket error: ${e}`));
        ws.on('close', () => log(user.name, 'websocket closed'));
    });
    // BOSH: every request body the page sends to the endpoint and every response body, in the
    // same lists as WebSocket frames.
    page.on('request', (r) => {
        if (!cfg.bosh || r.url() !== cfg.bosh || r.method() !== 'POST') return;
        const text = r.postData() ?? '';
        user.sent.push(text);
        log(user.name, `bosh> ${text}`);
    });
    page.on('response', async (r) => {
        if (!cfg.bosh || r.url() !== cfg.bosh || r.request().method() !== 'POST') return;
        try {
            const text = await r.text();
            user.received.push(text);
            log(user.name, `bosh< ${r.status()} ${text}`);
        } catch (e) {
            log(user.name, `bosh< (body unavailable: ${e})`);
        }
    });
    await page.addInitScript((settings) => {
        window.__XMPPD_CONVERSE = settings;
    }, { websocket_url: cfg.ws, bosh_service_url: cfg.bosh, jid: user.jid, password: user.password, loglevel: cfg.loglevel });
    user.context = context;
    user.page = page;
    return page;
}

async function screenshots(tag) {
    for (const u of users) {
        if (!u.page) continue;
        const file = path.join(cfg.out, `conversejs-${u.name}${tag ? '-' + tag : ''}.png`);
        try {
            await u.page.screenshot({ path: file, timeout: 5_000 });
            console.log(`screenshot ${file}`);
        } catch (e) {
            console.error(`screenshot of ${u.name} failed: ${e}`);
        }
    }
}

/** Logs in with Converse's auto_login and waits for its `connected` event. */
async function login(user) {
    const page = await openPage(user);
    await page.goto(origin + '/', { waitUntil: 'load' });
    await page.waitForFunction(
        () => window.__xmppd?.connected === true || window.__xmppd?.disconnected !== undefined,
        null,
        { timeout: STEP_TIMEOUT_MS },
    );
    const failed = await page.evaluate(() => (window.__xmppd.connected ? null : window.__xmppd.disconnected));
    if (failed !== null) throw new Error(`${user.name} could not log in: disconnected (${failed})`);
    const { jid, mechanism } = await page.evaluate(() => ({ jid: window.__xmppd.jid, mechanism: window.__xmppd.mechanism }));
    user.mechanism = mechanism;
    step(`${user.name} logged in as ${jid} with ${mechanism}`);
    if (!jid || !jid.startsWith(user.jid + '/')) throw new Error(`${user.name}: bound JID ${jid} is not a resource of ${user.jid}`);
}

/** Types `text` into the view's textarea and presses Enter, as a person would. */
async function typeAndSend(user, view, text) {
    const textarea = user.page.locator(`${view} .chat-textarea`);
    await textarea.waitFor({ state: 'visible' });
    await textarea.click();
    await textarea.fill(text);
    await textarea.press('Enter');
    // Converse empties the textarea when it takes the message.
    await user.page.waitForFunction(
        (sel) => document.querySelector(sel)?.value === '',
        `${view} .chat-textarea`,
        { timeout: STEP_TIMEOUT_MS },
    );
}

/** Waits for a message with `text` in the view (rendered, so it reached the page's DOM). */
async function waitForMessage(user, view, text) {
    await user.page
        .locator(`${view} .chat-msg__text`, { hasText: text })
        .first()
        .waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
}

const chatView = (jid) => `converse-chat[jid="${jid}"]`;
const mucView = (jid) => `converse-muc[jid="${jid}"]`;

async function openChat(user, jid) {
    await user.page.evaluate((jid) => window.__xmppd.api.chats.open(jid, {}, true).then(() => undefined), jid);
    await user.page.locator(`${chatView(jid)} .chat-textarea`).waitFor({ state: 'visible' });
}

/** Joins the room with the account's localpart as the nickname; waits until entered. */
async function joinRoom(user, room) {
    const nick = user.jid.split('@')[0];
    await user.page.evaluate(
        ({ room, nick }) => window.__xmppd.api.rooms.open(room, { nick }, true).then(() => undefined),
        { room, nick },
    );
    await user.page.waitForFunction(
        (room) => {
            const { _converse } = window.__xmppd;
            const muc = _converse.state.chatboxes.get(room);
            return muc?.session?.get('connection_status') === _converse.constants.ROOMSTATUS.ENTERED;
        },
        room,
        { timeout: STEP_TIMEOUT_MS },
    );
    await user.page.locator(`${mucView(room)} .chat-textarea`).waitFor({ state: 'visible' });
    step(`${user.name} entered ${room} as ${nick}`);
    return nick;
}

for (const u of users) Object.assign(u, { pageErrors: [], websockets: [], sent: [], received: [] });

let code = 0;
try {
    browser = await chromium.launch({
        executablePath: cfg.chromium,
        headless: true,
        // Debian's chromium as root on a machine without a network: no sandbox, no GPU, and
        // none of Chromium's own connections (updates, sync, QUIC probes, first-run pages).
        args: [
            '--no-sandbox',
            '--disable-gpu',
            '--disable-quic',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
            '--disable-dev-shm-usage',
            ...(cfg.ignoreCert ? ['--ignore-certificate-errors'] : []),
        ],
        timeout: STEP_TIMEOUT_MS,
    });
    step(`browser ${browser.version()}`);

    await Promise.all([login(cfg.a), login(cfg.b)]);
    for (const u of users) {
        const features = u.received.find((f) => f.includes('<mechanisms'));
        const offered = [...(features ?? '').matchAll(/<mechanism>([^<]+)<\/mechanism>/g)].map((m) => m[1]);
        step(`${u.name} SASL mechanisms offered: ${offered.join(' ')}`);
        const auth = u.sent.find((f) => f.includes('<auth '));
        const mech = auth?.match(/mechanism=["']([^"']+)["']/)?.[1];
        step(`${u.name} SASL mechanism on the wire: ${mech}`);
        if (mech !== u.mechanism) throw new Error(`${u.name}: Strophe says ${u.mechanism}, the wire says ${mech}`);
        if (cfg.bosh) {
            // XEP-0206: the session was created, and restarted after SASL.
            if (!u.received.some((f) => /\ssid=["']/.test(f))) throw new Error(`${u.name}: no BOSH session creation response`);
            if (!u.sent.some((f) => /restart=["']true["']/.test(f))) throw new Error(`${u.name}: no xmpp:restart request sent`);
        } else {
            const open = u.sent.find((f) => f.includes('<open '));
            if (!open || !open.includes('urn:ietf:params:xml:ns:xmpp-framing')) throw new Error(`${u.name}: no RFC 7395 <open/> sent`);
        }
    }

    // One-to-one chat, typed and sent with Enter, both ways.
    const a = cfg.a;
    const b = cfg.b;
    await openChat(b, a.jid);
    await openChat(a, b.jid);
    const hello = `hello from ${a.name} ${Date.now()}`;
    await typeAndSend(a, chatView(b.jid), hello);
    await waitForMessage(a, chatView(b.jid), hello);
    await waitForMessage(b, chatView(a.jid), hello);
    step(`B got A's chat message "${hello}"`);
    const reply = `reply from ${b.name} ${Date.now()}`;
    await typeAndSend(b, chatView(a.jid), reply);
    await waitForMessage(a, chatView(b.jid), reply);
    step(`A got B's reply "${reply}"`);
    await screenshots('chat');

    // MUC: A creates the room by joining it, B joins; groupchat both ways.
    await joinRoom(a, cfg.room);
    await joinRoom(b, cfg.room);
    const bNick = b.jid.split('@')[0];
    await a.page
        .locator(`${mucView(cfg.room)} converse-muc-occupant-list-item`, { hasText: bNick })
        .first()
        .waitFor({ state: 'attached', timeout: STEP_TIMEOUT_MS });
    step(`A sees ${bNick} in ${cfg.room}`);
    const groupA = `groupchat from ${a.name} ${Date.now()}`;
    await typeAndSend(a, mucView(cfg.room), groupA);
    await waitForMessage(b, mucView(cfg.room), groupA);
    await waitForMessage(a, mucView(cfg.room), groupA);
    step(`B got A's groupchat message "${groupA}"`);
    const groupB = `groupchat from ${b.name} ${Date.now()}`;
    await typeAndSend(b, mucView(cfg.room), groupB);
    await waitForMessage(a, mucView(cfg.room), groupB);
    step(`A got B's groupchat message "${groupB}"`);
    // The server reflected A's own groupchat message back to A (XEP-0045 §7.4): a message
    // from the room to A with A's text, seen on A's WebSocket.
    if (!a.received.some((f) => f.includes('type="groupchat"') || f.includes("type='groupchat'"))) {
        throw new Error('A received no groupchat message frames');
    }
    if (!a.received.some((f) => f.includes(groupA))) throw new Error("A's own groupchat message was not reflected to A");

    // Joining made A's Converse save the room as a XEP-0402 bookmark: published with
    // publish-options, and accepted (it asks for `max_items` `max` when the server lists
    // pubsub#config-node-max, else a number over the server's bound).
    const attrOf = (frame, name) => frame.match(new RegExp(`\\s${name}=["']([^"']*)["']`))?.[1];
    // The IQs in what was sent or received: one per WebSocket frame, any number per BOSH body.
    const iqs = (list) => list.flatMap((f) => f.match(/<iq[\s>][\s\S]*?<\/iq>|<iq[^>]*\/>/g) ?? []);
    const bookmarkIds = iqs(a.sent)
        .filter((f) => /<publish\s[^>]*node=["']urn:xmpp:bookmarks:1["']/.test(f))
        .map((f) => attrOf(f, 'id'));
    if (bookmarkIds.length === 0) throw new Error('A published no XEP-0402 bookmark on joining the room');
    for (const id of bookmarkIds) {
        const deadline = Date.now() + STEP_TIMEOUT_MS;
        let answer;
        while (!(answer = iqs(a.received).find((f) => attrOf(f, 'id') === id))
            && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 50));
        }
        if (!answer || attrOf(answer, 'type') !== 'result') {
            throw new Error(`A's bookmark publish ${id} was not accepted: ${answer ?? '(no answer yet)'}`);
        }
    }
    step(`A's room bookmark was stored (${bookmarkIds.length} publish)`);

    await screenshots('');
    for (const u of users) {
        if (u.pageErrors.length) throw new Error(`${u.name} had page errors: ${u.pageErrors.join(' | ')}`);
        const still = await u.page.evaluate(() => window.__xmppd.connected);
        if (!still) throw new Error(`${u.name} is no longer connected`);
    }

    // A logs out: Converse sends <close/> (RFC 7395 framing) and closes its WebSocket; the end
    // of A's session reaches B's room as A's unavailable presence.
    const aNick = a.jid.split('@')[0];
    await a.page.evaluate(() => window.__xmppd.api.user.logout());
    await a.page.waitForFunction(() => window.__xmppd.disconnected !== undefined, null, { timeout: STEP_TIMEOUT_MS });
    await b.page.waitForFunction(
        ({ room, nick }) => {
            const muc = window.__xmppd._converse.state.chatboxes.get(room);
            const occ = muc?.occupants?.models?.find((o) => o.get('nick') === nick);
            return !occ || occ.get('presence') === 'offline';
        },
        { room: cfg.room, nick: aNick },
        { timeout: STEP_TIMEOUT_MS },
    );
    // Over BOSH the end is a `type='terminate'` request (XEP-0124 §13).
    const closeSent = cfg.bosh
        ? a.sent.some((f) => /type=["']terminate["']/.test(f))
        : a.sent.some((f) => f.startsWith('<close'));
    const closeReceived = cfg.bosh
        ? a.received.some((f) => /type=["']terminate["']/.test(f))
        : a.received.some((f) => f.startsWith('<close'));
    step(`A logged out (<close/> sent: ${closeSent}, the server's <close/> seen before the socket closed: ${closeReceived})`);
    step(`B saw ${aNick} leave ${cfg.room}`);
    if (!closeSent) throw new Error(`Converse sent no ${cfg.bosh ? "type='terminate'" : '<close/>'} when A logged out`);
    if (!(await b.page.evaluate(() => window.__xmppd.connected))) throw new Error('B is no longer connected');
    step('conversejs ok');
} catch (e) {
    console.error(`run.mjs: FAILED: ${e?.stack || e}`);
    await screenshots('failure');
    code = 1;
}
reportErrors();
await shutdown(code);

/**
 * Every IQ error the server (or a peer through it) answered a page with, with what was asked:
 * Converse copes with most (a missing vCard, an empty PEP node), but they are the first place
 * to look when something does not work.
 */
function reportErrors() {
    const attr = (frame, name) => frame.match(new RegExp(`\\s${name}=["']([^"']*)["']`))?.[1];
    for (const u of users) {
        const asked = new Map();
        for (const f of u.sent) {
            if (!f.startsWith('<iq')) continue;
            const id = attr(f, 'id');
            // The first child element, with its namespace and the node it names, if any.
            const child = f.replace(/^<iq[^>]*>\s*/, '').match(/^<([\w:-]+)([^>]*)>/);
            const inner = f.match(/<(items|publish|item|query)\s[^>]*node=["']([^"']+)["']/);
            const what = child ? `${child[1]}${child[2].match(/xmlns=["']([^"']+)["']/) ? ` (${child[2].match(/xmlns=["']([^"']+)["']/)[1]})` : ''}` : '?';
            asked.set(id, `${attr(f, 'type')} ${what}${inner ? ` ${inner[1]} node=${inner[2]}` : ''} to ${attr(f, 'to') ?? '(own account)'}`);
        }
        for (const f of u.received) {
            if (!f.startsWith('<iq') || attr(f, 'type') !== 'error') continue;
            const cond = f.match(/<([\w-]+) xmlns=["']urn:ietf:params:xml:ns:xmpp-stanzas["']/)?.[1];
            const text = f.match(/<text[^>]*>([^<]*)<\/text>/)?.[1];
            console.log(`iq error to ${u.name}: ${asked.get(attr(f, 'id')) ?? attr(f, 'id')} -> ${cond}${text ? ` (${text})` : ''}`);
        }
    }
}
