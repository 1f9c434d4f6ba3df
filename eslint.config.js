import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";

export default tseslint.config(
  { ignores: ["node_modules/", "dist/", "test-artifacts/", "backend-stub/public/vendor/"] },
  js.configs.recommended,
  // Node globals everywhere but the dashboard's browser script, which declares its own.
  { ignores: ["backend-stub/public/**"], languageOptions: { globals: globals.node } },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-restricted-properties": [
        "error",
        { object: "process", property: "env", message: "Read the environment only in loadConfig (src/config)." },
      ],
    },
  },
  // The backend stub is a component the agent embeds: it sees the project only as a user of the package would.
  {
    files: ["backend-stub/**"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex: "(^|/)src/(?!(index|contract/index|errors/index|config/public|http/index)\\.ts$)",
              message:
                "backend-stub imports the project only through its public modules (package.json exports: src/index.ts, contract, errors, config/public.ts, http).",
            },
          ],
        },
      ],
    },
  },
  {
    files: ["src/cli/**", "bin/**", "backend-stub/src/main.ts", "bench/**", "scripts/**", "test/**"],
    rules: { "no-restricted-properties": "off" },
  },
);
