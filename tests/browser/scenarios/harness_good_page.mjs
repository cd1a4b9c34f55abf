// The harness on a page with no fault: axe-core runs although the page's policy forbids every script, the page's own
// inline script stays blocked, Tab reaches the skip link first, and following it takes the next Tab into <main>.

import { serveFixture, STRICT_POLICY } from '../fixtures/serve.mjs';

export default async function ({ page, baseUrl, check, focused, expect }) {
  const url = await serveFixture(page, baseUrl, 'good.html', { 'content-security-policy': STRICT_POLICY });
  await page.goto(url);
  await check('good-page');
  const title = await page.title();
  expect(title === 'Sign in – Harness fixture', `the page's inline script ran under script-src 'none' (title: ${title})`);

  await page.keyboard.press('Tab');
  const first = await focused();
  expect(first.text === 'Skip to main content', `Tab first reached ${JSON.stringify(first)}, not the skip link`);
  await page.keyboard.press('Enter');
  await page.keyboard.press('Tab');
  const afterSkip = await focused();
  expect(afterSkip.inMain && afterSkip.name === 'email', `after the skip link, Tab reached ${JSON.stringify(afterSkip)}`);
}
