// The stream editor's ONVIF finder in headless Chromium: sign in, add an RTSP stream, type
// the camera's user and password once, search the given interface, read the camera's
// streams and use one; the stream is saved with that URL and those credentials.
//
// Environment: BASE_URL, PASSWORD (the admin's), IFACE, CAMERA_USER, CAMERA_PASSWORD.
// Prints one JSON line: {"url", "name"} as the editor filled them.
import { chromium } from "playwright-core";

const { BASE_URL: base, PASSWORD, IFACE, CAMERA_USER, CAMERA_PASSWORD } = process.env;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  await page.goto(base);
  await page.fill("input[name=username]", "admin");
  await page.fill("input[name=password]", PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  await page.click("a[href='#/streams']");
  await page.click("[data-testid=add-stream]");
  await page.selectOption("select[name=kind]", "rtsp");
  await page.fill("input[name=rtsp-user]", CAMERA_USER);
  await page.fill("input[name=rtsp-password]", CAMERA_PASSWORD);
  await page.click("[data-testid=onvif-open]");
  await page.selectOption("select[name=onvif-interface]", IFACE);
  await page.click("[data-testid=onvif-search]");
  await page.getByText("Stage Left").waitFor({ timeout: 15000 });
  await page.getByRole("button", { name: "Read streams" }).click();
  await page.locator("[data-testid=onvif-profiles]").waitFor({ timeout: 15000 });
  await page.locator("[data-testid=onvif-profiles] li").filter({ hasText: "subStream" }).getByRole("button", { name: "Use" }).click();
  const url = await page.inputValue("input[name=url]");
  const name = await page.inputValue("input[name=name]");
  await page.click("form button[type=submit]");
  await page.locator("form.editor").waitFor({ state: "detached" });
  console.log(JSON.stringify({ url, name }));
} finally {
  await browser.close();
}
