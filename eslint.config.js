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
  {
    files: ["src/cli/**", "bin/**", "backend-stub/src/main.ts", "bench/**", "scripts/**", "test/**"],
    rules: { "no-restricted-properties": "off" },
  },
);
