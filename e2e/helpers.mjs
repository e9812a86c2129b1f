// Helpers of the console's browser tests: the carteiro process, the SMTP peer,
// the browser, logging in, and what a failing step leaves behind.
// Everything listens on 127.0.0.1 only, and every child stops by itself: each
// runs under coreutils' `timeout`, and whatever is still running when this
// process exits is killed.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const E2E_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.dirname(E2E_DIR);
export const SCREENSHOTS = path.join(E2E_DIR, 'screenshots');
export const FAILURES = path.join(E2E_DIR, 'failures');

/** Longest life of any child process (seconds): the whole run takes well under this. */
const CHILD_LIFETIME_S = 900;

const children = new Set();
process.on('exit', () => {
    for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => process.exit(130));
}

/** Spawns `command args` under `timeout`, remembered so that it is killed when this process exits. */
function spawnChild(command, args, options) {
    const child = spawn('timeout', ['--kill-after=10', String(CHILD_LIFETIME_S), command, ...args], options);
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
}

/** Stops a child with SIGTERM, then SIGKILL if it is still there after `graceMs`. */
async function stopChild(child, graceMs = 10_000) {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
}

/**
 * Resolves with the first value `find(line)` returns for a line of `stream`, or
 * rejects on timeout or end. The stream goes on being read (and dropped) after,
 * so that its writer never blocks on a full pipe.
 */
function waitForLine(stream, find, what, timeoutMs) {
    return new Promise((resolve, reject) => {
        const lines = createInterface({ input: stream });
        const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
        const done = (error, value) => {
            clearTimeout(timer);
            lines.off('line', onLine);
            lines.off('close', onClose);
            error ? reject(error) : resolve(value);
        };
        const onLine = (line) => {
            const value = find(line);
            if (value !== undefined) done(null, value);
        };
        const onClose = () => done(new Error(`the stream ended before ${what}`));
        lines.on('line', onLine);
        lines.on('close', onClose);
    });
}

export function tempDir(prefix) {
    return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * The scriptable SMTP peer (crates/carteiro/tests/peers/smtp_peer.py) in plain
 * mode, from the test virtual environment that scripts/test makes. `auth` is
 * "USER:PASS"; with it the peer offers AUTH without TLS and requires it.
 * `messages` fills with its "message" events; `nextMessage()` waits for one.
 */
export async function startPeer({ auth } = {}) {
    const python = process.env.CARTEIRO_TEST_PYTHON ?? path.join(REPO, '.venv-test/bin/python');
    const script = path.join(REPO, 'crates/carteiro/tests/peers/smtp_peer.py');
    const args = [script, '--host', '127.0.0.1', '--port', '0', '--mode', 'plain'];
    if (auth) args.push('--auth', auth, '--require-auth');
    // stdin stays an open pipe: the peer stops when it closes (also if this process dies).
    const child = spawnChild(python, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    const messages = [];
    const waiters = [];
    const lines = createInterface({ input: child.stdout });
    const port = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the SMTP peer did not say "ready" within 20 s')), 20_000);
        child.once('exit', (code) => reject(new Error(`the SMTP peer exited (${code}) before it was ready`)));
        lines.on('line', (line) => {
            let event;
            try {
                event = JSON.parse(line);
            } catch {
                return;
            }
            if (event.event === 'ready') {
                clearTimeout(timer);
                resolve(event.port);
            } else if (event.event === 'message') {
                messages.push(event);
                waiters.splice(0).forEach((wake) => wake());
            }
        });
    });
    return {
        port,
        messages,
        /** Waits until the peer has received more than `count` messages; returns the (count+1)-th. */
        async nextMessage(count, timeoutMs = 30_000) {
            const deadline = Date.now() + timeoutMs;
            while (messages.length <= count) {
                const left = deadline - Date.now();
                if (left <= 0) throw new Error(`the SMTP peer received no message within ${timeoutMs} ms`);
                await new Promise((resolve) => {
                    const timer = setTimeout(resolve, left);
                    waiters.push(() => {
                        clearTimeout(timer);
                        resolve();
                    });
                });
            }
            return messages[count];
        },
        async stop() {
            child.stdin.end();
            await stopChild(child, 5_000);
        },
    };
}

/**
 * `carteiro serve` on a fresh data directory, listening on a port of its
 * choosing on 127.0.0.1 (it prints the address), the first administrator
 * `admin` with `adminPassword`. Resolves once GET /readyz answers 200.
 */
