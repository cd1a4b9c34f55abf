// The newcomer's path (issue 17's "done when"), in the browser: an admin made by `grapevine user add` at the command
// line opens the link it printed, sets a password, signs in, adds an analyst on the people page (which shows the
// analyst's one-time link), sees both actions in the audit trail, downloads it as CSV and signs out. Every page is
// checked (policy, axe, screenshot).
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
  const link = (await page.locator('[role="status"] code').textContent())?.trim() ?? '';
  expect(
    link.startsWith(`${baseUrl}/set-password/`) && link.length > `${baseUrl}/set-password/`.length + 16,
    `after adding ${inputs.analyst_email} the people page shows "${link}", not their one-time link to set a password`,
  );
  await check('people-added');

  await navigation.getByRole('link', { name: 'Audit trail', exact: true }).click();
  await page.waitForURL(`${baseUrl}/audit**`);
  // The trail's rows, each as { Actor, Action, Target, … } by its column's heading: an email may be an actor in one
  // column and a target in another, so a row is matched column by column.
  const trail = await page.locator('table').first().evaluate((table) => {
    const headings = [...table.tHead.rows[0].cells].map((cell) => cell.textContent.trim());
    return [...table.tBodies[0].rows].map((row) =>
      Object.fromEntries([...row.cells].map((cell, at) => [headings[at], cell.textContent.trim()])));
  });
  const admin = `person:${inputs.admin_email}`;
  const expectEntry = (action, target, actorIs, actorSaid) =>
    expect(
      trail.some((entry) => entry.Action === action && entry.Target === `person:${target}` && actorIs(entry.Actor)),
      `the audit page has no ${action} of ${target} by ${actorSaid}; it shows:\n${JSON.stringify(trail, null, 1)}`,
    );
  expectEntry('person.add', inputs.admin_email, (actor) => actor.startsWith('operator:'), 'the operator');
  expectEntry('person.set_password', inputs.admin_email, (actor) => actor === admin, admin);
  expectEntry('session.sign_in', inputs.admin_email, (actor) => actor === admin, admin);
  expectEntry('person.add', inputs.analyst_email, (actor) => actor === admin, admin);
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
