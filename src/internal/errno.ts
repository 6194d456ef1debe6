import type { PlatformError } from "@effect/platform/Error"

/**
 * The errno code behind a platform error (`ENOENT`, `ENOTEMPTY`, …). The Node
 * layer maps only a few codes to a `reason` and keeps the original error in
 * `cause`, so codes such as `EPERM` or `ESRCH` can only be told apart here.
 *
 * @internal
 */
export const errnoOf = (error: PlatformError | { readonly _tag: string }): string | undefined => {
  if (error._tag !== "SystemError" || !("reason" in error)) return undefined
  const cause = error.cause as { readonly code?: unknown } | undefined
  if (typeof cause?.code === "string") return cause.code
  return error.reason === "NotFound" ? "ENOENT" : undefined
}

/** @internal */
export const isNotFound = (error: PlatformError | { readonly _tag: string }): boolean => errnoOf(error) === "ENOENT"
