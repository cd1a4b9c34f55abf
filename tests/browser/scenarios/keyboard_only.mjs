// Keyboard only: the first Tab reaches the skip link; following it, the next Tab lands inside the main content (past
// the header); and the sign-in form can be filled and sent with Tab, typing and Enter.
//
// inputs: { admin_email, password }

export default async function ({ page, baseUrl, inputs, check, focused, expect }) {
  await page.goto(`${baseUrl}/sign-in`);
  await check('sign-in');
  await page.keyboard.press('Tab');
  const first = await focused();
  expect(first.tag === 'a' && first.text === 'Skip to main content', `the first Tab reached ${JSON.stringify(first)}`);
  await page.keyboard.press('Enter');
  await page.keyboard.press('Tab');
  const afterSkip = await focused();
  expect(afterSkip.inMain, `after the skip link, Tab reached ${JSON.stringify(afterSkip)}, outside <main>`);

  // Tab on until the email field has focus (a bounded number of presses: a form's first field is near its start).
  for (let presses = 0; presses < 10 && (await focused()).name !== 'email'; presses += 1) {
    await page.keyboard.press('Tab');
  }
  expect((await focused()).name === 'email', `Tab never reached the email field (at ${JSON.stringify(await focused())})`);
  await page.keyboard.type(inputs.admin_email);
  await page.keyboard.press('Tab');
  const next = await focused();
  expect(next.name === 'password', `Tab from the email field reached ${JSON.stringify(next)}, not the password`);
  await page.keyboard.type(inputs.password);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: `You are signed in as ${inputs.admin_email}` }).waitFor();
  await check('signed-in-by-keyboard');
}
