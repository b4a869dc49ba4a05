#!/usr/bin/env bash
# The package as a new user gets it: `npm pack`, then `npm install specdec-<version>.tgz` in an empty
# folder whose PATH holds node and npm and nothing else (no compiler, no cmake, no make), then
# require('specdec'), import 'specdec' and the `specdec` CLI there, on the prebuilt linux-x64 binary
# the tarball carries and the model it embeds (assets/stories260K.gguf).
#
#   scripts/pack-check.sh                 the full path: `prebuildify --napi --strip` (node-gyp and
#                                         binding.gyp; compiles ggml with portable flags: 4-9 min on
#                                         2 cores) in a staging copy of the package, then pack
#   scripts/pack-check.sh --binary FILE   the staging copy gets FILE (e.g. build/Release/specdec.node,
#                                         already built) as prebuilds/linux-x64/specdec.node; what the
#                                         jest test (test/pack.test.ts) runs, in about a minute
#
# The staging copy holds exactly the files `npm pack` would take from this checkout (dist/ must be
# built: `npm run build:ts`); the checkout's own build/ and prebuilds/ are never touched. npm installs
# the tarball's dependencies with --prefer-offline (from npm's cache when `npm install` ran here).
# With SPECDEC_SHARED set, the greedy tokens are also checked against the reference file of
# node-llama-cpp's output. Prints "pack-check: ok" at the end; exits non-zero on the first failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
binary=""
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: scripts/pack-check.sh [--binary FILE] [--keep]" >&2; exit 2 ;;
  esac
done
plat="$(node -p 'process.platform + "-" + process.arch')"

