// The newcomer's path (issue 17's "done when"), in the browser: an admin made by the command line opens the printed
// link, sets a password, signs in, adds an analyst on the people page, sees both actions in the audit trail,
// downloads it as CSV and signs out. Every page is checked (policy, axe, screenshot).
//
// inputs: { set_password_link, admin_email, password, analyst_email }

export default async function ({ page, baseUrl, inputs, check, download, expect }) {
  await page.goto(inputs.set_password_link);
  await check('set-password');
  await page.getByLabel('New password', { exact: true }).fill(inputs.password);
  await page.getByLabel('Confirm new password').fill(inputs.password);
  await page.getByRole('button', { name: 'Set password' }).click();
  await page.waitForLoadState('load');
  await check('password-set');

  if (!page.url().startsWith(`${baseUrl}/sign-in`)) {
    await page.goto(`${baseUrl}/sign-in`);
  }
  await check('sign-in');
  await page.getByLabel('Email address', { exact: true }).fill(inputs.admin_email);
  await page.getByLabel('Password', { exact: true }).fill(inputs.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: `You are signed in as ${inputs.admin_email}` }).waitFor();
  await check('signed-in');

  const navigation = page.getByRole('navigation', { name: 'Main' });
  await navigation.getByRole('link', { name: 'People', exact: true }).click();
  await page.waitForURL(`${baseUrl}/people**`);
  await check('people');
  await page.getByLabel('Email address', { exact: true }).fill(inputs.analyst_email);
  await page.getByLabel('Role', { exact: true }).selectOption('analyst');
  await page.getByRole('button', { name: 'Add person' }).click();
  await page.getByRole('cell', { name: inputs.analyst_email }).waitFor();
  await check('people-added');

  await navigation.getByRole('link', { name: 'Audit trail', exact: true }).click();
  await page.waitForURL(`${baseUrl}/audit**`);
  // Rows of the trail, not the filter's hint (which names actions as examples).
  const rows = page.getByRole('row');
  const row = (action, target) =>
    rows.filter({ has: page.getByRole('cell', { name: action, exact: true }) }).filter({ hasText: target }).first();
  await row('person.set_password', inputs.admin_email).waitFor();
  await row('session.sign_in', inputs.admin_email).waitFor();
  await row('person.add', inputs.analyst_email).waitFor();
  await check('audit');

  const csv = await download(page.getByRole('link', { name: /csv/i }));
  expect(csv.name.endsWith('.csv'), `the audit download is named ${csv.name}, not *.csv`);
  expect(
    csv.text.includes('person.add') && csv.text.includes(inputs.analyst_email) && csv.text.includes('session.sign_in'),
    `the audit CSV lacks the admin's actions:\n${csv.text.slice(0, 2000)}`,
  );

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForLoadState('load');
  await check('signed-out');
  await page.goto(`${baseUrl}/people`);
  expect(page.url().startsWith(`${baseUrl}/sign-in`), `after signing out, /people showed ${page.url()}, not the sign-in page`);
}
