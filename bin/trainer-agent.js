#!/usr/bin/env node
// From a checkout Node runs the TypeScript sources directly (Node >= 22.18 strips types). Node refuses to strip
// types under node_modules, so an installed package runs the JavaScript that `npm run build:lib` made (prepack).
// dist/trainer-agent is the other form: one file with no Node.js needed.
import { requireNode } from "./node-version.js";

const installed = import.meta.url.includes("/node_modules/");
requireNode("trainer-agent", installed);
await import(installed ? "../dist/lib/cli/trainer-agent.js" : "../src/cli/trainer-agent.ts");
