// The AI plane in headless Chromium, on a stream whose detector sees one face: the dashboard
// draws its box over the preview, the Detections page shows it with its picture and lists
// the shipped model, and a zone drawn on the stream's picture in the editor is saved.
//
// Environment: BASE_URL, PASSWORD (the admin's), STREAM (the stream's id).
// Prints one JSON line: {"box": [x, y, w, h] of the overlay box as shares of the overlay,
// "detections", "snapshot_width", "models", "no_detector_notice"}.
import { chromium } from "playwright-core";

const { BASE_URL: base, PASSWORD, STREAM } = process.env;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(base);
  await page.fill("input[name=username]", "admin");
  await page.fill("input[name=password]", PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();

  // The box over the preview, where the face is.
  const card = page.locator(`[data-testid=stream-${STREAM}]`);
  const box = card.locator("[data-testid=overlay-box]").first();
  await box.waitFor({ timeout: 20000 });
  const o = await card.locator("[data-testid=overlay]").boundingBox();
  const b = await box.boundingBox();
  const share = [(b.x - o.x) / o.width, (b.y - o.y) / o.height, b.width / o.width, b.height / o.height];

  // Detections: the face with its picture; the models.
  await page.click("a[href='#/detections']");
  const detection = page.locator("[data-testid=detection]").first();
  await detection.waitFor({ timeout: 15000 });
  const img = detection.locator("img");
  await img.waitFor();
  await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle());
  const snapshotWidth = await img.evaluate((el) => el.naturalWidth);
  const detections = await page.locator("[data-testid=detection]").count();
  const models = await page.locator("[data-testid=models] tbody tr").allInnerTexts();
  const notice = await page.locator("[data-testid=no-detector]").count();

  // A zone drawn on the picture in the editor, saved.
  await page.click("a[href='#/streams']");
  await page.locator(`[data-testid=row-${STREAM}]`).getByRole("button", { name: "Edit" }).click();
  const canvas = page.locator("[data-testid=zone-canvas]");
  await canvas.waitFor();
  await page.waitForFunction(() => {
    const i = document.querySelector("[data-testid=zone-canvas] img");
    return i && i.complete && i.naturalWidth > 0;
  });
  await canvas.scrollIntoViewIfNeeded();
  const c = await canvas.boundingBox();
  for (const [x, y] of [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]) {
    await canvas.click({ position: { x: x * c.width, y: y * c.height } });
  }
  await page.fill("[data-testid=zones] input", "stage");
  await page.getByRole("button", { name: /Close zone/ }).click();
  await page.locator("[data-testid=zone-0]").waitFor();
  await page.click("form.editor button[type=submit]");
  await page.locator("form.editor").waitFor({ state: "detached" });
  console.log(JSON.stringify({ box: share, detections, snapshot_width: snapshotWidth, models, no_detector_notice: notice }));
} finally {
  await browser.close();
}
