// The harness on a page with an unlabelled field: the axe check must fail this scenario (tests/it/browser.rs asserts
// that it does, and that the output names the rule).

import { serveFixture, STRICT_POLICY } from '../fixtures/serve.mjs';

export default async function ({ page, baseUrl, check }) {
  const url = await serveFixture(page, baseUrl, 'unlabelled.html', { 'content-security-policy': STRICT_POLICY });
  await page.goto(url);
  await check('unlabelled-field');
}
