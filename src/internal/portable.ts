// The portable ProcessInfo's parts (what each system is asked, the parsers
// of `ps` and `sysctl`), for the tests. The implementation lives in
// `./processInfo.js`, so that importing `ProcessInfo` loads one module for
// both implementations; nothing on the import path of the package imports
// this one.
export {
  BOOT_TIME_PREFIX,
  makePortableWith as makePortable,
  parsePsRow,
  parseSysctl,
  type PlatformQueries,
  PLATFORMS,
  psArgs,
  type PsRow,
  UNIX_SECONDS
} from "./processInfo.js"
