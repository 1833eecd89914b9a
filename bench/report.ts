/**
 * Writes bench/RESULTS.md (headline table, one table per section, machine, versions, date) and
 * bench/results.svg (a bar chart of the ratios).
 */
import { readFileSync, writeFileSync } from "node:fs"
import os from "node:os"

export interface Headline {
  readonly metric: string
  readonly value: number
  /** The bound the issue sets (at most). */
  readonly target?: number
  /** How the target reads when "≤ target" does not say it well. */
  readonly targetText?: string
  /** Shown instead of the value formatted as a ratio. */
  readonly text?: string
}

/**
 * One of issue 12's targets: a ratio measured in this run against the bound it must not exceed. Where it
 * is missed, `floor` gives the floor measured beside it (what the same work costs without the pool's own
 * machinery) and `why` what the difference is made of.
 */
export interface Target {
  readonly name: string
  /** Where it was measured, e.g. "§1". */
  readonly where: string
  readonly bound: number
  readonly value: number
  /** The ratio's spread over rounds, e.g. "IQR 1.11–1.27". */
  readonly spread?: string
  readonly floor?: string
  readonly why?: string
}

export interface Table {
  readonly caption?: string
  readonly head: ReadonlyArray<string>
  readonly rows: ReadonlyArray<ReadonlyArray<string>>
}

export interface Bar {
  readonly group: string
  readonly label: string
  readonly value: number
  readonly target?: number
}

export interface Section {
  readonly id: string
  readonly title: string
  readonly description: string
  readonly table: Table
  /** Further tables, each after its caption. */
  readonly tables?: ReadonlyArray<Table>
  readonly notes?: ReadonlyArray<string>
  readonly targets?: ReadonlyArray<Target>
  readonly headline: ReadonlyArray<Headline>
  readonly bars: ReadonlyArray<Bar>
  /** Filled in by run.ts: how long the section's process took and the 1-minute load around it. */
  readonly run?: {
    readonly seconds: number
    readonly loadStart: number
    readonly loadEnd: number
    /** Other processes' CPU during the section, as a share of all cores (0–1). */
    readonly others?: number
  }
  /** CPU (ms) of processes the section started that its process may not have reaped (run.ts's accounting). */
  readonly unreapedMillis?: number
  /** Versions of what the section measured, for the machine table (e.g. peers). */
  readonly versions?: ReadonlyArray<readonly [string, string]>
}

const version = (pkg: string, base = "../node_modules/"): string => {
  try {
    return JSON.parse(readFileSync(new URL(`${base}${pkg}/package.json`, import.meta.url), "utf8")).version
  } catch {
    return "not installed"
  }
}

export const machine = () => ({
  cpu: `${os.cpus()[0]?.model ?? "unknown"} (${os.cpus().length} cores)`,
  memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
  os: `${os.type()} ${os.release()} ${os.arch()}`,
  node: process.version,
  effect: version("effect"),
  platformNode: version("@effect/platform-node"),
  sdk: version("@modelcontextprotocol/sdk"),
  date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
  load: os.loadavg().map((x) => x.toFixed(2)).join(", ")
})

/** Two decimals, or three where two would print the bound itself for a value just over or under it. */
const ratioFormat = (value: number, bound: number): string =>
  !Number.isFinite(value)
    ? "n/a"
    : value.toFixed(2) === bound.toFixed(2) && value !== bound
    ? `${value.toFixed(3)}×`
    : `${value.toFixed(2)}×`

const targetRow = (t: Target): ReadonlyArray<string> => {
  const met = Number.isFinite(t.value) && t.value <= t.bound
  return [
    `${t.name} (${t.where})`,
    `≤ ${t.bound.toFixed(2)}×`,
    `${ratioFormat(t.value, t.bound)}${t.spread === undefined ? "" : ` (${t.spread})`}`,
    met ? "✓" : "✗",
    met ? "" : t.floor ?? "",
    met ? "" : t.why ?? ""
  ]
}

