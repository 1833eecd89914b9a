/**
 * What importing the package root costs: fresh Node processes, one import each, timed inside the child;
 * variants interleaved in rotating order; medians over many repetitions.
 */
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import * as rolldown from "rolldown"
import { buildOptions } from "../rolldown.config.ts"
import * as L from "./lib.ts"
import type { Section } from "./report.ts"

const root = fileURLToPath(new URL("../", import.meta.url))
const src = join(root, "src")
/** Scratch space for the built and compiled copies: under a node_modules folder, which git and eslint ignore. */
const build = fileURLToPath(new URL("./node_modules/.effect-mcp-pool-bench/", import.meta.url))

const importPatterns = [
  /^import\s+(?!type\s)(?:[\w$]+\s*,\s*)?(?:\*\s+as\s+[\w$]+|\{[^}]*\}|[\w$]+)\s+from\s+"([^"]+)"/gm,
  /^export\s+(?:\*(?:\s+as\s+[\w$]+)?|\{[^}]*\})\s+from\s+"([^"]+)"/gm,
  /^import\s+"([^"]+)"/gm
]

/**
 * What importing a root file loads: the package's own files reached from it through static `import … from`
 * / `export … from` (not `import type`, which is erased), and the modules outside the package they name
 * (bare specifiers and Node's built-ins). Read from the files each run, so that it follows edits to the
 * package; modules the root does not reach (the CLI) are not in it.
 */
const importGraph = (
  root: string
): { readonly own: ReadonlyArray<string>; readonly external: ReadonlyArray<string> } => {
  const own = new Set<string>()
  const external = new Set<string>()
  const visit = (file: string): void => {
    if (own.has(file)) return
    own.add(file)
    const text = readFileSync(file, "utf8")
    for (const match of importPatterns.flatMap((pattern) => [...text.matchAll(pattern)])) {
      const specifier = match[1]!
      if (specifier.startsWith(".")) visit(join(dirname(file), specifier))
      else external.add(specifier)
    }
  }
  visit(root)
  return { own: [...own], external: [...external].sort() }
}

/**
 * The package's JavaScript as `npm run build` writes dist/ (rolldown.config.ts: one shared chunk), into
 * bench/node_modules/.effect-mcp-pool-bench/dist.
 */
const buildAsPublished = async (): Promise<string | undefined> => {
  const out = join(build, "dist")
  try {
    await rolldown.build(buildOptions(out))
    return undefined
  } catch (error) {
    return `rolldown failed: ${String(error).slice(0, 200)}`
  }
}

/** The same modules compiled file by file (tsc), as dist/ held before the build bundled them. */
const compileFileByFile = (): string | undefined => {
  const out = join(build, "tsc")
  const tsc = join(root, "node_modules/typescript/bin/tsc")
  const result = spawnSync(process.execPath, [
    tsc,
    "-p",
    join(root, "tsconfig.build.json"),
    "--outDir",
    out,
    "--emitDeclarationOnly",
    "false",
    "--declaration",
    "false",
    "--declarationMap",
    "false",
    "--sourceMap",
    "false"
  ], { cwd: root, encoding: "utf8" })
  // tsc still emits on type errors (another engineer's edit in progress): what matters is the output.
  const index = join(out, "index.js")
  if (!existsSync(index)) return `tsc produced no ${index} (exit ${result.status}): ${result.stdout.slice(0, 200)}`
  return undefined
}

interface Variant {
  readonly name: string
  readonly specifiers: ReadonlyArray<string>
  /** Its bar in results.svg, for the package's own variants. */
  readonly bar?: string
}

/**
 * One fresh process: first a one-line .ts file (Node's type stripper starts up on the first .ts it loads,
 * ~40 ms, a cost published JavaScript never pays; every variant pays it before the clock starts), then the
 * variant's imports, all at once (one module graph loading, as a static import list would), timed.
 */
