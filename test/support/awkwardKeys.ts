/** The awkward endings of varchar primary keys: control characters, quotes, backslashes, CR LF. */
const SEPARATORS = ["\t", "\n", "\r", "\u0000", "\u0001", '"', "'", "\\", "\\n", "\r\n", "-"];

/**
 * Keys with a line feed after a shared prefix (a misread bound jumps over all of them) and one more
 * awkward character each: of 20,000 keys, 1,818 or 1,819 end with each of the 11 endings.
 */
export const awkwardKey = (i: number) =>
  `note\n${String(i).padStart(6, "0")}${SEPARATORS[i % SEPARATORS.length] ?? ""}`;