const formatValue = (h: Headline): string => h.text ?? (Number.isFinite(h.value) ? `${h.value.toFixed(2)}×` : "n/a")

const verdict = (h: Headline): string =>
  h.target === undefined ? "" : !Number.isFinite(h.value) ? "✗" : h.value <= h.target ? "✓" : "✗ over"

export const markdown = (
  sections: ReadonlyArray<Section>,
  m: ReturnType<typeof machine>,
  minutes: number,
  loadAtStart: string
) => {
  const lines: Array<string> = []
  const table = (head: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
    lines.push(`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`)
    for (const row of rows) lines.push(`| ${row.join(" | ")} |`)
    lines.push("")
  }
  lines.push(
    "# effect-mcp-pool benchmarks",
    "",
    "Written by `npm run bench` (bench/run.ts); do not edit by hand. Every comparison is measured side by side " +
      "in one process (variants interleaved in rotating order after a warm-up), and reported as the median of " +
      "repeated samples. Each section runs in its own Node process; the import section (9) times fresh " +
      "processes, interleaved the same way.",
    "",
    ...(process.env.BENCH_QUICK === "1"
      ? [
        "**Quick mode (`BENCH_QUICK=1`): sections 4 and 5 ran with a tenth of the sessions and gets their titles say.**",
        ""
      ]
      : []),
    `![ratios](results.svg)`,
    ""
  )
  const targets = sections.flatMap((s) => s.targets ?? [])
  if (targets.length > 0) {
    const met = targets.filter((t) => Number.isFinite(t.value) && t.value <= t.bound).length
    lines.push(
      "## Targets (issue 12)",
      "",
      `Every ratio below was measured in this one run (${m.date}), each against its baseline in the same ` +
        "process and the same rounds; the section named after each target says how. " +
        `${met} of ${targets.length} met. Where a target is missed, the floor is the same work measured ` +
        "beside it without the pool's own machinery, and the last column says what the difference is made of.",
      ""
    )
    table(
      ["target", "bound", "measured (IQR over rounds)", "", "floor, measured beside it", "why"],
      targets.map(targetRow)
    )
  }
  lines.push("## Headline", "")
  table(
    ["metric", "result", "target", ""],
    sections.flatMap((s) =>
      s.headline.map((h) => [
        h.metric,
        formatValue(h),
        h.targetText ?? (h.target === undefined ? "" : `≤ ${h.target}`),
        verdict(h)
      ])
    )
  )
  for (const section of sections) {
    lines.push(`## ${section.title}`, "", section.description, "")
    table(section.table.head, section.table.rows)
    for (const extra of section.tables ?? []) {
      if (extra.caption !== undefined) lines.push(extra.caption, "")
      table(extra.head, extra.rows)
    }
    for (const note of section.notes ?? []) lines.push(`- ${note}`)
    if ((section.notes ?? []).length > 0) lines.push("")
  }
  lines.push("## Machine and versions", "")
  table(["", ""], [
    ["date", m.date],
    ["CPU", m.cpu],
    ["memory", m.memory],
    ["OS", m.os],
    ["Node", m.node],
    ["effect / @effect/platform-node", `${m.effect} / ${m.platformNode}`],
    ["@modelcontextprotocol/sdk", m.sdk],
    ...sections.flatMap((s) => s.versions ?? []),
    ["load average (1, 5, 15 min) at start / end", `${loadAtStart} / ${m.load}`],
    [
      "per section: seconds (1-min load at its start → end; other processes' CPU, share of all cores)",
      sections.filter((s) => s.run !== undefined).map((s) =>
        `${s.id} ${s.run!.seconds.toFixed(1)} s (${s.run!.loadStart.toFixed(1)} → ${s.run!.loadEnd.toFixed(1)}; ${
          s.run!.others === undefined ? "?" : `${(100 * s.run!.others).toFixed(0)} %`
        })`
      ).join("; ")
    ],
    ["total bench time", `${minutes.toFixed(1)} min`]
  ])
  const busy = sections.filter((s) => (s.run?.others ?? 0) > 0.1)
  if (busy.length > 0) {
    lines.push(
      `**Other processes used more than 10 % of the ${os.cpus().length} cores during: ${
        busy.map((s) => `${s.id} (${(100 * s.run!.others!).toFixed(0)} %)`).join(", ")
      }**: something else (tests, another bench) ran at the same time; read those sections' figures, wall ` +
        "clock above all, with care.",
      ""
    )
  }
  lines.push(
    "On a shared machine (see the load average) ratios are more stable than absolute times; single runs " +
      "move by several percent, stdio ones (two processes per call on two cores) the most. The load average " +
      "counts the bench's own processes too (50 servers in section 7, Chromium in 8) and lags by minutes; the " +
      "share of the cores that other processes used (all busy CPU time less the bench's own, from /proc) " +
      "tells whether anything else ran."
  )
  return lines.join("\n") + "\n"
}

