// Text shown to people: in messages, on a terminal. No imports, so that the
// CLI can use it without loading the lock first.

const TEXT_IN_MESSAGES = 200

// Control characters (C0, DEL, C1) and the invisible format and bidi
// characters that reorder or hide text on a screen.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g

/**
 * Text from an owner record as it may be shown on a terminal: a record is
 * written by whoever could write the lock directory, so control and bidi
 * characters are shown as `\\u` escapes, never sent to the screen.
 *
 * @internal
 */
export const escapeText = (text: string): string =>
  text.replace(UNPRINTABLE, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, "0")}`)

/**
 * A value in a message: a string quoted and escaped, anything long cut short.
 *
 * @internal
 */
export const show = (value: unknown): string => {
  const text = escapeText(typeof value === "string" ? JSON.stringify(value) : String(value))
  return text.length > TEXT_IN_MESSAGES ? `${text.slice(0, TEXT_IN_MESSAGES)}…` : text
}
