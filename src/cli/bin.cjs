#!/usr/bin/env node
// The `effect-pidlock` command. It starts the CLI bundle (main.cjs) from V8's
// code cache of it (main.cjs.cache), which the build made by running the
// bundle once: compiling 360 KB of JavaScript at every start would cost more
// than all the rest of a `status`. A cache V8 cannot use (another V8 version,
// other flags) is rejected by V8 itself, and the bundle is compiled as usual.
"use strict"
const Fs = require("node:fs")
const Module = require("node:module")
const Path = require("node:path")
const Vm = require("node:vm")

const bundle = Path.join(__dirname, "main.cjs")
let cachedData
try {
  cachedData = Fs.readFileSync(`${bundle}.cache`)
} catch {
  // No cache: compiled as usual.
}
const script = new Vm.Script(Module.wrap(Fs.readFileSync(bundle, "utf8")), { filename: bundle, cachedData })
const bundleModule = { exports: {} }
script.runInThisContext()
  .call(bundleModule.exports, bundleModule.exports, Module.createRequire(bundle), bundleModule, bundle, __dirname)
