// The web console in a real browser (issue #3): a platform administrator sets
// the global level against a real SMTP server (aiosmtpd) with Test connection,
// creates a company and its administrator; the company administrator sets its
// company's E-mail tab, sends a message through the API and follows it in
// Messages; the language switch, validation at the field and the phone width.
// The steps run in order, each on what the earlier ones made: after a failure
// the rest are skipped (E2E_KEEP_GOING=1 runs them all anyway).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
    FAILURES,
    keepEvidence,
    labelOf,
    launchBrowser,
    login,
    newSession,
    reloadUntil,
    screenshot,
    startCarteiro,
    startPeer,
    visit,
} from './helpers.mjs';

const ADMIN = { username: 'admin', password: 'admin-e2e-password' };
const RELAY = { username: 'relay@platform.test', password: 'relay-secret-9' };
const ACME = { slug: 'acme', name: 'ACME Ltda', email: 'contato@acme.example' };
const OTHER = { slug: 'other', name: 'Other Corp', email: 'contato@other.example' };
const ACME_ADMIN = { username: 'acme-admin', password: 'acme-admin-password' };
const PLATFORM_SENDER = { name: 'Plataforma', address: 'noreply@platform.test' };
const ACME_SENDER = { name: 'ACME Notificações', address: 'noreply@acme.example' };
const RECIPIENT = 'cliente@example.com';

// What the steps share.
let peer;
let app;
let browser;
const sessions = {}; // platform, company, phone: {context, page, errors}
let apiKey;
let messageId;
let delivered; // the peer's "message" event

let failed = false;
const keepGoing = process.env.E2E_KEEP_GOING === '1';

/** One step of the scenario: skipped after an earlier failure; a failure keeps the pages' HTML. */
function step(name, fn, timeout = 60_000) {
    it(name, { timeout }, async (t) => {
        if (failed && !keepGoing) {
            t.skip('an earlier step failed');
            return;
        }
        try {
            await fn();
        } catch (error) {
            failed = true;
            const evidence = await keepEvidence(name, sessions).catch((e) => `(no evidence: ${e.message})`);
            const note = `\n--- pages at the failure:\n${evidence}`;
            error.message += note;
            if (typeof error.stack === 'string') error.stack += note; // what the reporter prints
            throw error;
        }
    });
}

// ------------------------------------------------------------------ helpers

const form = '#settings-form';

/** The settings form's control for a document path (not a hidden companion input of a checkbox). */
const control = (name) => `${form} [name="${name}"]:not([type=hidden])`;

/** Sets the settings form's fields by their document path: selects, checkboxes (booleans) and text. */
async function fillSettings(page, values) {
    for (const [name, value] of Object.entries(values)) {
        const field = page.locator(control(name));
        assert.equal(await field.count(), 1, `the settings form has one field named ${name}`);
        const kind = await field.evaluate((el) => (el.tagName === 'SELECT' ? 'select' : el.type));
        if (kind === 'select') await field.selectOption(String(value));
        else if (kind === 'checkbox') await field.setChecked(Boolean(value));
        else await field.fill(String(value));
    }
}

/** The value of each named field as the form shows it (checkboxes as booleans). */
async function readSettings(page, names) {
    const values = {};
    for (const name of names) {
        const field = page.locator(control(name));
        values[name] = await field.evaluate((el) => (el.type === 'checkbox' ? el.checked : el.value));
    }
    return values;
}

/** Clicks something that submits a form and waits for the page that comes back. */
async function submit(page, selector) {
    const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
    return response;
}

/**
 * Runs Test connection from the open settings page and returns what #test-result
 * shows: {ok, steps: [{step, ok, ms, detail}], hint}. Asserts that the page did
 * not reload (the result comes from a fetch).
 */
