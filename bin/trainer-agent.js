#!/usr/bin/env node
// Runs the TypeScript sources directly (Node >= 22.18 strips types); dist/trainer-agent is the bundled single file.
import "../src/cli/trainer-agent.ts";