export async function startCarteiro({ adminPassword }) {
    const binary = process.env.CARTEIRO_BIN ?? path.join(REPO, 'target/debug/carteiro');
    if (!fs.existsSync(binary)) {
        throw new Error(`${binary} is missing: build it first (cargo build -p carteiro)`);
    }
    const dir = tempDir('carteiro-e2e-');
    const logPath = path.join(dir, 'carteiro.log');
    const log = fs.openSync(logPath, 'a');
    const env = {
        ...process.env,
        CARTEIRO_ADMIN_PASSWORD: adminPassword,
        CARTEIRO_HOSTNAME: 'carteiro.test',
        RUST_LOG: process.env.RUST_LOG ?? 'info',
    };
    for (const name of ['CARTEIRO_DATABASE_URL', 'CARTEIRO_CONFIG', 'CARTEIRO_MASTER_KEY', 'CARTEIRO_SMTP_LISTEN']) {
        delete env[name];
    }
    const args = ['serve', '--data-dir', path.join(dir, 'data'), '--listen', '127.0.0.1:0'];
    const child = spawnChild(binary, args, { env, stdio: ['ignore', 'pipe', log] });
    fs.closeSync(log);
    const logTail = () => tail(logPath);
    const exited = once(child, 'exit').then(([code]) => {
        throw new Error(`carteiro exited (${code}) before listening`);
    });
    const announced = waitForLine(
        child.stdout,
        (line) => line.match(/^carteiro: API on (http:\/\/[^/\s]+)/)?.[1],
        'carteiro to print "carteiro: API on http://…"',
        60_000,
    );
    // Whichever loses the race below settles later: neither may be an unhandled rejection.
    exited.catch(() => {});
    announced.catch(() => {});
    let base;
    try {
        base = await Promise.race([announced, exited]);
    } catch (error) {
        await stopChild(child);
        throw new Error(`${error.message}; its log:\n${logTail()}`);
    }
    const deadline = Date.now() + 30_000;
    for (;;) {
        const status = await fetch(`${base}/readyz`).then((r) => r.status, () => 0);
        if (status === 200) break;
        if (Date.now() > deadline) {
            await stopChild(child);
            throw new Error(`GET /readyz did not answer 200 within 30 s (last: ${status}); log:\n${logTail()}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return {
        base,
        dir,
        /** Calls the JSON API; resolves with {status, body}. */
        async api(method, p, { token, body } = {}) {
            const headers = { accept: 'application/json' };
            if (token) headers.authorization = `Bearer ${token}`;
            if (body !== undefined) headers['content-type'] = 'application/json';
            const response = await fetch(new URL(p, base), {
                method,
                headers,
                body: body === undefined ? undefined : JSON.stringify(body),
                signal: AbortSignal.timeout(30_000),
            });
            const text = await response.text();
            let json;
            try {
                json = JSON.parse(text);
            } catch {
                json = text;
            }
            return { status: response.status, body: json };
        },
        /** An admin token from POST /api/v1/login. */
        async token(username, password) {
            const { status, body } = await this.api('POST', '/api/v1/login', { body: { username, password } });
            if (status !== 200 || !body?.token) {
                throw new Error(`POST /api/v1/login as ${username}: ${status} ${JSON.stringify(body)}`);
            }
            return body.token;
        },
        async stop({ keepDir = false } = {}) {
            await stopChild(child);
            if (!keepDir) fs.rmSync(dir, { recursive: true, force: true });
        },
    };
}

function tail(file, lines = 40) {
    try {
        return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
        return '(no log)';
    }
}

/** Debian's Chromium, headless, through playwright-core (no browser download). */
export async function launchBrowser() {
    return chromium.launch({
        executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
        args: ['--no-sandbox', '--disable-background-networking'],
        timeout: 60_000,
    });
}

/**
 * A browser context (its own cookies) whose pages wait at most 15 s for a
 * selector or a navigation, and whose JavaScript errors are collected into `errors`.
 */
export async function newSession(browser, { base, viewport = { width: 1280, height: 800 } }) {
    const context = await browser.newContext({ baseURL: base, viewport, locale: 'en-US' });
    context.setDefaultTimeout(15_000);
    context.setDefaultNavigationTimeout(15_000);
    const errors = [];
    context.on('page', (page) => watchErrors(page, errors));
    const page = await context.newPage();
    return { context, page, errors };
}

/** The last document each page was served ({status, url, method}), for the evidence of a failure. */
const served = new WeakMap();

function watchErrors(page, errors) {
    page.on('response', (response) => {
        const request = response.request();
        if (!request.isNavigationRequest() || response.frame() !== page.mainFrame()) return;
        if (response.status() >= 300 && response.status() < 400) return; // a redirect has no body
        served.set(page, { status: response.status(), url: response.url(), method: request.method() });
    });
    page.on('pageerror', (error) => errors.push(`${page.url()}: ${error.message}`));
    page.on('console', (message) => {
        if (message.type() === 'error') errors.push(`${page.url()}: console: ${message.text()}`);
    });
}

/** Logs in through the form at /login and waits until the browser has left it. */
export async function login(page, username, password) {
    await page.goto('/login');
    await page.fill('input[name=username]', username);
    await page.fill('input[name=password]', password);
    await Promise.all([
        page.waitForURL((url) => url.pathname !== '/login'),
        page.click('button#login'),
    ]);
    await page.waitForLoadState('load');
}

/** A full-page screenshot, kept in git as e2e/screenshots/NAME.png. */
export async function screenshot(page, name) {
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
    // From the end of the page, an element sticky at the bottom (the Save bar) sits in
    // its own place instead of over the content below the window's current position.
    await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
    await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/**
 * What a failing step leaves behind for a person to read: for each open page,
 * its URL, HTML and a screenshot under e2e/failures/ (not kept in git).
 * Returns a short description for the error message.
 */
export async function keepEvidence(stepName, sessions) {
    fs.mkdirSync(FAILURES, { recursive: true });
    const slug = stepName.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
    const notes = [];
    for (const [who, session] of Object.entries(sessions)) {
        for (const [i, page] of (session?.context.pages() ?? []).entries()) {
            const base = path.join(FAILURES, `${slug}.${who}${i ? `.${i}` : ''}`);
            try {
                // The page as it is now; when Chromium shows its own error page instead
                // (an empty 4xx or 5xx), what that URL serves when asked again.
                const last = served.get(page);
                let html = page.url().startsWith('chrome-error:') ? null : await page.content().catch(() => null);
                if (html === null && last) {
                    const again = await page.context().request.get(last.url, { maxRedirects: 0 });
                    html = `<!-- ${last.method} ${last.url} answered ${last.status}; GET again: ${again.status()} -->\n${await again.text()}`;
                }
                fs.writeFileSync(`${base}.html`, html ?? '');
                await page.screenshot({ path: `${base}.png`, fullPage: true });
                const status = last ? ` (last document: ${last.method} ${last.url} → ${last.status})` : '';
                notes.push(`${who}: ${page.url()}${status} → ${path.relative(REPO, base)}.html/.png`);
            } catch (error) {
                notes.push(`${who}: ${page.url()} (could not save: ${error.message})`);
            }
        }
    }
    return notes.join('\n');
}

/** The text of the labels of the form control named `name` (its <label for> or the label around it). */
export async function labelOf(page, name) {
    return page.evaluate((name) => {
        const control = document.querySelector(`[name="${name}"]:not([type=hidden])`);
        if (!control) return null;
        const labels = [...(control.labels ?? [])].map((l) => l.textContent.replace(/\s+/g, ' ').trim());
        return labels.join(' | ');
    }, name);
}

/**
 * Opens `path` and returns the HTTP status of its document, also when Chromium
 * replaces an empty 4xx answer by its own error page (page.goto throws then).
 */
export async function visit(page, p) {
    const [response] = await Promise.all([
        page.waitForResponse((r) => r.request().isNavigationRequest() && new URL(r.url()).pathname === p),
        page.goto(p).catch(async (error) => {
            if (!/ERR_HTTP_RESPONSE_CODE_FAILURE/.test(error.message)) throw error;
            await page.waitForLoadState('load'); // Chromium's error page
        }),
    ]);
    return response.status();
}

/** Reloads `page` until `check()` is true, or fails after `timeoutMs` with `what`. */
export async function reloadUntil(page, check, what, timeoutMs = 60_000) {
    const deadline = Date.now() + timeoutMs;
    for (let delay = 250; ; delay = Math.min(delay * 2, 2_000)) {
        if (await check()) return;
        if (Date.now() + delay > deadline) throw new Error(`after ${timeoutMs} ms of reloading ${page.url()}: ${what}`);
        await new Promise((resolve) => setTimeout(resolve, delay));
        await page.reload();
    }
}