const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

/** Horizontal bars, one row per bar, grouped; a dashed line marks each bar's target. */
export const svg = (bars: ReadonlyArray<Bar>, footnotes: ReadonlyArray<string>): string => {
  const width = 760
  const labelWidth = 250
  const plotWidth = width - labelWidth - 70
  const max = Math.max(2, ...bars.map((b) => Math.max(b.value, b.target ?? 0))) * 1.05
  const x = (v: number) => labelWidth + (Math.min(v, max) / max) * plotWidth
  const rowHeight = 22
  const parts: Array<string> = []
  let y = 40
  let group = ""
  for (const bar of bars) {
    if (bar.group !== group) {
      group = bar.group
      y += 8
      parts.push(`<text x="10" y="${y + 12}" font-weight="bold">${escape(group)}</text>`)
      y += rowHeight
    }
    const over = bar.target !== undefined && bar.value > bar.target
    parts.push(
      `<text x="${labelWidth - 8}" y="${y + 14}" text-anchor="end">${escape(bar.label)}</text>`,
      `<rect x="${labelWidth}" y="${y + 3}" width="${Math.max(1, x(bar.value) - labelWidth).toFixed(1)}" height="${
        rowHeight - 6
      }" fill="${over ? "#d9822b" : "#3b7dd8"}"/>`,
      `<text x="${(x(bar.value) + 6).toFixed(1)}" y="${y + 14}">${bar.value.toFixed(2)}×</text>`
    )
    if (bar.target !== undefined) {
      const tx = x(bar.target).toFixed(1)
      parts.push(
        `<line x1="${tx}" x2="${tx}" y1="${y}" y2="${y + rowHeight}" stroke="#c0392b" stroke-dasharray="3,2"/>`
      )
    }
    y += rowHeight
  }
  const axis = x(1).toFixed(1)
  const footY = y + 24
  const height = footY + footnotes.length * 18 + 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">effect-mcp-pool: ratios (lower is better; dashed red = target)</text>`,
    `<line x1="${axis}" x2="${axis}" y1="30" y2="${y}" stroke="#888"/>`,
    `<text x="${axis}" y="${y + 16}" text-anchor="middle" fill="#555">1×</text>`,
    ...parts,
    ...footnotes.map((note, i) => `<text x="10" y="${footY + 14 + i * 18}">${escape(note)}</text>`),
    "</svg>",
    ""
  ].join("\n")
}

export const write = (sections: ReadonlyArray<Section>, minutes: number, loadAtStart: string): void => {
  writeFileSync(new URL("./RESULTS.md", import.meta.url), markdown(sections, machine(), minutes, loadAtStart))
  const savings = sections.find((s) => s.id === "savings")?.headline[0]
  const footnotes = savings === undefined ? [] : [`Not to scale: ${savings.metric}: ${savings.text ?? ""}`]
  writeFileSync(new URL("./results.svg", import.meta.url), svg(sections.flatMap((s) => s.bars), footnotes))
}