work="$(mktemp -d "${TMPDIR:-/tmp}/specdec-pack-check.XXXXXX")"
cleanup() { if [ "$keep" = 1 ]; then echo "pack-check: kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
stage="$work/stage" app="$work/app" bin="$work/bin"
mkdir -p "$stage" "$app" "$bin"

step() { echo "pack-check: $*"; }
fail() { echo "pack-check: FAILED: $*" >&2; exit 1; }

cd "$root"
[ -f dist/index.js ] && [ -f dist/index.mjs ] && [ -f dist/cli/index.js ] || { step "building the TypeScript (dist/ is missing)"; npm run build:ts >/dev/null; }

# 1. the staging copy: the files npm pack takes from this checkout
step "staging the package's files in $stage"
npm pack --dry-run --json --ignore-scripts 2>/dev/null | node -e '
  const files = JSON.parse(require("fs").readFileSync(0, "utf8"))[0].files.map((f) => f.path);
  process.stdout.write(files.filter((f) => !f.startsWith("prebuilds/")).join("\n") + "\n");' > "$work/files.txt"
grep -q '^tools/check-backend.cpp$' "$work/files.txt" || fail "tools/ is not in the package (CMakeLists.txt's specdec-check needs it)"
grep -q '^assets/stories260K.gguf$' "$work/files.txt" || fail "assets/stories260K.gguf is not in the package"
tar -cf - -T "$work/files.txt" | tar -xf - -C "$stage"

# 2. the prebuilt binary
mkdir -p "$stage/prebuilds/$plat"
if [ -n "$binary" ]; then
  [ -f "$binary" ] || fail "$binary does not exist (build it: npm run build)"
  step "prebuilt binary: $binary"
  cp "$binary" "$stage/prebuilds/$plat/specdec.node"
else
  step "prebuildify in the staging copy (node-gyp, portable ggml; slow)"
  ln -s "$root/node_modules" "$stage/node_modules"
  (cd "$stage" && npx prebuildify --napi --strip) || fail "prebuildify failed"
  rm "$stage/node_modules"
  rm -rf "$stage/build"
  ls "$stage/prebuilds/$plat/"*.node >/dev/null 2>&1 || fail "prebuildify wrote no binary to prebuilds/$plat"
fi

# 3. the tarball (the staging copy's dist/ is already built: no prepare script)
step "npm pack"
tgz="$(cd "$stage" && npm pack --ignore-scripts --pack-destination "$work" 2>/dev/null | tail -1)"
tgz="$work/$tgz"
[ -f "$tgz" ] || fail "npm pack wrote no tarball"
tar -tzf "$tgz" > "$work/tarball.txt"
grep -q "^package/prebuilds/$plat/.*\.node$" "$work/tarball.txt" || fail "the tarball carries no prebuilt binary for $plat"
step "tarball $(basename "$tgz"): $(du -h "$tgz" | cut -f1)"

# 4. a PATH with node, npm and sh (npm runs scripts with it) only
for t in node npm npx sh; do ln -s "$(readlink -f "$(command -v $t)")" "$bin/$t"; done
for t in cc c++ gcc g++ clang cmake make ninja; do
  if PATH="$bin" command -v "$t" >/dev/null 2>&1; then fail "$t is on the restricted PATH"; fi
done

# 5. install it in an empty folder
step "npm install $(basename "$tgz") in an empty folder, PATH=$bin (no compiler)"
cd "$app"
echo '{ "name": "specdec-pack-check-app", "version": "1.0.0", "private": true }' > package.json
PATH="$bin" npm install "$tgz" --prefer-offline --no-audit --no-fund --loglevel=error > "$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "npm install of the tarball failed"; }
pkg="$app/node_modules/specdec"
[ -d "$pkg/build" ] && fail "the install built from source ($pkg/build exists): the prebuilt binary was not used"
ls "$pkg/prebuilds/$plat/"*.node >/dev/null || fail "no prebuilt binary in the installed package"

# 6. require, import, the CLI; the embedded model; the same greedy tokens from each
prompt="Once upon a time"
n=16
step "require('specdec')"
cjs="$(PATH="$bin" node -e '
  const { loadModel, backends } = require("specdec");
  const path = require("path");
  const model = path.join(path.dirname(require.resolve("specdec/package.json")), "assets", "stories260K.gguf");
  (async () => {
    const m = await loadModel(model);
    const s = await m.createSession();
    const r = await s.generate(process.argv[1], { maxTokens: Number(process.argv[2]) }).result();
    await m.dispose();
    console.log(JSON.stringify({ tokens: r.tokens, backend: m.info.backend, devices: backends().devices.length }));
  })().catch((e) => { console.error(e); process.exit(1); });' "$prompt" "$n")" || fail "require('specdec') failed"
echo "  $cjs"
step "import 'specdec'"
esm="$(PATH="$bin" node --input-type=module -e '
  import { loadModel } from "specdec";
  import { createRequire } from "node:module";
  import path from "node:path";
  const require = createRequire(path.join(process.cwd(), "x.js"));
  const model = path.join(path.dirname(require.resolve("specdec/package.json")), "assets", "stories260K.gguf");
  const m = await loadModel(model);
  const s = await m.createSession();
  const r = await s.generate(process.argv[1], { maxTokens: Number(process.argv[2]) }).result();
  await m.dispose();
  console.log(JSON.stringify({ tokens: r.tokens }));' "$prompt" "$n")" || fail "import 'specdec' failed"
echo "  $esm"
step "npx specdec generate --prompt \"$prompt\" (no --model)"
PATH="$bin" npx --no-install specdec generate --prompt "$prompt" --max-tokens "$n" --json > "$work/cli.out" 2> "$work/cli.err" || { cat "$work/cli.err" >&2; fail "the specdec CLI failed"; }
grep -q "embedded model" "$work/cli.err" || fail "the CLI did not say on stderr that it used the embedded model"
echo "  stderr: $(head -c 300 "$work/cli.err")"
PATH="$bin" npx --no-install specdec --version > "$work/version.out" || fail "specdec --version failed"

node -e '
  const [cjs, esm, cliFile, versionFile, pkgFile, n, shared] = process.argv.slice(1);
  const fs = require("fs");
  const a = JSON.parse(cjs).tokens, b = JSON.parse(esm).tokens, c = JSON.parse(fs.readFileSync(cliFile, "utf8")).tokens;
  const same = (x, y) => JSON.stringify(x) === JSON.stringify(y);
  if (a.length !== Number(n)) throw new Error(`require: ${a.length} tokens, wanted ${n}`);
  if (!same(a, b) || !same(a, c)) throw new Error(`require, import and the CLI disagree: ${a} / ${b} / ${c}`);
  const version = fs.readFileSync(versionFile, "utf8").trim();
  if (version !== JSON.parse(fs.readFileSync(pkgFile, "utf8")).version) throw new Error(`--version printed ${version}`);
  if (shared) {
    const ref = JSON.parse(fs.readFileSync(shared + "/models/reference/stories260K-greedy.json", "utf8")).find((r) => r.prompt === "Once upon a time");
    if (!same(a, ref.generated_tokens.slice(0, a.length))) throw new Error(`not the reference greedy tokens: ${a} vs ${ref.generated_tokens.slice(0, a.length)}`);
    console.log("pack-check: the greedy tokens equal node-llama-cpp'"'"'s reference");
  }
  console.log(`pack-check: require, import and the CLI give the same ${a.length} greedy tokens; --version ${version}`);
' "$cjs" "$esm" "$work/cli.out" "$work/version.out" "$pkg/package.json" "$n" "${SPECDEC_SHARED:-}" || fail "the outputs disagree"
step "ok"
