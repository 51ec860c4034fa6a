// Writes src/spec.gen.ts from openapi.json: the ladder limits and the default ladder the
// server states, so the editor checks and offers exactly what the server accepts.
import { readFileSync, writeFileSync } from "node:fs";

const doc = JSON.parse(readFileSync(new URL("../openapi.json", import.meta.url), "utf8"));
const schemas = doc.components.schemas;
const rendition = schemas.RenditionSpec.properties;
const ladder = schemas.StreamSpec.properties.ladder;
const range = (p) => ({ min: p.minimum, max: p.maximum });
const limits = {
  width: range(rendition.width),
  height: range(rendition.height),
  fps: range(rendition.fps),
  bitrate_kbps: range(rendition.bitrate_kbps),
  gop_frames: range(rendition.gop_frames),
  renditions: { min: ladder.minItems, max: ladder.maxItems },
  name: rendition.name.pattern,
};
for (const [k, v] of Object.entries(limits)) {
  if (v === undefined || (typeof v === "object" && Object.values(v).some((x) => x === undefined))) {
    throw new Error(`openapi.json states no limit for ${k}`);
  }
}
writeFileSync(
  new URL("../src/spec.gen.ts", import.meta.url),
  `// Generated from openapi.json by scripts/spec-limits.mjs (npm run types); do not edit.
import type { RenditionSpec } from "./api.gen";

export const LIMITS = ${JSON.stringify(limits, null, 2)} as const;

export const DEFAULT_LADDER: RenditionSpec[] = ${JSON.stringify(ladder.default, null, 2)};
`,
);