const runChild = (trivial: string, variant: Variant): { imports: number; cpu: number; stripper: number } => {
  const code = `const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }
const t0 = performance.now()
await import(${JSON.stringify(trivial)})
const [t1, c1] = [performance.now(), cpu()]
await Promise.all(${JSON.stringify(variant.specifiers)}.map((s) => import(s)))
const [t2, c2] = [performance.now(), cpu()]
process.stdout.write(JSON.stringify({ stripper: t1 - t0, imports: t2 - t1, cpu: c2 - c1 }))`
  const result = spawnSync(process.execPath, ["--input-type=module", "-e", code], {
    cwd: root,
    encoding: "utf8"
  })
  if (result.status !== 0) throw new Error(`import of ${variant.name} failed: ${result.stderr.slice(0, 500)}`)
  return JSON.parse(result.stdout)
}

export const importCost = async (): Promise<Section> => {
  mkdirSync(build, { recursive: true })
  // The published package's own package.json says "type": "module"; without one here Node would find none
  // (its lookup stops at node_modules) and first try each file for module syntax.
  writeFileSync(join(build, "package.json"), JSON.stringify({ type: "module" }))
  // Node strips types only outside node_modules.
  const trivial = join(mkdtempSync(join(tmpdir(), "mcp-pool-bench-import-")), "trivial.ts")
  writeFileSync(trivial, "export const warm: number = 1\n")
  const buildError = await buildAsPublished()
  const compileError = compileFileByFile()
  const { external, own } = importGraph(join(src, "index.ts"))
  const publishedFiles = buildError === undefined ? importGraph(join(build, "dist/index.js")).own.length : 0
  const toUrl = (path: string) => new URL(`file://${path}`).href
  const baseline: Variant = {
    name: "`effect` + `@modelcontextprotocol/sdk/client/index.js`",
    specifiers: ["effect", "@modelcontextprotocol/sdk/client/index.js"]
  }
  const rootTs: Variant = {
    name: "package root, `src/index.ts`",
    specifiers: [toUrl(join(src, "index.ts"))],
    bar: "package root, src/index.ts"
  }
  const fileByFile: Variant | undefined = compileError === undefined
    ? {
      name: "package root compiled file by file (tsc)",
      specifiers: [toUrl(join(build, "tsc/index.js"))],
      bar: "compiled file by file"
    }
    : undefined
  const published: Variant | undefined = buildError === undefined
    ? {
      name: "package root as published (dist/: `npm run build`, one shared chunk)",
      specifiers: [toUrl(join(build, "dist/index.js"))],
      bar: "as published (dist/)"
    }
    : undefined
  const floor: Variant = {
    name: "floor: the modules from outside the package that the root imports, none of its own",
    specifiers: external
  }
  const variants: Array<Variant> = [
    baseline,
    rootTs,
    ...(fileByFile ? [fileByFile] : []),
    ...(published ? [published] : []),
    floor
  ]
  // Each pair of fresh processes moves by ±10 % on this machine: enough of them to read a few percent.
  const reps = 20
  console.log(`import: ${variants.length} variants × ${reps} fresh processes, interleaved`)
  const times = new Map(variants.map((v) => [v.name, [] as Array<number>]))
  const cpuTimes = new Map(variants.map((v) => [v.name, [] as Array<number>]))
  const stripper: Array<number> = []
  for (const v of variants) runChild(trivial, v) // warm-up: disk caches
  for (let rep = 0; rep < reps; rep++) {
    for (let i = 0; i < variants.length; i++) {
      const variant = variants[(rep + i) % variants.length]!
      const { cpu, imports, stripper: s } = runChild(trivial, variant)
      times.get(variant.name)!.push(imports)
      cpuTimes.get(variant.name)!.push(cpu)
      stripper.push(s)
    }
    if (rep % 5 === 4) process.stdout.write(".")
  }
  process.stdout.write("\n")
  const ratio = (v: Variant) => L.pairRatio(times.get(v.name)!, times.get(baseline.name)!)
  const cpuRatio = (v: Variant) => L.pairRatio(cpuTimes.get(v.name)!, cpuTimes.get(baseline.name)!)
  const ms = (v: Variant) => L.median(times.get(v.name)!)
  const signedMs = (x: number) => `${x >= 0 ? "+" : "−"}${L.fmt(Math.abs(x), 0)} ms`
  const overFloor = (v: Variant) => signedMs(ms(v) - ms(floor))
  // The root users import is the published one (dist/); the others are measured beside it.
  const measured = published ?? fileByFile ?? rootTs
  const target = ratio(measured)
  const missing = [
    buildError === undefined ? [] : [`The published variant is missing: ${buildError}.`],
    compileError === undefined ? [] : [`The file-by-file variant is missing: ${compileError}.`]
  ].flat()
  return {
    id: "import",
    title: "9. Import: the package root vs `effect` + the SDK client",
    description: `Each sample is a fresh Node process (\`node --input-type=module -e …\`, cwd the repository) ` +
      "that imports one variant and times the import inside the process (Node's own start-up is not " +
      "counted), on the wall clock and on the process's CPU time (which also counts V8's background " +
      "compile threads). Before the clock starts, every process loads a one-line .ts file, so that Node's type " +
      `stripper, which starts on the first .ts file (${L.fmt(L.median(stripper), 0)} ms here), is warm in all ` +
      `variants alike. ${reps} processes per variant, interleaved in rotating order after one warm-up each; ` +
      "ratios are medians over repetitions of (variant ÷ baseline) in the same repetition. The floor imports " +
      "every module from outside the package (third-party and Node's built-ins) that the root's own modules " +
      "import (followed from src/index.ts this run), without the package's own modules. The published variant " +
      "is built this run with the package's own build (rolldown.config.ts) into a scratch folder; it and the " +
      "file-by-file copy sit beside a package.json with `\"type\": \"module\"`, as the published package has." +
      missing.map((text) => ` ${text}`).join(""),
    table: {
      head: ["import", "wall (median)", "× effect + SDK, wall (IQR)", "CPU (median)", "× effect + SDK, CPU (IQR)"],
      rows: variants.map((v) => [
        v.name,
        `${L.fmt(ms(v), 1)} ms`,
        v === baseline ? "1.00" : L.pairText(ratio(v)),
        `${L.fmt(L.median(cpuTimes.get(v.name)!), 1)} ms`,
        v === baseline ? "1.00" : L.pairText(cpuRatio(v))
      ])
    },
    notes: [
      `The floor's modules: ${external.map((s) => `\`${s}\``).join(", ")}.`,
      `\`src/index.ts\` runs through Node's type stripping, file by file (${own.length} of the package's modules); ` +
      "the file-by-file row is the same modules compiled to JavaScript, one file each, as dist/ held before " +
      "the build bundled them; the published row is what an app importing the package (dist/) loads: an " +
      "entry that re-exports from one shared chunk."
    ],
    targets: [{
      name: published === undefined
        ? `importing the package root (${measured.name}) ÷ importing \`effect\` + the SDK client`
        : "importing the package root as published (dist/) ÷ importing `effect` + the SDK client",
      where: "§9",
      bound: 1.1,
      value: target.median,
      spread: `${L.fmt(target.lo, 2)}–${L.fmt(target.hi, 2)}`,
      floor: `${L.pairText(ratio(floor))} (the modules from outside the package that it imports, none of its own)`,
      why: `Wall: ${L.fmt(ms(measured), 0)} vs ${L.fmt(ms(baseline), 0)} ms. The modules from outside ` +
        `the package beyond effect + the SDK client add ${signedMs(ms(floor) - ms(baseline))}; over that ` +
        `floor, the package's own ${own.length} modules add ${overFloor(rootTs)} type-stripped from .ts` +
        (fileByFile === undefined ? "" : `, ${overFloor(fileByFile)} compiled file by file`) +
        (published === undefined ? "" : `, ${overFloor(published)} as published (${publishedFiles} files)`) +
        `. CPU: ${L.pairText(cpuRatio(measured))}×.`
    }],
    headline: [{
      metric: `Import: the package root ${published === undefined ? `(${measured.name})` : "as published"} ÷ ` +
        "`effect` + the SDK client",
      value: target.median,
      text: `${L.pairText(target)}× wall (\`src/index.ts\` through Node's type stripping: ${
        L.fmt(ratio(rootTs).median, 2)
      }×)`
    }],
    bars: variants.flatMap((v) =>
      v.bar === undefined ? [] : [{
        group: "import (× effect + SDK client, wall)",
        label: v.bar,
        value: ratio(v).median,
        ...(v === measured ? { target: 1.1 } : {})
      }]
    )
  }
}
