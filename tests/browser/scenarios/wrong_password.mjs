// A wrong password: the sign-in page comes back with an error summary whose links lead to the fields, the fields keep
// their labels, and nobody is signed in.
//
// inputs: { admin_email }

export default async function ({ page, baseUrl, inputs, check, focused, expect }) {
  await page.goto(`${baseUrl}/sign-in`);
  await page.getByLabel('Email address', { exact: true }).fill(inputs.admin_email);
  await page.getByLabel('Password', { exact: true }).fill('not the password, at all');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState('load');
  expect(page.url().startsWith(`${baseUrl}/sign-in`), `a wrong password led to ${page.url()}`);

  const summary = page.locator('[role="alert"], .error-summary').first();
  await summary.waitFor();
  await check('sign-in-refused');
  const links = await summary.locator('a[href^="#"]').evaluateAll((anchors) => anchors.map((a) => a.getAttribute('href')));
  expect(links.length > 0, 'the error summary links to no field');
  for (const href of links) {
    const field = page.locator(href);
    expect((await field.count()) === 1, `the error summary links to ${href}, which is not on the page`);
  }
  await summary.locator('a[href^="#"]').first().click();
  const now = await focused();
  expect(`#${now.id}` === links[0], `following the summary's link focused ${JSON.stringify(now)}, not ${links[0]}`);
  expect((await page.getByRole('button', { name: 'Sign out' }).count()) === 0, 'a wrong password signed someone in');
}
