// Every `@example` of effect-pidlock/promise, read from dist/promise.d.ts as
// its users' editors show it, type-checks as a file of its own under the
// project's compiler options (strict, exactOptionalPropertyTypes), importing
// the package by its name: a broken example fails the suite without docgen.
// Reads dist/: `npm test` builds first; after changing src/, run `npm run build`.
import * as Fs from "node:fs"
import * as Path from "node:path"
import ts from "typescript"
import { assert, describe, it } from "vitest"

const REPO = Path.resolve(import.meta.dirname, "..")
const DECLARATIONS = Path.join(REPO, "dist", "promise.d.ts")

interface Example {
  /** What the example documents: the export after its comment, or the module. */
  readonly name: string
  readonly code: string
}

const COMMENT = /\/\*\*([\s\S]*?)\*\/\s*(.*)/g
const EXAMPLE = /@example\s*\n```ts\n([\s\S]*?)\n```/g
// A declaration, or a name in an export list (the re-exported error classes).
const DECLARED = /^(?:export (?:declare )?(?:const|type|interface|function|class) (\w+)|(\w+),?$)/

const examplesOf = (declarations: string): Array<Example> =>
  Array.from(declarations.matchAll(COMMENT)).flatMap(([, comment, next]) => {
    const text = comment!.split("\n").map((line) => line.replace(/^\s*\* ?/, "")).join("\n")
    const declared = DECLARED.exec(next!.trim())
    const name = declared?.[1] ?? declared?.[2] ?? "module"
    return Array.from(text.matchAll(EXAMPLE), ([, code], index) => ({ name: `${name}-${index}`, code: code! }))
  })

const compilerOptions = (): ts.CompilerOptions => {
  const file = Path.join(REPO, "tsconfig.json")
  const { config } = ts.readConfigFile(file, ts.sys.readFile)
  return { ...ts.parseJsonConfigFileContent(config, ts.sys, REPO).options, noEmit: true }
}

// Type-checks each example as a module in the repository, where the package's
// own name resolves to its exports (dist/); returns the diagnostics by example.
const typeCheck = (examples: ReadonlyArray<Example>): Map<string, ReadonlyArray<ts.Diagnostic>> => {
  const files = new Map(examples.map(({ code, name }) => [Path.join(REPO, "test", `example-${name}.ts`), code]))
  const options = compilerOptions()
  const host = ts.createCompilerHost(options)
  const { fileExists, getSourceFile, readFile } = host
  host.fileExists = (file) => files.has(file) || fileExists.call(host, file)
  host.readFile = (file) => files.get(file) ?? readFile.call(host, file)
  host.getSourceFile = (file, language, ...rest) => {
    const code = files.get(file)
    return code === undefined
      ? getSourceFile.call(host, file, language, ...rest)
      : ts.createSourceFile(file, code, language)
  }
  const program = ts.createProgram([...files.keys()], options, host)
  return new Map(examples.map(({ name }, index) => {
    const file = program.getSourceFile([...files.keys()][index]!)!
    return [name, [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)]]
  }))
}

const describeDiagnostics = (diagnostics: ReadonlyArray<ts.Diagnostic>) =>
  ts.formatDiagnostics(diagnostics, {
    getCanonicalFileName: (file) => file,
    getCurrentDirectory: () => REPO,
    getNewLine: () => "\n"
  })

// An example with a wrong option, checked with the others: the check must
// fail it on the package's types.
const BROKEN: Example = {
  name: "broken",
  code: `import { acquire } from "effect-pidlock/promise"\n\nawait acquire({ name: "app", log: "verbose" })\n`
}

describe("the examples of effect-pidlock/promise", () => {
  const examples = examplesOf(Fs.readFileSync(DECLARATIONS, "utf8"))
  // One program for all: building Effect's types takes seconds.
  let checked: Map<string, ReadonlyArray<ts.Diagnostic>> | undefined
  const diagnosticsOf = (name: string) => (checked ??= typeCheck([...examples, BROKEN])).get(name)!

  it("document the module, every function and the catch of an error", () => {
    const documented = new Set(examples.map(({ name }) => name.replace(/-\d+$/, "")))
    for (const name of ["module", "acquire", "withLock", "guard", "inspect", "LockHeld"]) {
      assert.isTrue(documented.has(name), `no example for ${name}`)
    }
  })

  it("type-check under strict and exactOptionalPropertyTypes", () => {
    for (const { name } of examples) {
      // Compared as text: a diagnostic holds the whole program, too big to diff.
      assert.strictEqual(describeDiagnostics(diagnosticsOf(name)), "", name)
    }
  })

  it("a wrong option fails the check, on the package's own types", () => {
    const diagnostics = diagnosticsOf(BROKEN.name)
    // Not assignable (2322), rather than a module that cannot be found (2307).
    assert.deepStrictEqual(diagnostics.map((diagnostic) => diagnostic.code), [2322], describeDiagnostics(diagnostics))
  })
})
