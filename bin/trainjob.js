#!/usr/bin/env node
import "../src/cli/trainjob.ts";
