// Runs one browser scenario against a running Grapevine server, in Debian's chromium driven by playwright-core.
//
//   node run.mjs <scenario>            (a file scenarios/<scenario>.mjs whose default export is an async function)
//
// Environment (set by tests/it/browser.rs):
//   GRAPEVINE_BASE_URL       the server, e.g. http://127.0.0.1:41234
//   GRAPEVINE_SCREENSHOTS    the directory every checked page's full-page screenshot goes into
//   GRAPEVINE_INPUTS         JSON the scenario needs (emails, links, passwords); `{}` when absent
//   GRAPEVINE_CHROMIUM       the browser (default /usr/bin/chromium; never downloaded)
//
// Every checked page gets three checks: its response carries our Content-Security-Policy, axe-core finds zero
// violations, and a screenshot is saved. One JSON line is printed per step; the first failure prints a JSON line with
// `"failed"` (and a human-readable account on stderr), saves a screenshot of the page as it was, and exits 1.

import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const axeSource = createRequire(import.meta.url)('axe-core').source;

/// The directives every page must send: no script runs, and no other site may frame the page.
const REQUIRED_CSP_DIRECTIVES = ["script-src 'none'", "frame-ancestors 'none'"];

class ScenarioFailure extends Error {}

function fail(message) {
  throw new ScenarioFailure(message);
}

function emit(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`run.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const scenarioName = process.argv[2];
if (!scenarioName || !/^[a-z0-9_-]+$/.test(scenarioName)) {
  console.error('usage: node run.mjs <scenario>   (a file under scenarios/, without .mjs)');
  process.exit(2);
}
const baseUrl = required('GRAPEVINE_BASE_URL').replace(/\/$/, '');
const screenshots = required('GRAPEVINE_SCREENSHOTS');
const inputs = JSON.parse(process.env.GRAPEVINE_INPUTS || '{}');
const executablePath = process.env.GRAPEVINE_CHROMIUM || '/usr/bin/chromium';
mkdirSync(screenshots, { recursive: true });

const scenario = (await import(pathToFileURL(join(here, 'scenarios', `${scenarioName}.mjs`)).href)).default;

// A fresh profile for every run: no cookie, cache or stored state leaks from one scenario into the next.
const profile = mkdtempSync(join(tmpdir(), 'grapevine-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  acceptDownloads: true,
  viewport: { width: 1280, height: 800 },
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(10_000);

// The headers of the response each top-level document came from, by URL, so a check can read the policy the page it
// is looking at was served with (after a form's redirect too).
const documentHeaders = new Map();
page.on('response', async (response) => {
  if (response.request().isNavigationRequest() && response.frame() === page.mainFrame()) {
    documentHeaders.set(response.url(), await response.allHeaders());
  }
});

let stepNumber = 0;

function screenshotPath(name) {
  const safe = name.replace(/[^a-z0-9_-]+/gi, '-');
  return join(screenshots, `${String(stepNumber).padStart(2, '0')}-${safe}.png`);
}

/// Runs axe-core in the page. `page.evaluate` goes through the DevTools protocol, which the page's CSP does not
/// govern, so axe runs under `script-src 'none'` without the test weakening the policy it checks.
async function axeViolations() {
  const loaded = await page.evaluate(() => typeof window.axe === 'object');
  if (!loaded) {
    await page.evaluate(axeSource);
  }
  const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return results.violations;
}

function checkPolicy(url) {
  const headers = documentHeaders.get(url);
  if (!headers) {
    fail(`no response was seen for the page at ${url}, so its security headers cannot be checked`);
  }
  const policy = headers['content-security-policy'] ?? '';
  const directives = policy.split(';').map((directive) => directive.trim().replace(/\s+/g, ' '));
  const missing = REQUIRED_CSP_DIRECTIVES.filter((wanted) => !directives.includes(wanted));
  if (missing.length > 0) {
    fail(`the page at ${url} lacks ${missing.join(' and ')} in its Content-Security-Policy (it sent: ${policy || 'none'})`);
  }
  return policy;
}

/// The three checks of a page, as one step: security headers, zero axe violations, a screenshot.
async function check(name) {
  stepNumber += 1;
  await page.waitForLoadState('load');
  const url = page.url();
  const screenshot = screenshotPath(name);
  await page.screenshot({ path: screenshot, fullPage: true });
  checkPolicy(url);
  const violations = await axeViolations();
  if (violations.length > 0) {
    const described = violations
      .map((violation) => {
        const targets = violation.nodes.map((node) => `      at ${node.target.join(' ')}`).join('\n');
        return `  ${violation.id} (${violation.impact}): ${violation.help}\n    ${violation.helpUrl}\n${targets}`;
      })
      .join('\n');
    emit({
      step: stepNumber,
      name,
      url,
      screenshot,
      axe: violations.map((violation) => ({
        id: violation.id,
        impact: violation.impact,
        help: violation.help,
        targets: violation.nodes.map((node) => node.target),
      })),
    });
    fail(`axe-core found ${violations.length} accessibility violation(s) on ${url}:\n${described}`);
  }
  emit({ step: stepNumber, name, url, axe_violations: 0, screenshot });
}

/// Clicks what `locator` names and returns the file the browser downloads: its suggested name and its text.
async function download(locator) {
  const [file] = await Promise.all([page.waitForEvent('download'), locator.click()]);
  const path = await file.path();
  return { name: file.suggestedFilename(), text: readFileSync(path, 'utf8') };
}

/// The focused element, as a scenario checking keyboard use needs it.
async function focused() {
  return page.evaluate(() => {
    const element = document.activeElement;
    return {
      tag: element?.tagName.toLowerCase() ?? null,
      text: (element?.textContent ?? '').trim(),
      id: element?.id ?? '',
      name: element?.getAttribute('name') ?? null,
      href: element?.getAttribute('href') ?? null,
      inMain: !!document.querySelector('main')?.contains(element),
    };
  });
}

/// Fails the scenario with `message` unless `condition` holds.
function expect(condition, message) {
  if (!condition) {
    fail(message);
  }
}

let exitCode = 0;
try {
  await scenario({ page, context, baseUrl, inputs, check, download, focused, expect, fail });
  emit({ scenario: scenarioName, passed: true, steps: stepNumber });
} catch (error) {
  exitCode = 1;
  stepNumber += 1;
  const screenshot = screenshotPath('FAILED');
  await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  // Playwright colours its call logs; the test's output is read as plain text.
  const raw = error instanceof ScenarioFailure ? error.message : `${error.stack ?? error}`;
  const message = raw.replace(/\u001b\[[0-9;]*m/g, '');
  emit({ scenario: scenarioName, failed: message, url: page.url(), screenshot });
  console.error(`scenario ${scenarioName} failed at ${page.url()}:\n${message}\nscreenshot: ${screenshot}`);
} finally {
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(exitCode);
