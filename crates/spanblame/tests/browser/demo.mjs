// A person's first minute with spanblame, in headless Chromium against `serve --demo`: the home
// page, the incident, the regression, its suspect, an exemplar trace with a span's change
// context and critical path, the typical traces before and after side by side, and the trace
// search. Every page visited must parse as XHTML. Asserts on content, never on pixels.
//
// Usage: node demo.mjs <base url> <screenshot dir>   (prints "ok" and exits 0 when all holds)

import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

// playwright-core lives where `cargo xtask setup` installed it, not beside this script.
const modules = process.env.SPANBLAME_TEST_BROWSER;
if (!modules) {
  console.error("SPANBLAME_TEST_BROWSER is not set: the directory `cargo xtask setup` installed playwright-core into");
  process.exit(2);
}
const { chromium } = createRequire(join(modules, "package.json"))("playwright-core");

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error("usage: node demo.mjs <base url> <screenshot dir>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.SPANBLAME_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const failures = [];
const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
const page = await context.newPage();
try {
  page.on("pageerror", (error) => failures.push("script error: " + error.message));
  let expecting404 = false;
  page.on("console", (message) => {
    const expected = expecting404 && /status of 404/.test(message.text());
    if (message.type() === "error" && !expected) failures.push("console: " + message.text());
  });

  // Each page: 200, well-formed (as XHTML), no CSP violation.
  const visited = new Set();
  async function wellFormed() {
    const url = page.url();
    if (visited.has(url)) return;
    visited.add(url);
    const problem = await page.evaluate(async () => {
      const response = await fetch(location.href);
      if (response.status !== 200) return "status " + response.status;
      const text = await response.text();
      const parsed = new DOMParser().parseFromString(text, "application/xhtml+xml");
      const error = parsed.querySelector("parsererror");
      return error ? error.textContent : null;
    });
    check(problem === null, `${url} is not well-formed: ${problem}`);
  }

  // 1. Home: one incident for the one bad deploy (six regressions), with its suspect.
  await page.goto(base + "/");
  await wellFormed();
  const first = page.locator("li.finding.incident").first();
  await first.waitFor();
  check(await page.locator("li.finding.incident").count() === 1, "one open incident, not a card per regression");
  const firstText = await first.innerText();
  check(/and 5 more regressions/.test(firstText), "the incident counts its regressions: " + firstText);
  check(/checkout/.test(firstText) && /\/cart\/checkout/.test(firstText), "the first regression is checkout's entry point: " + firstText);
  check(/Apply first-order promotions only to first orders/.test(firstText), "the suspect is named on the home page: " + firstText);
  check(/Margaret Hamilton/.test(firstText) && /PR #5/.test(firstText), "author and review: " + firstText);
  await page.screenshot({ path: join(shots, "home.png"), fullPage: true });

  // 2. Follow the incident (with the keyboard: focus the link, press Enter): one status, the
  // six regressions as one table, the suspect once; then its entry point's finding.
  await first.locator("a.title").focus();
  await Promise.all([page.waitForURL(/\/incidents\/\d+$/), page.keyboard.press("Enter")]);
  const incidentId = page.url().split("/").pop();
  await wellFormed();
  check(/incident/.test(await page.locator("h1").innerText()), "the incident's heading");
  check(await page.locator("section[aria-labelledby=regressions] tbody tr").count() === 6, "six regressions in one table");
  const incidentText = await page.locator("main").innerText();
  check(/Apply first-order promotions only to first orders/.test(incidentText), "the suspect on the incident: " + incidentText);
  check(await page.locator("button[data-action=acknowledge]").count() === 1 && await page.locator("button[data-action=reopen]").count() === 0, "an open incident offers acknowledge and resolve, not reopen");
  await page.screenshot({ path: join(shots, "incident.png"), fullPage: true });
  await Promise.all([page.waitForURL(/\/findings\/\d+$/), page.locator("section[aria-labelledby=regressions] a", { hasText: /^\d+$/ }).first().click()]);
  await wellFormed();
  check(/regressed/.test(await page.locator("h1").innerText()), "the finding's heading says regressed");
  const numbers = await page.locator("#numbers").locator("..").innerText();
  check(/Spans compared/.test(numbers) && /confidence/.test(numbers), "numbers with sample counts and confidence");
  check((await page.locator("figure svg.chart polyline").count()) === 2, "before and after distributions on one chart");
  // The chart's legend counts the very spans the numbers compare.
  const compared = numbers.match(/Spans compared\s+(\d+)\s+(\d+)/);
  const legend = await page.locator("figure svg.chart").textContent();
  check(compared && legend.includes(compared[1] + " spans") && legend.includes(compared[2] + " spans"), "the legend and the numbers count the same spans: " + numbers + " / " + legend);
  const suspect = page.locator("#suspect-1");
  const suspectText = await suspect.innerText();
  check(/Apply first-order promotions only to first orders/.test(suspectText), "suspect 1: " + suspectText);
  check(/apply_promotions/.test(suspectText), "the reasons name the code path: " + suspectText);
  check(await suspect.locator("pre.diff .add").count() > 0, "the suspect's diff is shown");
  check(/order_history/.test(await suspect.locator("pre.diff").innerText()), "the diff hunk with the new query");
  const rollback = await page.locator("#rollback-text").innerText();
  check(/git revert --no-edit [0-9a-f]{40}/.test(rollback) && /1\.1\.0/.test(rollback), "rollback draft: " + rollback);
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  await page.locator("button[data-copy]").click();
  await page.locator("#rollback-text-copied").filter({ hasText: /Copied|Selected/ }).waitFor();
  await page.screenshot({ path: join(shots, "finding.png"), fullPage: true });
  const findingUrl = page.url();

  // 3. The suspect's commit: where it shipped and what moved after it.
  await Promise.all([page.waitForURL(/\/commits\/[0-9a-f]+$/), suspect.locator("h3 a").click()]);
  await wellFormed();
  const commitText = await page.locator("main").innerText();
  check(/Where it shipped/.test(commitText) && /1\.2\.0/.test(commitText), "the commit shipped in 1.2.0: " + commitText);
  check(/regressed/.test(commitText), "what moved after it");

  // 4. An exemplar trace, and a span's change context: what it was built from, and its blame.
  await page.goto(findingUrl);
  await Promise.all([page.waitForURL(/\/traces\/[0-9a-f]{32}$/), page.locator("ul.exemplars a").last().click()]);
  await wellFormed();
  const promotions = page.locator("li.span", { hasText: "apply_promotions" }).first();
  await promotions.locator("summary").first().click();
  const context_ = await promotions.locator("dl.change").innerText();
  check(/1\.2\.0/.test(context_), "the span's version: " + context_);
  check(/Built from[\s\S]*Count the items in the checkout response/.test(context_), "the version's head commit: " + context_);
  // Blame: the function the span runs was last changed by the culprit, not the head commit.
  check(/Blame[\s\S]*Apply first-order promotions only to first orders[\s\S]*Margaret Hamilton/.test(context_), "the span's blame: " + context_);
  check(/checkout\/promotions\.py lines \d+-\d+ \(the function\)/.test(context_), "the blamed lines: " + context_);
  // Line by line: the culprit's lines are the body, not the `def` line.
  await promotions.locator("details.blame-lines summary").click();
  const blamedLines = await promotions.locator("table.blame tr.blamed").allInnerTexts();
  check(blamedLines.length >= 5 && !blamedLines.some((l) => /def apply_promotions/.test(l)), "the culprit's lines: " + blamedLines.join("\n"));
  check(/PR #\d+/.test(context_) && /payments/.test(context_), "the review and the owner: " + context_);
  check(/checkout\/promotions\.py/.test(await promotions.innerText()), "the code location");
  check(await page.locator("li.span").count() >= 10, "the whole trace across four services");
  // The critical path runs through the slow function.
  check(await page.locator("svg.bar rect.critical").count() > 0, "the critical path is drawn");
  check(/Critical path/.test(await promotions.locator("dl.facts").first().innerText()), "apply_promotions is on the critical path");
  await page.screenshot({ path: join(shots, "trace.png"), fullPage: true });

  // 4b. The typical traces before and after, side by side: the slow function and its new
  // queries stand out.
  await page.goto(findingUrl);
  await Promise.all([page.waitForURL(/\/compare\?a=[0-9a-f]{32}&b=[0-9a-f]{32}$/), page.locator("a.compare").click()]);
  await wellFormed();
  const promotionsRow = await page.locator("table.compare tr.slower", { hasText: "apply_promotions" }).innerText();
  check(/\+\d/.test(promotionsRow), "apply_promotions is slower in B: " + promotionsRow);
  check(await page.locator("table.compare tr", { hasText: "order_history" }).filter({ hasText: "only in B" }).count() > 0, "the new queries are only in B");
  check(/checkout 1\.1\.0 → 1\.2\.0/.test(await page.locator("dl.facts").innerText()), "the versions compared");
  await page.screenshot({ path: join(shots, "compare.png"), fullPage: true });

  // 5. Search: slow checkouts of 1.2.0.
  await page.goto(base + "/traces");
  await wellFormed();
  await page.locator("select[name=service]").selectOption("checkout");
  await page.locator("input[name=operation]").fill("/cart/checkout");
  await page.locator("input[name=version]").fill("1.2.0");
  await page.locator("input[name=min_duration_ms]").fill("30");
  await Promise.all([page.waitForURL(/min_duration_ms=30/), page.locator("form.search button[type=submit]").click()]);
  await wellFormed();
  const rows = page.locator("table.results tbody tr");
  check(await rows.count() > 0, "the search finds slow checkouts");
  const cells = await rows.first().innerText();
  check(/storefront (POST )?\/checkout/.test(cells), "a result is a trace, named by its root: " + cells);
  check(/checkout \/cart\/checkout/.test(cells), "with its matching span: " + cells);
  // The scatter plot: a dot per trace found, each opening its trace.
  check(await page.locator("figure svg.chart circle.dot").count() === await rows.count(), "a dot per trace found");
  await Promise.all([page.waitForURL(/\/traces\/[0-9a-f]{32}$/), page.locator("figure svg.chart a").first().click()]);
  await wellFormed();
  await page.goBack();

  // 6. The service page, its chart and a deploy marker that opens the deploy.
  await page.goto(base + "/services/checkout");
  await wellFormed();
  check(await page.locator("svg.chart a.marker").count() >= 2, "deploy markers on the chart");
  await page.locator("svg.chart a.marker").last().focus();
  await Promise.all([page.waitForURL(/\/deploys\/\d+$/), page.keyboard.press("Enter")]);
  await wellFormed();
  check(/Deploy of checkout/.test(await page.locator("h1").innerText()), "the marker opens its deploy");
  // The bad deploy (the incident's id is its deploy's) links its incident.
  await page.goto(base + "/deploys/" + incidentId);
  await wellFormed();
  const deployText = await page.locator("main").innerText();
  check(new RegExp("incident " + incidentId).test(deployText), "the bad deploy links its incident: " + deployText);

  // 7. The lists, and an unknown id.
  for (const path of ["/findings?status=open", "/deploys", "/traces?last=15m"]) {
    await page.goto(base + path);
    await wellFormed();
  }
  // 8. DORA for the demo's team: the bad deploy counts as a change failure.
  await page.goto(base + "/dora?team=payments&window=1d");
  await wellFormed();
  check(/Delivery performance/.test(await page.locator("h1").innerText()), "the DORA page");
  const cards = await page.locator(".card h2").allInnerTexts();
  check(cards.length === 4, "four DORA metrics: " + cards.join(", "));
  const failureRate = await page.locator("#m-failure-rate").locator("xpath=..").innerText();
  check(/had a regression attributed/.test(failureRate) && !/^0 of/m.test(failureRate), "a change failure is counted: " + failureRate);

  expecting404 = true;
  const missing = await page.goto(base + "/findings/999999");
  check(missing.status() === 404 && /404 Not Found/.test(await page.locator("h1").innerText()), "an unknown finding is a 404 page");

  // Narrow screens keep the content readable (no sideways scrolling of the page itself).
  expecting404 = false;
  await page.setViewportSize({ width: 760, height: 1000 });
  await page.goto(findingUrl);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, "the finding page fits a narrow window (overflow " + overflow + "px)");
} catch (error) {
  failures.push(error.stack || String(error));
  // Where it stopped, for the person reading the failure.
  const text = await page.locator("body").innerText().catch(() => "");
  failures.push("at " + page.url() + ":\n" + text.slice(0, 3000));
} finally {
  await browser.close();
}
if (failures.length > 0) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("ok");
