// The analyst's workbench, page by page: sign in, the priorities table for a month (and its CSV), an area (its trend
// chart, the same numbers in a table, its priorities and latest insights), the insights searched and filtered, a
// filter with a mistake, one insight (its map and history), a triage saved after another analyst's (told "someone
// else changed this first", then saved), and the exports page with a filter. Every page is checked (policy, axe,
// screenshot), and the filtered insights downloaded as CSV.
//
// inputs: { analyst_email, password, from, until, area_code, search, insight_text }

export default async function ({ page, context, baseUrl, inputs, check, download, expect }) {
  await page.goto(`${baseUrl}/sign-in`);
  await page.getByLabel('Email address', { exact: true }).fill(inputs.analyst_email);
  await page.getByLabel('Password', { exact: true }).fill(inputs.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Priorities', exact: true }).waitFor();
  await check('priorities-default-period');

  // The period chosen in the form.
  await page.getByLabel('First day').fill(inputs.from);
  await page.getByLabel('Last day').fill(inputs.until);
  await page.getByRole('button', { name: 'Show priorities' }).click();
  await page.waitForURL(`${baseUrl}/?from=${inputs.from}&until=${inputs.until}`);
  const table = page.getByRole('table');
  await table.waitFor();
  await check('priorities');
  const csv = await download(page.getByRole('link', { name: /Download this table as CSV/ }));
  expect(csv.name.endsWith('.csv'), `the priorities download is named ${csv.name}, not *.csv`);
  expect(csv.text.includes(inputs.area_code), `the priorities CSV lacks ${inputs.area_code}:\n${csv.text}`);

  // The busiest area: its chart, the table of the same numbers, its priorities, its latest insights.
  await table.getByRole('rowheader').first().getByRole('link').click();
  await page.waitForURL(`${baseUrl}/areas/${inputs.area_code}**`);
  const chart = page.getByRole('img', { name: /per month by category/ });
  await chart.waitFor();
  expect((await page.getByRole('table').count()) >= 3, 'the area page has its trend, priorities and insights tables');
  await check('area');

  await page.getByRole('link', { name: /^All insights in / }).click();
  await page.waitForURL(`${baseUrl}/insights?area=${inputs.area_code}`);
  await check('insights-of-the-area');

  await page.getByLabel('Words in what they said').fill(inputs.search);
  await page.getByRole('button', { name: 'Show insights' }).click();
  await page.getByRole('link', { name: inputs.insight_text }).waitFor();
  await check('insights-searched');

  // A mistake in the filter is said at the top and beside the field.
  await page.goto(`${baseUrl}/insights?from=2026-11-30&until=2026-11-01`);
  await page.getByRole('alert').waitFor();
  await check('insights-filter-wrong');
  await page.getByRole('alert').getByRole('link').first().click();
  expect(
    await page.evaluate(() => document.activeElement?.id === 'until'),
    'the error summary link moves focus to the last day field',
  );

  // One insight, opened by two analysts' tabs; the other saves first.
  await page.goto(`${baseUrl}/insights?area=${inputs.area_code}`);
  await page.getByRole('link', { name: inputs.insight_text }).click();
  await page.waitForURL(`${baseUrl}/insights/*`);
  await page.getByRole('img', { name: /Where the insight is/ }).waitFor();
  await check('insight');
  const other = await context.newPage();
  await other.goto(page.url());
  await other.getByRole('radio', { name: 'Actioned' }).check();
  await other.getByRole('button', { name: 'Save triage' }).click();
  await other.getByText('The triage is saved.').waitFor();
  await other.close();

  await page.getByRole('radio', { name: 'Reviewed' }).check();
  await page.getByLabel('Add a note (optional)').fill('Passed to the neighbourhood team');
  await page.getByLabel('Add a tag (optional)').fill('chip shop');
  await page.getByRole('button', { name: 'Save triage' }).click();
  await page.getByRole('heading', { name: 'Someone else changed this first' }).waitFor();
  await check('insight-changed-first');
  expect(
    (await page.getByLabel('Add a note (optional)').inputValue()) === 'Passed to the neighbourhood team',
    'the note typed is still in the form after the conflict',
  );
  await page.getByRole('button', { name: 'Save triage' }).click();
  await page.getByText('The triage is saved.').waitFor();
  await check('insight-saved');
  expect(
    (await page.getByText('Passed to the neighbourhood team').count()) >= 1 && (await page.getByText('chip-shop').count()) >= 1,
    'the saved note and tag are shown',
  );

  // Exports: a filter, then a link per format.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Exports', exact: true }).click();
  await page.waitForURL(`${baseUrl}/exports`);
  await check('exports');
  await page.getByLabel('Category').selectOption('drugs');
  await page.getByRole('button', { name: 'Choose these insights' }).click();
  await page.waitForURL(`${baseUrl}/exports?**`);
  for (const format of ['CSV', 'Excel workbook (XLSX)', 'GeoJSON', 'GeoPackage']) {
    const href = await page.getByRole('link', { name: format, exact: true }).getAttribute('href');
    expect(href?.includes('category=drugs'), `the ${format} link keeps the filter: ${href}`);
  }
  await check('exports-filtered');
  const exported = await download(page.getByRole('link', { name: 'CSV', exact: true }));
  expect(exported.name.endsWith('.csv'), `the insights download is named ${exported.name}, not *.csv`);
  expect(
    exported.text.startsWith('\ufeff') && exported.text.includes(inputs.insight_text),
    `the CSV from the exports page lacks a byte order mark or "${inputs.insight_text}":\n${exported.text.slice(0, 2000)}`,
  );
}
