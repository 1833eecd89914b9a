/**
 * Config decoding with effect's `Schema`, shared by the pool options, config files and toolkit options:
 * the leaves and combinators their schemas are built from, and the one place where a Schema issue tree
 * becomes the `ConfigIssue`s of a `ConfigError`.
 *
 * Inputs are untyped (JSON, JavaScript callers), so every message is written by a leaf that has the value
 * at hand, through `show`: inputs are never kept in the issues (no `reportInput`), so no other code can
 * echo one, and a leaf that may see a secret (a URL, a header or env value) simply never shows it.
 */
import { Effect, Predicate, Result, Schema, SchemaIssue, SchemaParser } from "effect"
import type { SchemaAST } from "effect"
import { ConfigError, ConfigIssue } from "../McpPoolError.ts"

/**
 * A short rendering of a bad value for an error message. Strings are quoted (cut at 40 characters): never
 * pass one that may hold a secret (a URL, a header or env value).
 */
export const show = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (typeof value === "function") return "a function"
  if (Array.isArray(value)) return "an array"
  if (value === null) return "null"
  return typeof value === "object" ? "an object" : String(value)
}

export const isRecord = (u: unknown): u is Record<string, unknown> => Predicate.isObject(u) && !Array.isArray(u)

export const isFunction = (u: unknown): u is (...args: ReadonlyArray<never>) => unknown => typeof u === "function"

/** `a.b` for plain keys, `a["my.key"]` otherwise, `a[0]` for indexes, so every path reads back unambiguously. */
export const child = (path: string, key: PropertyKey): string =>
  typeof key === "number"
    ? `${path}[${key}]`
    : typeof key === "string" && /^[A-Za-z_$][\w$-]*$/.test(key)
    ? `${path}.${key}`
    : `${path}[${JSON.stringify(String(key))}]`

/** A problem with the value being decoded (or, with `path`, with a part of it). */
export const reject = (message: string, path?: ReadonlyArray<PropertyKey>): SchemaIssue.Issue => {
  const issue = new SchemaIssue.InvalidValue({ message })
  return path === undefined ? issue : new SchemaIssue.Pointer(path, issue)
}

// --- leaves ---

/**
 * A leaf that parses its value: `parse` gives the decoded value or the message (built from the value).
 * `missing` is the message for a required field that is absent.
 */
export const parsed = <T>(parse: (u: unknown) => Result.Result<T, string>, missing?: string) => {
  const schema = Schema.declareConstructor<T, unknown>()([], () => (u) => {
    const result = parse(u)
    return Result.isSuccess(result) ? Effect.succeed(result.success) : Effect.fail(reject(result.failure))
  })
  return missing === undefined ? schema : schema.annotateKey({ messageMissingKey: missing })
}

/** A value `is` accepts; anything else is `expected <what>, got <the value>`. */
export const expected = <T>(is: (u: unknown) => u is T, what: string) =>
  parsed(
    (u) => is(u) ? Result.succeed(u) : Result.fail(`expected ${what}, got ${show(u)}`),
    `expected ${what}, got undefined`
  )

/** A value `is` accepts; anything else is `message`, which does not show the value. */
export const expectedWithMessage = <T>(is: (u: unknown) => u is T, message: string) =>
  parsed((u) => is(u) ? Result.succeed(u) : Result.fail(message), message)

/** A function, kept as given: what it does is checked when it is called. */
export const AnyFunction = Schema.declare(isFunction)

/** `schema`, or `undefined` (which the public option types allow wherever a field is optional). */
const orUndefined = <S extends Schema.Constraint>(schema: S) =>
  Schema.declareConstructor<S["Type"] | undefined, unknown>()([schema], ([codec]) => {
    const decode = SchemaParser.decodeUnknownEffect(codec)
    return (u, _ast, options) => u === undefined ? Effect.succeed(undefined) : decode(u, options)
  })

/** An optional field: absent or `undefined` is unset. */
export const optionalField = <S extends Schema.Constraint>(schema: S) => Schema.optionalKey(orUndefined(schema))

/** What a required field that is absent reads: as if it were given `undefined`. */
const missing = (what: string) => ({ messageMissingKey: `expected ${what}, got undefined` })

// --- combinators ---

type Members = Readonly<Record<string, Schema.Constraint>>

/** What `select` decoded: which member, its output, and the value as given. */
export type Selected<M extends Members> = {
  readonly [K in keyof M]: { readonly kind: K; readonly value: M[K]["Type"]; readonly input: unknown }
}[keyof M]