async function testConnection(page, to) {
    await page.fill('input[name=test_to]', to);
    // A mark that a reload would lose, and no result yet (an earlier run's is forgotten).
    await page.evaluate(() => {
        window.__e2eSamePage = true;
        document.querySelector('#test-result')?.removeAttribute('data-ok');
    });
    const calls = []; // what the page asked the server meanwhile, for a failure's message
    const onResponse = (r) => calls.push(`${r.request().method()} ${r.url()} → ${r.status()}`);
    page.on('response', onResponse);
    try {
        await page.click('button#test-connection');
        // The result, or the form gone (the page replaced or reloaded): whichever comes first.
        await page.waitForFunction(
            () => document.querySelector('#test-result[data-ok]') || !document.querySelector('#settings-form'),
            null,
            { timeout: 45_000 },
        );
    } finally {
        page.off('response', onResponse);
    }
    assert.equal(await page.evaluate(() => window.__e2eSamePage), true, 'Test connection must not reload the page');
    const body = (await page.locator('body').textContent()).trim().slice(0, 300);
    assert.equal(
        await page.locator('#settings-form').count(),
        1,
        `the form is gone after Test connection; requests: ${calls.join('; ')}; the page now shows: "${body}"`,
    );
    return page.evaluate(() => {
        const result = document.querySelector('#test-result');
        const text = (el) => el?.textContent.replace(/\s+/g, ' ').trim() ?? null;
        return {
            ok: result.getAttribute('data-ok'),
            steps: [...result.querySelectorAll('li.step')].map((li) => ({
                step: li.getAttribute('data-step'),
                ok: li.getAttribute('data-ok'),
                ms: text(li.querySelector('.ms')),
                detail: text(li.querySelector('.detail')),
            })),
            problems: [...result.querySelectorAll('.error')].map(text),
            hint: text(result.querySelector('.hint')),
            hintVisible: !!result.querySelector('.hint')?.checkVisibility(),
        };
    });
}

function describeSteps({ steps, problems }) {
    return [...problems.map((p) => `problem: ${p}`), ...steps.map((s) => `${s.step}=${s.ok} (${s.ms}) ${s.detail}`)].join('\n  ');
}

/** The path an <a> points to, however its href is written. */
async function hrefPath(locator) {
    const href = await locator.getAttribute('href');
    return href === null ? null : new URL(href, 'http://console.invalid/').pathname;
}

async function flashText(page, kind) {
    const flash = page.locator(`.flash.${kind}`);
    return (await flash.count()) ? (await flash.first().textContent()).trim() : null;
}

/** Creates a company through /companies/new, as the platform administrator. */
async function createCompany(page, company) {
    await page.click('a#nav-companies');
    await page.waitForURL((url) => url.pathname === '/companies');
    await page.click('a#new-company');
    await page.waitForURL((url) => url.pathname === '/companies/new');
    await page.fill('input[name=slug]', company.slug);
    await page.fill('input[name=name]', company.name);
    await page.fill('input[name=email]', company.email);
    await submit(page, 'button#create');
    const path = new URL(page.url()).pathname;
    assert.ok(
        path === `/companies/${company.slug}` || path.startsWith(`/companies/${company.slug}/`),
        `after creating ${company.slug} the browser is at ${path}, not on the company`,
    );
}

// ------------------------------------------------------------------ the scenario

