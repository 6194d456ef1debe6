// "Open this file in the running instance": the first copy holds the lock "editor" and opens (here: prints) the files
// that later copies ask it to; a later copy hands its files to it and exits. Run: `npm run build`, then
// `npx tsx examples/openInRunning.ts notes.txt` in one terminal and `npx tsx examples/openInRunning.ts todo.txt` in
// another; Ctrl-C ends the first copy.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Path from "node:path"

const files = process.argv.slice(2)

const open = (paths: ReadonlyArray<string>) => Effect.forEach(paths, (path) => Effect.log(`opening ${path}`))

// Paths are the sender's, relative to its own working directory.
const firstCopy = Effect.scoped(Effect.gen(function*() {
  yield* PidLock.acquire({
    name: "editor",
    onMessage: (message) => {
      const { open: asked } = message.data as { readonly open: ReadonlyArray<string> }
      const paths = asked.map((file) => Path.resolve(message.cwd, file))
      return Effect.as(open(paths), { opened: paths.length })
    }
  })
  yield* open(files.map((file) => Path.resolve(file)))
  yield* Effect.log("the first copy: waiting for files to open")
  return yield* Effect.never
}))

// Nobody holds the lock: this copy becomes the first one. Held: the files go to the holder, and this copy exits.
const program = PidLock.send({ name: "editor", data: { open: files }, timeout: "2s" }).pipe(
  Effect.flatMap((reply) => Effect.log(`handed to the running instance: ${JSON.stringify(reply)}`)),
  Effect.catchTag("NoHolder", () => firstCopy)
)

NodeRuntime.runMain(program.pipe(Effect.provide(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer)))))
