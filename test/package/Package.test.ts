import { expect, layer } from "@effect/vitest"
import { Context, Duration, Effect, Layer } from "effect"
import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

/**
 * The package as a user gets it (issue 15): `npm pack` in the repository, then a fresh project that
 * installs the tarball with `effect` and the peers, compiles the README's embedding program with
 * `tsc` and runs it with plain `node`.
 */
const repo = join(import.meta.dirname, "..", "..")

/** The environment without what an enclosing `npm test` set for its own package. */
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_|^INIT_CWD$/i.test(key)))

const run = (command: string, args: ReadonlyArray<string>, cwd: string, extraEnv: Record<string, string> = {}) =>
  Effect.async<string, Error>((resume) => {
    const child = execFile(command, args, { cwd, env: { ...env, ...extraEnv }, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      resume(error ? Effect.fail(new Error(`${command} ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`)) : Effect.succeed(stdout)))
    return Effect.sync(() => child.kill())
  })

/** Runs `effect`, logging how long it took. */
const timed = <A, E, R>(label: string, effect: Effect.Effect<A, E, R>) =>
  Effect.timed(effect).pipe(
    Effect.tap(([duration]) => Effect.logInfo(`${label}: ${Math.round(Duration.toMillis(duration))} ms`)),
    Effect.map(([, a]) => a)
  )

/** The repository's own version of a package: the one its tests ran against, so npm's cache has it. */
const installed = (name: string) => `${name}@${JSON.parse(readFileSync(join(repo, "node_modules", name, "package.json"), "utf8")).version}`

/** The first TypeScript block of the README's "Embedding the runner": the program a reader pastes. */
const readmeProgram = () => {
  const readme = readFileSync(join(repo, "README.md"), "utf8")
  const section = readme.slice(readme.indexOf("## Embedding the runner"))
  const block = /```ts\n([\s\S]*?)```/.exec(section)
  if (block === null) throw new Error("README.md has no TypeScript block under \"Embedding the runner\"")
  return block[1]!
}

class Packed extends Context.Tag("Packed")<Packed, { readonly dir: string; readonly tarball: string }>() {}

/** `npm pack` (its `prepare` builds the library) into a temporary folder, removed afterwards. */
const PackedLive = Layer.scoped(
  Packed,
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "turn-runner-package-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    const [packed] = JSON.parse(yield* timed("npm pack", run("npm", ["pack", "--json", "--pack-destination", dir], repo)))
    return { dir, tarball: join(dir, packed.filename) }
  })
)

layer(PackedLive, { timeout: 180_000, excludeTestServices: true })("the npm package", (it) => {
  it.effect("holds the library (JavaScript, declarations, source maps) and the README; no tests, bench, CI or scripts", () =>
    Effect.gen(function*() {
      const [listing] = JSON.parse(yield* run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], repo))
      const paths: Array<string> = listing.files.map((file: { readonly path: string }) => file.path)
      expect(paths.filter((path) => !/^(dist|web)\/|^README\.md$|^package\.json$/.test(path))).toEqual([])
      expect(paths.filter((path) => /(^|\/)(test|bench|\.ci|scripts|src)\/|\.test\./.test(path))).toEqual([])
      expect(paths).toEqual(expect.arrayContaining([
        "dist/index.js", "dist/index.d.ts", "dist/index.js.map",
        "dist/http/index.js", "dist/http/index.d.ts",
        "dist/client.js", "dist/client.d.ts"
      ]))
    }))

  it.effect("a fresh project installs it with effect and the peers, compiles the README's program with tsc and runs it with node", () =>
    Effect.gen(function*() {
      const { dir, tarball } = yield* Packed
      const project = join(dir, "embedder")
      mkdirSync(project)
      writeFileSync(join(project, "package.json"), JSON.stringify({ name: "embedder", private: true, type: "module" }))
      writeFileSync(join(project, "tsconfig.json"), JSON.stringify({
        compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, types: ["node"], outDir: "out" },
        files: ["main.ts"]
      }))
      writeFileSync(join(project, "main.ts"), readmeProgram())
      const peers = ["effect", "@effect/ai", "@effect/experimental", "@effect/opentelemetry", "@effect/platform", "@effect/platform-node", "@effect/sql", "@effect/sql-pg"]
      // @types/ws: @effect/platform-node's declarations name `ws`; with it every declaration is checked (no skipLibCheck).
      yield* timed("npm install", run("npm", ["install", tarball, ...peers.map(installed), installed("@types/node"), "@types/ws@8", "--prefer-offline", "--no-audit", "--no-fund"], project))
      yield* timed("tsc", run(process.execPath, [join(repo, "node_modules", "typescript", "bin", "tsc"), "-p", project], project))
      const output = yield* timed("node out/main.js", run(process.execPath, [join(project, "out", "main.js")], project, { DATA_DIR: "memory", LOG_LEVEL: "Warn" }))

      const lines = output.trim().split("\n")
      expect(lines.filter((line) => line.startsWith("delta ")).length).toBeGreaterThan(0)
      expect(lines.filter((line) => line.startsWith("pipeline.run."))).toEqual(["pipeline.run.started", "pipeline.run.done"])
      const summary = /^run (\w+), pre recorded (.*)$/.exec(lines.at(-1) ?? "")
      expect(summary?.[1]).toBe("done")
      expect(JSON.parse(summary?.[2] ?? "null")).toEqual({ notes: 1, question: "What do otters do at night?" })
    }), 150_000)
})
