import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", "dist/", "test-artifacts/", "backend-stub/public/vendor/"] },
  js.configs.recommended,
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
