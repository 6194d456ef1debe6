// Every ```ts block of README.md is a module of its own: written to a directory inside the project (so that
// `effect-pidlock/*` resolves through package.json's exports to dist/, as it does for a user) and type-checked together
// under the project's compiler options, one test per block, named after the block's line in README.md. Blocks that are
// tests of their own (they import `@effect/vitest`) are run here too.
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import ts from "typescript"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")

interface Snippet {
  /** The line of the opening fence in README.md (1-based): the snippet's first line is the next one. */
  readonly line: number
  readonly code: string
  readonly file: string
}

/** The ```ts (or ```typescript) blocks of a markdown text, with the line of each opening fence. */
const extract = (markdown: string): ReadonlyArray<{ readonly line: number; readonly code: string }> => {
  const blocks: Array<{ line: number; code: string }> = []
  const lines = markdown.split("\n")
  for (let index = 0; index < lines.length; index++) {
    if (!/^```(ts|typescript)\s*$/.test(lines[index]!)) continue
    const end = lines.findIndex((text, at) => at > index && /^```\s*$/.test(text))
    if (end === -1) throw new Error(`README.md:${index + 1}: a code block that is never closed`)
    blocks.push({ line: index + 1, code: lines.slice(index + 1, end).join("\n") + "\n" })
    index = end
  }
  return blocks
}

// Written at load time: the runnable blocks are imported below, while the file's tests are collected.
const dir = Fs.mkdtempSync(Path.join(root, ".readme-snippets-"))
const snippets: ReadonlyArray<Snippet> = extract(readme).map(({ code, line }) => {
  const file = Path.join(dir, `line${line}.ts`)
  Fs.writeFileSync(file, code)
  return { line, code, file }
})
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))

/** The project's compiler options (tsconfig.json), applied to the snippets alone. */
const compilerOptions = (): ts.CompilerOptions => {
  const configFile = Path.join(root, "tsconfig.json")
  const { config, error } = ts.readConfigFile(configFile, ts.sys.readFile)
  if (error !== undefined) throw new Error(ts.flattenDiagnosticMessageText(error.messageText, "\n"))
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, root, undefined, configFile)
  return { ...parsed.options, noEmit: true }
}

/** A diagnostic as `README.md:<line>:<column> TS<code>: <message>`, at its place in README.md. */
const describeDiagnostic = (snippet: Snippet | undefined, diagnostic: ts.Diagnostic): string => {
  const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n")
  if (diagnostic.file === undefined || diagnostic.start === undefined) return `TS${diagnostic.code}: ${message}`
  const { character, line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
  const where = snippet === undefined
    ? `${Path.relative(root, diagnostic.file.fileName)}:${line + 1}:${character + 1}`
    : `README.md:${snippet.line + line + 1}:${character + 1}`
  return `${where} TS${diagnostic.code}: ${message}`
}

const byFile = new Map<string, Array<string>>()
const elsewhere: Array<string> = []

beforeAll(() => {
  const program = ts.createProgram(snippets.map((snippet) => snippet.file), compilerOptions())
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const fileName = diagnostic.file === undefined ? undefined : Path.resolve(diagnostic.file.fileName)
    const snippet = snippets.find((snippet) => snippet.file === fileName)
    const text = describeDiagnostic(snippet, diagnostic)
    if (snippet === undefined) elsewhere.push(text)
    else byFile.set(snippet.file, [...(byFile.get(snippet.file) ?? []), text])
  }
}, 120_000)

describe("README.md's TypeScript blocks type-check", () => {
  it("the README has TypeScript blocks, each with its imports", () => {
    expect(snippets.length).toBeGreaterThanOrEqual(5)
    for (const snippet of snippets) {
      expect(snippet.code, `README.md:${snippet.line}: a block without imports`).toMatch(/^import /m)
    }
  })

  it("nothing outside the blocks fails", () => {
    expect(elsewhere).toEqual([])
  })

  for (const snippet of snippets) {
    it(`README.md:${snippet.line}`, () => {
      expect(byFile.get(snippet.file) ?? [], `the block at README.md:${snippet.line}`).toEqual([])
    })
  }
})

// The blocks that are tests (the test kit's example) run as written.
for (const snippet of snippets.filter((snippet) => /from "@effect\/vitest"/.test(snippet.code))) {
  describe(`README.md:${snippet.line} runs`, async () => {
    await import(pathToFileURL(snippet.file).href)
  })
}
