// Plain JavaScript that Node.js 14.8 and later can load: it runs before any TypeScript import, which an older
// Node.js would reject with a stack trace about the ".ts" extension instead of saying what is wrong.
// From a checkout Node runs the sources and needs type stripping on by default (22.18); the built package
// (dist/lib) runs on any Node.js 22.
export function requireNode(program, installed) {
  const [major, minor] = process.versions.node.split(".").map(Number);
  const [needMajor, needMinor] = installed ? [22, 0] : [22, 18];
  if (major > needMajor || (major === needMajor && minor >= needMinor)) return;
  const hint = installed ? "" : `; from the repository, npx ${program} runs the Node.js 24 that npm ci installed`;
  process.stderr.write(
    `${program}: NODE_UNSUPPORTED: Node.js ${needMajor}.${needMinor} or newer is needed, this is ${process.version}${hint}\n`,
  );
  process.exit(78);
}
