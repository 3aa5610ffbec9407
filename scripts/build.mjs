// `npm run build` (and `prepare`, so `npm install` and `npm pack` run it): the library as ESM
// JavaScript with declarations and source maps in dist/ (tsc), and the server `npm start` runs
// as one bundle in build/ (esbuild): only the modules it uses, the embedded database's client
// and the docs page split off and loaded when first needed. `npm pack` builds only the library,
// which is all the package holds (and a server running from build/ keeps its files meanwhile).
import * as esbuild from "esbuild"
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { join } from "node:path"

const root = join(import.meta.dirname, "..")
const packing = process.env.npm_command === "pack"
rmSync(join(root, "dist"), { recursive: true, force: true })

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" })

// tsc rewrites `./x.ts` to `./x.js` in JavaScript but not in declarations (microsoft/TypeScript#61037);
// TypeScript reads either, other tools expect `.js`.
for (const file of readdirSync(join(root, "dist"), { recursive: true, encoding: "utf8" })) {
  if (!file.endsWith(".d.ts")) continue
  const path = join(root, "dist", file)
  const text = readFileSync(path, "utf8")
  const rewritten = text.replace(/((?:from|import\()\s*["'])(\.\.?\/[^"']*)\.ts(["'])/g, "$1$2.js$3")
  if (rewritten !== text) writeFileSync(path, rewritten)
}

if (!packing) {
  rmSync(join(root, "build"), { recursive: true, force: true })
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: { server: "src/main.ts" },
    outdir: "build",
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    // PGlite finds its WebAssembly files next to its own module; pg-native is an optional add-on of pg.
    external: ["@electric-sql/pglite", "pg-native"],
    // Identifiers stay readable in stack traces; white space and comments go (the source is kept in memory).
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: "none",
    sourcemap: false,
    // Bundled CommonJS packages call `require` for Node's own modules.
    banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
    logLevel: "warning"
  })
}