/**
 * One of several schemas, chosen by `choose` from the value (e.g. by its `_tag`), or the issue `choose`
 * gives. Unlike a Schema union, the member is named up front, so its problems are reported alone.
 */
export const select = <const M extends Members>(
  members: M,
  choose: (u: unknown) => keyof M | SchemaIssue.Issue,
  /** What the value should be, for the message when a required one is absent. */
  what?: string
) => {
  const kinds = Object.keys(members) as Array<keyof M & string>
  const schema = Schema.declareConstructor<Selected<M>, unknown>()(kinds.map((kind) => members[kind]!), (codecs) => {
    const decoders = new Map(kinds.map((kind, i) => [kind, SchemaParser.decodeUnknownEffect(codecs[i]!)]))
    return (u, _ast, options) => {
      const kind = choose(u)
      if (SchemaIssue.isIssue(kind)) return Effect.fail(kind)
      return Effect.map(
        decoders.get(kind as keyof M & string)!(u, options),
        (value) => ({ kind, value, input: u }) as Selected<M>
      )
    }
  })
  return what === undefined ? schema : schema.annotateKey(missing(what))
}

/** `schema` for values `is` accepts; anything else (absent too) is `expected <what>, got <the value>`. */
export const guarded = <S extends Schema.Constraint>(schema: S, is: (u: unknown) => boolean, what: string) =>
  Schema.declareConstructor<S["Type"], unknown>()([schema], ([codec]) => {
    const decode = SchemaParser.decodeUnknownEffect(codec)
    return (u, _ast, options) => is(u) ? decode(u, options) : Effect.fail(reject(`expected ${what}, got ${show(u)}`))
  }, { expected: what }).annotateKey(missing(what))

/** A struct of `fields` for objects; anything else is `expected <what>, got <the value>`. */
export const objectOf = <S extends Schema.Constraint>(schema: S, what: string) => guarded(schema, isRecord, what)

/**
 * Decodes parts of a value one by one (entries of a record, elements of a list), every part's issues
 * under its key, `before` adding issues of the part as a whole (a bad name, a duplicate) or skipping it.
 */
const decodeParts = <A>(
  parts: ReadonlyArray<readonly [key: PropertyKey, value: unknown]>,
  decode: (u: unknown, options: SchemaAST.ParseOptions) => Effect.Effect<A, SchemaIssue.Issue>,
  before: (key: PropertyKey, value: unknown) => { readonly issue?: SchemaIssue.Issue; readonly skip?: boolean },
  ast: SchemaAST.AST,
  input: unknown,
  options: SchemaAST.ParseOptions
): Effect.Effect<Array<readonly [PropertyKey, A]>, SchemaIssue.Issue> =>
  Effect.gen(function*() {
    const issues: Array<SchemaIssue.Issue> = []
    const out: Array<readonly [PropertyKey, A]> = []
    for (const [key, value] of parts) {
      const checked = before(key, value)
      if (checked.issue !== undefined) issues.push(checked.issue)
      if (checked.skip === true) continue
      const result = yield* Effect.result(decode(value, options))
      if (Result.isSuccess(result)) out.push([key, result.success])
      else issues.push(new SchemaIssue.Pointer([key], result.failure))
      if (issues.length > 0 && options.errors !== "all") break
    }
    const [first, ...rest] = issues
    return first === undefined ? out : yield* Effect.fail(new SchemaIssue.Composite(ast, [first, ...rest], input))
  })

/**
 * A record of named entries (servers, env variables, headers), in input order. A bad name is reported on
 * the record itself (`nameProblem`), since the name is what is wrong; its entry is still decoded.
 */
export const byName = <S extends Schema.Constraint>(
  value: S,
  options: { readonly what: string; readonly nameProblem?: (name: string) => string | undefined }
) =>
  Schema.declareConstructor<ReadonlyArray<readonly [string, S["Type"]]>, unknown>()([value], ([codec]) => {
    const decode = SchemaParser.decodeUnknownEffect(codec)
    return (u, ast, parseOptions) => {
      if (!isRecord(u)) return Effect.fail(reject(`expected ${options.what}, got ${show(u)}`))
      return decodeParts(
        Object.entries(u),
        decode,
        (name) => {
          const problem = options.nameProblem?.(name as string)
          return problem === undefined ? {} : { issue: reject(problem) }
        },
        ast,
        u,
        parseOptions
      ) as Effect.Effect<Array<readonly [string, S["Type"]]>, SchemaIssue.Issue>
    }
  }).annotateKey(missing(options.what))

