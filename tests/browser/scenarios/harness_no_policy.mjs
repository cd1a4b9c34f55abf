// The harness on a faultless page served without a Content-Security-Policy: the header check must fail this scenario
// (tests/it/browser.rs asserts that it does).

import { serveFixture } from '../fixtures/serve.mjs';

export default async function ({ page, baseUrl, check }) {
  const url = await serveFixture(page, baseUrl, 'good.html', { 'content-security-policy': "default-src 'self'" });
  await page.goto(url);
  await check('no-policy');
}