describe('web console: issue #3 scenario', { timeout: 600_000 }, () => {
    before(async () => {
        fs.rmSync(FAILURES, { recursive: true, force: true }); // an earlier run's evidence
        peer = await startPeer({ auth: `${RELAY.username}:${RELAY.password}` });
        app = await startCarteiro({ adminPassword: ADMIN.password });
        browser = await launchBrowser();
    });

    after(async () => {
        for (const session of Object.values(sessions)) await session.context.close().catch(() => {});
        await browser?.close().catch(() => {});
        await app?.stop({ keepDir: failed });
        if (failed && app) console.log(`carteiro's data directory and log are kept in ${app.dir}`);
        await peer?.stop();
    });

    step('the login page refuses a wrong password with an error', async () => {
        sessions.platform = await newSession(browser, { base: app.base });
        const { page } = sessions.platform;
        assert.equal(await visit(page, '/login'), 200, 'GET /login');
        assert.match(await page.getAttribute('html', 'lang'), /^(en|pt-BR)$/, 'html[lang]');
        await screenshot(page, 'login');
        await page.fill('input[name=username]', ADMIN.username);
        await page.fill('input[name=password]', 'not-the-password');
        await submit(page, 'button#login');
        await page.waitForSelector('.flash.error');
        assert.ok(await page.locator('input[name=username]').count(), 'the login form is shown again');
    });

    step('the platform administrator logs in and lands on the global E-mail settings', async () => {
        const { page } = sessions.platform;
        await login(page, ADMIN.username, ADMIN.password);
        assert.equal(new URL(page.url()).pathname, '/settings/email');
        for (const selector of ['a#nav-global', 'a#nav-companies', 'a#nav-messages', 'a#nav-audit', 'button#logout']) {
            assert.equal(await page.locator(selector).count(), 1, `${selector} on the global page`);
        }
        assert.equal(await page.locator(form).count(), 1, 'form#settings-form');
        assert.equal(await page.locator('#enable-specific').count(), 0, 'no "enable specific" switch at the global level');
    });

    step('global level: Test connection against the SMTP server succeeds, with an auth step', async () => {
        const { page } = sessions.platform;
        await fillSettings(page, {
            'connection.host': '127.0.0.1',
            'connection.port': peer.port,
            'connection.security': 'none',
            'connection.auth_enabled': true,
            'connection.username': RELAY.username,
            'connection.password': RELAY.password,
            'connection.timeout_s': 30,
            // Test connection sends as the level's sender (MAIL FROM).
            'policy.default_sender_enabled': 'true',
            'policy.default_sender_name': PLATFORM_SENDER.name,
            'policy.default_sender_address': PLATFORM_SENDER.address,
        });
        const received = peer.messages.length;
        const result = await testConnection(page, 'probe@example.com');
        const steps = describeSteps(result);
        assert.equal(result.ok, 'true', `#test-result[data-ok] with the right password; steps:\n  ${steps}`);
        assert.ok(result.steps.every((s) => s.ok === 'true'), `every step ok:\n  ${steps}`);
        const names = result.steps.map((s) => s.step);
        for (const name of ['ehlo', 'auth']) assert.ok(names.includes(name), `a "${name}" step among ${names}`);
        for (const s of result.steps) {
            assert.match(s.ms ?? '', /\d/, `step ${s.step} shows its time in .ms`);
            assert.notEqual(s.detail, null, `step ${s.step} has a .detail`);
        }
        assert.equal(result.hintVisible, false, `no hint after a success (hint: ${result.hint})`);
        const probe = await peer.nextMessage(received, 10_000);
        assert.deepEqual(probe.rcpt_tos, ['probe@example.com'], 'the test e-mail reached the server');
        assert.equal(probe.auth_user, RELAY.username);
        await screenshot(page, 'global-email-test-ok');
    });

    step('global level: a wrong password in the form fails the test, with its steps and a hint', async () => {
        const { page } = sessions.platform;
        await fillSettings(page, { 'connection.password': 'wrong-password' });
        const result = await testConnection(page, 'probe@example.com');
        const steps = describeSteps(result);
        assert.equal(result.ok, 'false', `#test-result[data-ok] with a wrong password; steps:\n  ${steps}`);
        const auth = result.steps.find((s) => s.step === 'auth');
        assert.ok(auth, `an auth step among:\n  ${steps}`);
        assert.equal(auth.ok, 'false', `the auth step failed:\n  ${steps}`);
        assert.match(auth.detail ?? '', /535/, "the auth step's detail carries the server's 535 reply");
        assert.ok(result.hint && result.hintVisible, 'a visible .hint paragraph after a failure');
        await screenshot(page, 'global-email');
    });

    step('global level: Save stores the settings (the password never shown back)', async () => {
        const { page } = sessions.platform;
        await fillSettings(page, { 'connection.password': RELAY.password });
        await submit(page, 'button#save');
        assert.ok(await flashText(page, 'ok'), `.flash.ok after saving (error: ${await flashText(page, 'error')})`);
        await page.goto('/settings/email');
        const shown = await readSettings(page, [
            'connection.host',
            'connection.port',
            'connection.security',
            'connection.auth_enabled',
            'connection.username',
            'connection.password',
            'connection.timeout_s',
            'policy.default_sender_enabled',
            'policy.default_sender_address',
        ]);
        assert.deepEqual(shown, {
            'connection.host': '127.0.0.1',
            'connection.port': String(peer.port),
            'connection.security': 'none',
            'connection.auth_enabled': true,
            'connection.username': RELAY.username,
            'connection.password': '',
            'connection.timeout_s': '30',
            'policy.default_sender_enabled': 'true',
            'policy.default_sender_address': PLATFORM_SENDER.address,
        });
        assert.ok(!(await page.content()).includes(RELAY.password), 'the stored password is not in the page');
        const token = await app.token(ADMIN.username, ADMIN.password);
        const { body } = await app.api('GET', '/api/v1/settings/global', { token });
        assert.equal(body.connection?.host, '127.0.0.1', JSON.stringify(body));
        assert.equal(body.connection?.port, peer.port);
        assert.equal(body.connection?.password_set, true, 'the password is stored');
    });

    step('companies: the platform administrator creates two companies', async () => {
        const { page } = sessions.platform;
        await createCompany(page, ACME);
        for (const tab of ['general', 'email', 'users', 'effective', 'keys', 'admins']) {
            assert.equal(await page.locator(`a#tab-${tab}`).count(), 1, `a#tab-${tab} on the company's page`);
        }
        assert.equal(await hrefPath(page.locator('a#tab-general')), `/companies/${ACME.slug}`);
        assert.equal(await hrefPath(page.locator('a#tab-email')), `/companies/${ACME.slug}/email`);
        await createCompany(page, OTHER);
        await page.click('a#nav-companies');
        await page.waitForURL((url) => url.pathname === '/companies');
        for (const company of [ACME, OTHER]) {
            const link = page.locator('table#companies a', { hasText: company.name });
            assert.equal(await link.count(), 1, `a link "${company.name}" in table#companies`);
            assert.equal(await hrefPath(link), `/companies/${company.slug}/email`);
        }
        await screenshot(page, 'companies');
    });

    step('company administrators: the platform administrator creates one for ACME', async () => {
        const { page } = sessions.platform;
        await page.goto(`/companies/${ACME.slug}/email`);
        await page.click('a#tab-admins');
        await page.waitForURL((url) => url.pathname === `/companies/${ACME.slug}/admins`);
        await page.fill('input[name=username]', ACME_ADMIN.username);
        await page.fill('input[name=password]', ACME_ADMIN.password);
        await submit(page, 'button#create-admin');
        assert.ok(await flashText(page, 'ok'), `.flash.ok after creating the admin (error: ${await flashText(page, 'error')})`);
    });

    step('the company administrator logs in and lands on its E-mail tab', async () => {
        sessions.company = await newSession(browser, { base: app.base });
        const { page } = sessions.company;
        await login(page, ACME_ADMIN.username, ACME_ADMIN.password);
        assert.equal(new URL(page.url()).pathname, `/companies/${ACME.slug}/email`);
        assert.equal(await page.locator('a#nav-global').count(), 0, 'no a#nav-global for a company administrator');
        assert.equal(await page.locator('a#tab-admins').count(), 0, 'no a#tab-admins for a company administrator');
        for (const selector of ['a#nav-companies', 'a#nav-messages', 'a#nav-audit', 'button#logout', '#enable-specific']) {
            assert.equal(await page.locator(selector).count(), 1, selector);
        }
    });

    step('the company administrator gets 403 on the global level and 404 on another company', async () => {
        const { page } = sessions.company;
        for (const [path, status] of [['/settings/email', 403], [`/companies/${OTHER.slug}/email`, 404]]) {
            assert.equal(await visit(page, path), status, `GET ${path}`);
            assert.ok(!page.url().startsWith('chrome-error:'), `GET ${path}: a page of the console, not the browser's error page`);
            assert.match((await page.getAttribute('html', 'lang')) ?? '', /^(en|pt-BR)$/, `GET ${path}: html[lang]`);
        }
        assert.ok(!(await page.content()).includes(OTHER.name), "the other company's name is not shown");
    });

    step("company E-mail tab: the default sender is enabled with an address and saved", async () => {
        const { page } = sessions.company;
        await page.goto(`/companies/${ACME.slug}/email`);
        assert.equal(await page.isChecked('#enable-specific'), false, 'a new company has no specific sending');
        await fillSettings(page, {
            'policy.default_sender_enabled': 'true',
            'policy.default_sender_name': ACME_SENDER.name,
            'policy.default_sender_address': ACME_SENDER.address,
        });
        await submit(page, 'button#save');
        assert.ok(await flashText(page, 'ok'), `.flash.ok after saving (error: ${await flashText(page, 'error')})`);
        await page.goto(`/companies/${ACME.slug}/email`);
        assert.deepEqual(
            await readSettings(page, ['policy.default_sender_enabled', 'policy.default_sender_name', 'policy.default_sender_address']),
            {
                'policy.default_sender_enabled': 'true',
                'policy.default_sender_name': ACME_SENDER.name,
                'policy.default_sender_address': ACME_SENDER.address,
            },
        );
        await screenshot(page, 'company-email');
        const token = await app.token(ACME_ADMIN.username, ACME_ADMIN.password);
        const { body } = await app.api('GET', `/api/v1/companies/${ACME.slug}/effective-settings`, { token });
        assert.deepEqual(body.policy?.default_sender_address, { value: ACME_SENDER.address, source: 'company' });
        assert.equal(body.connection?.host?.source, 'global', 'the connection still comes from the global level');
    });

    step('an invalid timeout (5) is refused at the field, the typed values kept and nothing saved', async () => {
        const { page } = sessions.company;
        await page.goto(`/companies/${ACME.slug}/email`);
        await fillSettings(page, {
            'connection.enabled': true,
            'connection.host': '127.0.0.1',
            'connection.port': peer.port,
            'connection.timeout_s': 5,
            'policy.default_sender_name': 'Changed name',
        });
        // A browser-side rule (min="10") may stop the form first: then it must say why,
        // and the server's own check is proven by submitting without it.
        const browserSays = await page
            .locator(control('connection.timeout_s'))
            .evaluate((el) => (el.validity.valid ? null : el.validationMessage));
        if (browserSays !== null) {
            assert.ok(browserSays, 'the browser explains why 5 is refused');
            await page.evaluate(() => (document.querySelector('#settings-form').noValidate = true));
        }
        await submit(page, 'button#save');
        const error = page.locator('.field-error[data-field="connection.timeout_s"]');
        assert.equal(await error.count(), 1, '.field-error[data-field="connection.timeout_s"]');
        assert.match(await error.textContent(), /between 10 and 180/);
        assert.equal(await flashText(page, 'ok'), null, 'no .flash.ok');
        assert.deepEqual(
            await readSettings(page, ['connection.enabled', 'connection.host', 'connection.timeout_s', 'policy.default_sender_name']),
            {
                'connection.enabled': true,
                'connection.host': '127.0.0.1',
                'connection.timeout_s': '5',
                'policy.default_sender_name': 'Changed name',
            },
            'the typed values are kept',
        );
        const token = await app.token(ACME_ADMIN.username, ACME_ADMIN.password);
        const { body } = await app.api('GET', `/api/v1/companies/${ACME.slug}/settings`, { token });
        assert.notEqual(body.connection?.enabled, true, `nothing saved: ${JSON.stringify(body)}`);
        assert.equal(body.policy?.default_sender_name, ACME_SENDER.name, 'nothing saved');
    });

    step("the user level's page has the same form", async () => {
        const { page } = sessions.company;
        await page.click('a#tab-users');
        await page.waitForURL((url) => url.pathname.startsWith(`/companies/${ACME.slug}/users`));
        assert.equal(await visit(page, `/companies/${ACME.slug}/users/42`), 200, `GET /companies/${ACME.slug}/users/42`);
        for (const selector of [form, '#enable-specific', '[name="connection.host"]', '[name="policy.force_default_sender"]']) {
            assert.equal(await page.locator(selector).count(), 1, selector);
        }
        await page.goto(`/companies/${ACME.slug}`);
        await page.click('a#tab-effective');
        await page.waitForURL((url) => url.pathname.startsWith(`/companies/${ACME.slug}/`));
        assert.ok((await page.content()).includes(ACME_SENDER.address), 'the effective tab shows the default sender');
    });

    step('API keys: the company administrator creates one, shown once', async () => {
        const { page } = sessions.company;
        await page.click('a#tab-keys');
        await page.waitForURL((url) => url.pathname === `/companies/${ACME.slug}/api-keys`);
        await page.click('button#create-key');
        apiKey = (await page.waitForSelector('#new-key').then((el) => el.textContent())).trim();
        assert.match(apiKey, /^ck_\S+$/, '#new-key');
        await page.goto(`/companies/${ACME.slug}/api-keys`);
        assert.ok(!(await page.content()).includes(apiKey), 'the key is not shown again');
    });

    step('a message sent through the API is delivered and appears in Messages with its attempt', async () => {
        const { page } = sessions.company;
        const before = peer.messages.length;
        const { status, body } = await app.api('POST', '/api/v1/messages', {
            token: apiKey,
            body: { kind: 'system', to: [RECIPIENT], subject: 'Pedido 17 aprovado', text: 'O pedido 17 foi aprovado.' },
        });
        assert.equal(status, 202, JSON.stringify(body));
        messageId = body.id;
        delivered = await peer.nextMessage(before);
        assert.deepEqual(delivered.rcpt_tos, [RECIPIENT]);
        assert.equal(delivered.auth_user, RELAY.username, 'sent with the global level’s account');

        await page.click('a#nav-messages');
        await page.waitForURL((url) => url.pathname === '/messages');
        const link = page.locator(`table#messages tr.message a[href$="/companies/${ACME.slug}/messages/${messageId}"]`);
        await reloadUntil(page, async () => (await link.count()) > 0, `no row links to message ${messageId}`);
        await screenshot(page, 'messages');
        await Promise.all([page.waitForURL((url) => url.pathname.endsWith(`/messages/${messageId}`)), link.first().click()]);
        await reloadUntil(
            page,
            async () => /sent/i.test((await page.locator('#status').textContent()) ?? ''),
            `#status never said sent (${await page.locator('#status').textContent().catch(() => 'no #status')})`,
        );
        const attempts = page.locator('table#attempts tr.attempt');
        assert.equal(await attempts.count(), 1, 'one attempt');
        assert.equal((await attempts.first().locator('.code').textContent()).trim(), '250', 'attempt .code');
        assert.match(await attempts.first().locator('.reply').textContent(), /queued/, "attempt .reply: the server's words");
        assert.ok((await page.locator('#from').textContent()).includes(ACME_SENDER.address), '#from: the default sender');
        assert.ok((await page.locator('#envelope-from').textContent()).includes(delivered.mail_from), `#envelope-from is ${delivered.mail_from}`);
        assert.equal(await page.locator('button#cancel').count(), 0, 'no Cancel on a sent message');
        await screenshot(page, 'message-detail');
    }, 150_000);

    step("Messages' filters find the message (company, status, recipient, dates)", async () => {
        const { page } = sessions.platform;
        await page.click('a#nav-messages');
        await page.waitForURL((url) => url.pathname === '/messages');
        const rows = page.locator(`table#messages tr.message:has(a[href$="/messages/${messageId}"])`);
        assert.equal(await rows.count(), 1, 'the platform administrator sees the message');
        const day = (offset) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
        const dateValue = async (name, offset) => {
            const type = await page.getAttribute(`input[name=${name}]`, 'type');
            return type === 'datetime-local' ? `${day(offset)}T00:00` : day(offset);
        };
        const filter = async ({ company, status, recipient, after, before }) => {
            await page.selectOption('select[name=company]', company);
            await page.selectOption('select[name=status]', status);
            await page.fill('input[name=recipient]', recipient);
            await page.fill('input[name=after]', after);
            await page.fill('input[name=before]', before);
            await submit(page, 'button#filter');
        };
        await filter({ company: ACME.slug, status: 'sent', recipient: RECIPIENT, after: await dateValue('after', -1), before: await dateValue('before', 1) });
        assert.equal(await rows.count(), 1, 'found by company acme, status sent, its recipient and a date range around today');
        for (const [what, values] of [
            ['company other', { company: OTHER.slug, status: 'sent', recipient: '' }],
            ['status failed', { company: ACME.slug, status: 'failed', recipient: '' }],
            ['another recipient', { company: ACME.slug, status: 'sent', recipient: 'nobody@example.com' }],
        ]) {
            await filter({ ...values, after: '', before: '' });
            assert.equal(await rows.count(), 0, `not found with ${what}`);
        }
        await filter({ company: ACME.slug, status: 'sent', recipient: '', after: await dateValue('after', 1), before: '' });
        assert.equal(await rows.count(), 0, 'not found after tomorrow');
    });

    step('the audit log lists the changes', async () => {
        const { page } = sessions.platform;
        await page.click('a#nav-audit');
        await page.waitForURL((url) => url.pathname === '/audit');
        const entries = page.locator('table#audit tr.entry');
        assert.ok((await entries.count()) >= 4, `at least 4 entries (global settings, 2 companies, ACME settings), got ${await entries.count()}`);
        const text = await page.locator('table#audit').textContent();
        assert.ok(text.includes(ACME.slug), 'an entry names acme');
        assert.ok(!text.includes(RELAY.password), 'no secret in the audit log');
        await screenshot(page, 'audit');
    });

    step('the language switch shows the SPEC §8 labels in pt-BR, and back in English', async () => {
        const { page } = sessions.company;
        const path = `/companies/${ACME.slug}/email`;
        await page.goto(path);
        const labels = {
            'connection.host': ['Server host', 'Servidor (host)'],
            'connection.port': ['Server port', 'Porta do servidor'],
            'connection.security': ['Security', 'Segurança'],
            'connection.auth_enabled': ['Authentication', 'Autenticação'],
            'connection.username': ['User', 'Usuário'],
            'connection.password': ['Password', 'Senha'],
            'connection.timeout_s': ['SMTP timeout (seconds)', 'Tempo limite SMTP (segundos)'],
            'connection.enabled': ['Enable specific e-mail sending?', 'Deseja habilitar o envio de e-mail específico?'],
            'connection.proxy.enabled': ['Use proxy', 'Utilizar proxy'],
            'policy.default_sender_enabled': ['Default sender', 'Remetente padrão'],
            'policy.default_sender_name': ["Sender's name", 'Nome do remetente'],
            'policy.default_sender_address': ["Sender's e-mail", 'E-mail do remetente'],
            'policy.force_default_sender': ['All notifications from the default sender', 'Todas as notificações pelo remetente padrão'],
            'policy.bundle_enabled': ['Bundle e-mails to send', 'Agrupar e-mails no envio'],
        };
        const buttons = { 'button#save': ['Save', 'Salvar'], 'button#test-connection': ['Test connection', 'Testar conexão'] };
        const check = async (lang, i) => {
            assert.equal(await page.getAttribute('html', 'lang'), lang, 'html[lang]');
            const wrong = [];
            for (const [name, texts] of Object.entries(labels)) {
                const label = await labelOf(page, name);
                if (!label?.includes(texts[i])) wrong.push(`${name}: label "${label}" lacks "${texts[i]}"`);
            }
            for (const [selector, texts] of Object.entries(buttons)) {
                const text = (await page.locator(selector).textContent())?.trim();
                if (text !== texts[i]) wrong.push(`${selector}: "${text}", not "${texts[i]}"`);
            }
            assert.deepEqual(wrong, [], `${lang} labels`);
        };
        await page.click('a#lang-en');
        await page.waitForURL((url) => url.pathname === path);
        await check('en', 0);
        await page.click('a#lang-pt');
        await page.waitForSelector('html[lang="pt-BR"]');
        assert.equal(new URL(page.url()).pathname, path, 'the switch comes back to the same page');
        await check('pt-BR', 1);
        await screenshot(page, 'company-email-pt-BR');
        await page.click('a#nav-messages');
        await page.waitForURL((url) => url.pathname === '/messages');
        assert.equal(await page.getAttribute('html', 'lang'), 'pt-BR', 'the language is kept on the next page');
        await page.click('a#lang-en');
        await page.waitForSelector('html[lang="en"]');
        assert.equal(new URL(page.url()).pathname, '/messages');
    });

    step('at phone width (390 px) the E-mail tab fits the screen', async () => {
        sessions.phone = await newSession(browser, { base: app.base, viewport: { width: 390, height: 844 } });
        const { page } = sessions.phone;
        await login(page, ACME_ADMIN.username, ACME_ADMIN.password);
        assert.equal(new URL(page.url()).pathname, `/companies/${ACME.slug}/email`);
        const width = await page.evaluate(() => document.documentElement.scrollWidth);
        await screenshot(page, 'phone-company-email');
        assert.ok(width <= 390, `the page is ${width} px wide: it scrolls sideways on a phone`);
    });

    step('logging out ends the session', async () => {
        const { page } = sessions.company;
        await submit(page, 'button#logout');
        await page.goto('/');
        assert.equal(new URL(page.url()).pathname, '/login', 'after logging out, / leads to /login');
        const status = await visit(page, `/companies/${ACME.slug}/email`);
        assert.ok(
            new URL(page.url()).pathname === '/login' || [401, 403].includes(status),
            `after logging out the E-mail tab is not served (${status} at ${page.url()})`,
        );
    });

    step('no page raised a JavaScript error', async () => {
        const errors = Object.values(sessions).flatMap((s) => s.errors);
        // Pages answered with a 4xx on purpose (a refused login or form, 403, 404) log this.
        const real = errors.filter((e) => !/Failed to load resource: the server responded with a status of 4\d\d/.test(e));
        assert.deepEqual(real, []);
    });
});