/**
 * A non-empty list whose elements name distinct things (`nameOf`): a repeated name is reported at the
 * repeat, which is not decoded further, so the order of issues follows the list.
 */
export const uniqueList = <S extends Schema.Constraint>(
  element: S,
  options: {
    readonly what: string
    readonly empty: string
    readonly nameOf: (u: unknown) => string | undefined
    readonly repeated: (name: string) => string
  }
) =>
  Schema.declareConstructor<ReadonlyArray<S["Type"]>, unknown>()([element], ([codec]) => {
    const decode = SchemaParser.decodeUnknownEffect(codec)
    return (u, ast, parseOptions) => {
      if (!Array.isArray(u)) return Effect.fail(reject(`expected ${options.what}, got ${show(u)}`))
      if (u.length === 0) return Effect.fail(reject(options.empty))
      const seen = new Set<string>()
      return Effect.map(
        decodeParts(
          u.map((value, i) => [i, value] as const),
          decode,
          (i, value) => {
            const name = options.nameOf(value)
            if (name === undefined) return {}
            if (seen.has(name)) return { issue: reject(options.repeated(name), [i]), skip: true }
            seen.add(name)
            return {}
          },
          ast,
          u,
          parseOptions
        ),
        (parts) => parts.map(([, value]) => value)
      )
    }
  })

// --- issues ---

const messageOf = (issue: SchemaIssue.Issue): string => {
  switch (issue._tag) {
    case "MissingKey": {
      const message = issue.annotations?.messageMissingKey
      return typeof message === "string" ? message : "is required"
    }
    case "InvalidValue": {
      const message = issue.annotations?.message
      return typeof message === "string" ? message : "is invalid"
    }
    case "InvalidType": {
      // Built-in schemas: they keep no input, so nothing is shown.
      const expected = issue.ast.annotations?.expected
      return typeof expected === "string" ? `expected ${expected}` : "has the wrong type"
    }
    default:
      return "is invalid"
  }
}

const collect = (
  issue: SchemaIssue.Issue,
  path: ReadonlyArray<PropertyKey>,
  root: string,
  out: Array<ConfigIssue>
): void => {
  switch (issue._tag) {
    case "Pointer":
      return collect(issue.issue, [...path, ...issue.path], root, out)
    case "Composite":
    case "AnyOf":
      for (const inner of issue.issues) collect(inner, path, root, out)
      if (issue._tag === "AnyOf" && issue.issues.length === 0) out.push(makeIssue(path, root, "matches no option"))
      return
    case "Encoding":
      return collect(issue.issue, path, root, out)
    case "Filter": {
      const message = issue.filter.annotations?.message
      if (typeof message === "string") out.push(makeIssue(path, root, message))
      else collect(issue.issue, path, root, out)
      return
    }
    default:
      out.push(makeIssue(path, root, messageOf(issue)))
  }
}

const makeIssue = (path: ReadonlyArray<PropertyKey>, root: string, message: string): ConfigIssue => {
  const [first, ...rest] = path
  return new ConfigIssue({
    path: first === undefined
      ? root
      : rest.reduce<string>(child, typeof first === "number" ? `[${first}]` : String(first)),
    message
  })
}

/** The problems of a Schema issue tree, in the schema's order, each with its path (`root` for the value itself). */
export const toConfigIssues = (issue: SchemaIssue.Issue, root: string): Array<ConfigIssue> => {
  const out: Array<ConfigIssue> = []
  collect(issue, [], root, out)
  return out
}

// Every problem at once: a config is fixed in one go, not one error per run.
const parseOptions: SchemaAST.ParseOptions = { errors: "all" }

/**
 * A decoder of untyped input by `schema` failing with one `ConfigError` that lists every problem, `root`
 * naming the input itself (e.g. `(options)`). Compile it once, at module level.
 */
export const configDecoder = <S extends Schema.Constraint>(schema: S, root: string) => {
  const decode = SchemaParser.decodeUnknownEffect(schema)
  return (input: unknown, source: string): Effect.Effect<S["Type"], ConfigError, S["DecodingServices"]> =>
    Effect.mapError(
      decode(input, parseOptions),
      (issue) => new ConfigError({ source, issues: toConfigIssues(issue, root) })
    )
}
