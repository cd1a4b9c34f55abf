// Signing in through the organisation's identity provider (a real `oidc-provider` under Node, tests/oidc): a person
// the admin added signs in there and lands on Grapevine's home page signed in, with the method shown, then signs out;
// a person nobody added signs in at the provider just as well but is refused by Grapevine with an error summary, and
// nobody is signed in. Grapevine's pages are checked (policy, axe, screenshot); the provider's are not ours, so they
// are only filled in.
//
// inputs: { issuer, added_email, stranger_email, provider_password }

/// From Grapevine's sign-in page, through the provider's form as `email`, until the browser is back at Grapevine.
async function signInThroughProvider({ page, baseUrl, inputs, expect }, email) {
  await page.goto(`${baseUrl}/sign-in`);
  await page.getByRole('button', { name: 'Sign in with your organisation' }).click();
  await page.waitForURL(`${inputs.issuer}/interaction/**`);
  expect(
    (await page.title()) === 'Sign in to the test identity provider',
    `the organisation's button led to ${page.url()} ("${await page.title()}"), not the provider's sign-in form`,
  );
  await page.getByLabel('Email address', { exact: true }).fill(email);
  await page.getByLabel('Password', { exact: true }).fill(inputs.provider_password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(`${baseUrl}/**`);
  await page.waitForLoadState('load');
}

async function nobodySignedIn({ page, baseUrl, expect }, after) {
  expect((await page.getByRole('button', { name: 'Sign out' }).count()) === 0, `${after}, a Sign out button is shown`);
  await page.goto(`${baseUrl}/`);
  expect(page.url().startsWith(`${baseUrl}/sign-in`), `${after}, the home page showed ${page.url()}, not the sign-in page`);
}

export default async function (harness) {
  const { page, context, baseUrl, inputs, check, expect } = harness;

  await page.goto(`${baseUrl}/sign-in`);
  await check('sign-in');

  await signInThroughProvider(harness, inputs.added_email);
  await page.getByRole('heading', { name: `You are signed in as ${inputs.added_email}` }).waitFor();
  expect(page.url() === `${baseUrl}/`, `signing in through the provider landed on ${page.url()}, not the home page`);
  const method = page.locator('.summary-list__row', { has: page.locator('dt', { hasText: 'Signed in with' }) }).locator('dd');
  const methodText = (await method.textContent())?.trim();
  expect(methodText === "Your organisation's account", `the home page says the sign-in was with "${methodText}"`);
  await check('signed-in-through-organisation');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForLoadState('load');
  await check('signed-out');
  await nobodySignedIn(harness, 'after signing out');

  // Another person, in a browser that has never signed in anywhere (the provider would otherwise remember Ada).
  await context.clearCookies();
  await signInThroughProvider(harness, inputs.stranger_email);
  const summary = page.locator('.error-summary[role="alert"]');
  await summary.waitFor();
  const said = (await summary.textContent()).replace(/\s+/g, ' ').trim();
  expect(
    said.includes('not set up in Grapevine') && said.includes('Ask an administrator to add you'),
    `the refusal's error summary says "${said}"`,
  );
  await check('stranger-refused');
  await nobodySignedIn(harness, 'after a person nobody added signed in at the provider');
}
